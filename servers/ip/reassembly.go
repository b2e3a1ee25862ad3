package ip

import (
	"net/netip"
	"sort"
	"time"

	"keepnet/servers/header"
)

// Memory charged per fragment and per datagram on top of the data, for the
// bookkeeping, so that floods of tiny fragments hit ReassemblyMemory too.
const (
	fragmentOverhead   = 64
	reassemblyOverhead = 256
)

// fragKey identifies the datagram a fragment belongs to: source,
// destination, identification and protocol for IPv4 (RFC 791 §3.2);
// source, destination and identification for IPv6 (RFC 8200 §4.5, proto
// 0). The addresses keep the families apart.
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
}

// fragment is a piece of a datagram's payload, [first, end).
type fragment struct {
	first, end int
	data       []byte // a copy; the frame belongs to the driver
}

// reassembly is one datagram being put back together: its fragments
// sorted by offset and never overlapping, so the datagram is whole when the
// bytes held equal its size.
type reassembly struct {
	created time.Time
	frags   []fragment
	size    int    // payload length, known from the last fragment (MF=0); -1 before
	held    int    // payload bytes in frags
	header  []byte // fragment zero's header (IPv4's with options; IPv6's unfragmentable part); nil before
	next    uint8  // IPv6: fragment zero's Next Header (what the payload is)
	charge  int    // what this datagram counts against ReassemblyMemory
}

// reassemble adds a validated fragment to its datagram and returns the
// whole datagram, in s.bigBuf, when this fragment completes it; nil
// otherwise (kept, or dropped and counted).
func (s *Stack) reassemble(ip header.IPv4) header.IPv4 {
	key := fragKey{ip.Src(), ip.Dst(), uint32(ip.ID()), ip.Protocol()}
	r := s.addFragment(key, ip.FragmentOffset(), ip.Payload(), ip.MoreFragments(), ip[:ip.HeaderLength()])
	if r == nil {
		return nil
	}
	// Whole: fragments tile [0, size).
	hl := len(r.header)
	if hl+r.size > header.IPv4MaximumSize {
		s.c.ReassemblyBad++ // fragment zero's options pushed it past 65535
		return nil
	}
	pkt := header.IPv4(s.bigBuf[:hl+r.size])
	copy(pkt, r.header)
	for _, f := range r.frags {
		copy(pkt[hl+f.first:], f.data)
	}
	pkt.SetTotalLength(uint16(hl + r.size))
	pkt.SetFlagsFragmentOffset(pkt.Flags()&^header.IPv4FlagMoreFragments, 0)
	pkt.SetChecksum(pkt.HeaderChecksum())
	s.c.ReassemblyOK++
	return pkt
}

// addFragment adds data, [first, first+len(data)) of the datagram key,
// the last piece unless more; hdr is what comes before the data in its
// datagram, kept from fragment zero. It returns the datagram, forgotten
// already, when this fragment completes it; nil otherwise (kept, or
// dropped and counted). The checks are both families': every fragment
// but the last carries a multiple of 8 bytes, one end only, no overlap
// (RFC 5722 for IPv6: the whole datagram is dropped), and the memory
// bounds.
func (s *Stack) addFragment(key fragKey, first int, data []byte, more bool, hdr []byte) *reassembly {
	s.c.FragmentsIn++
	end := first + len(data)
	r := s.reasm[key]
	if len(data) == 0 || more && len(data)%8 != 0 {
		s.c.ReassemblyBad++
		return nil
	}
	if r == nil {
		if len(s.reasm) >= s.limits.MaxReassemblies {
			if oldest := s.oldestReassembly(nil); oldest != nil {
				s.dropReassembly(*oldest)
				s.c.ReassemblyEvictions++
			}
		}
		r = &reassembly{created: s.clock.Now(), size: -1, charge: reassemblyOverhead}
		s.reasm[key] = r
		s.reasmMem += r.charge
	}
	switch {
	case !more && (r.size >= 0 && r.size != end || len(r.frags) > 0 && r.frags[len(r.frags)-1].end > end),
		more && r.size >= 0 && end >= r.size:
		// A second, different end of the datagram, or data past its end.
		s.c.ReassemblyBad++
		s.dropReassembly(key)
		return nil
	}
	// i is the first fragment ending after this one starts; it must also
	// start after this one ends.
	i := sort.Search(len(r.frags), func(i int) bool { return r.frags[i].end > first })
	if i < len(r.frags) && r.frags[i].first < end {
		s.c.ReassemblyOverlaps++
		s.dropReassembly(key)
		return nil
	}
	cost := len(data) + fragmentOverhead
	if first == 0 {
		cost += len(hdr)
	}
	for s.reasmMem+cost > s.limits.ReassemblyMemory {
		victim := s.oldestReassembly(r)
		if victim == nil {
			victim = &key // this datagram alone is over the limit
		}
		s.c.ReassemblyMemoryDrops++
		s.dropReassembly(*victim)
		if *victim == key {
			return nil
		}
	}
	r.frags = append(r.frags, fragment{})
	copy(r.frags[i+1:], r.frags[i:])
	r.frags[i] = fragment{first, end, append([]byte(nil), data...)}
	if first == 0 {
		r.header = append([]byte(nil), hdr...)
	}
	if !more {
		r.size = end
	}
	r.held += len(data)
	r.charge += cost
	s.reasmMem += cost
	if r.size < 0 || r.held != r.size {
		return nil
	}
	s.dropReassembly(key)
	return r
}

// oldestReassembly returns the key of the oldest datagram other than
// except, or nil if there is none.
func (s *Stack) oldestReassembly(except *reassembly) *fragKey {
	var oldest *fragKey
	var at time.Time
	for k, r := range s.reasm {
		if r != except && (oldest == nil || r.created.Before(at)) {
			k := k
			oldest, at = &k, r.created
		}
	}
	return oldest
}

// dropReassembly forgets a datagram and releases its memory.
func (s *Stack) dropReassembly(k fragKey) {
	if r := s.reasm[k]; r != nil {
		s.reasmMem -= r.charge
		delete(s.reasm, k)
	}
}

// tickReassembly drops datagrams older than ReassemblyTimeout, telling the
// source (ICMP time exceeded, code 1) when fragment zero had arrived, as
// RFC 1122 §3.3.2 asks.
func (s *Stack) tickReassembly(now time.Time) {
	for k, r := range s.reasm {
		if now.Sub(r.created) < s.limits.ReassemblyTimeout {
			continue
		}
		s.c.ReassemblyTimeouts++
		s.dropReassembly(k)
		switch {
		case r.header == nil:
		case k.dst.Is6():
			s.reassemblyTimeout6(k, r)
		default:
			first := r.frags[0].data
			quote := append(r.header, first[:min(len(first), header.ICMPv4ErrorDataSize)]...)
			s.sendICMPError(header.ICMPv4TimeExceeded, header.ICMPv4ReassemblyTimeout, 0, header.IPv4(quote))
		}
	}
}
