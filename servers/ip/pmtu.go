package ip

import (
	"encoding/binary"
	"net/netip"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// Path MTU discovery (RFC 1191) is shared between ip and the transports:
//
//   - Every TCP datagram we send carries DF. A router whose next hop is
//     too small for one drops it and answers ICMP "fragmentation needed"
//     with its next-hop MTU.
//   - handleICMP checks the message (the quoted datagram must be ours)
//     and learns the path MTU to the quoted destination here, then hands
//     the error to the transport that sent the datagram (ErrorTransport);
//     tcp checks the quoted sequence number against its window (RFC 5927)
//     and lowers the connection's segment size.
//   - Output cuts offloaded TCP segments (TSO) at the path MTU, so that the
//     device never sends a segment the path drops, also for connections
//     that have not heard of the path's MTU themselves.
//
// The cache is bounded (MaxPathMTUs entries, the oldest evicted) and aged
// as RFC 1191 §6.3 says: an estimate is forgotten PathMTUAge after it was
// learned, so that the full MTU is tried again; should the path still be
// narrow, the router says so again. An MTU below MinPathMTU is taken as
// MinPathMTU (Linux's min_pmtu): a forged ICMP cannot make us send tiny
// segments (RFC 5927 §7.1).

// Path MTU bounds.
const (
	MinPathMTU  = ops.MinPathMTU   // the floor of an estimate
	PathMTUAge  = 10 * time.Minute // RFC 1191 §6.3: "no less than 10 minutes"
	MaxPathMTUs = 1024             // destinations remembered
)

// pmtuEntry is one destination's estimate.
type pmtuEntry struct {
	mtu     int
	learned time.Time
}

// pmtuCache is the per-destination path MTU estimates below the link MTU.
type pmtuCache struct {
	m     map[netip.Addr]pmtuEntry
	dirty bool // changed since PathMTUs was last read (for the server to save)
}

// plateaus are RFC 1191 §7's MTU plateaus, for a router that does not say
// its next-hop MTU (an old one sends 0): the largest below the datagram's
// length is taken.
var plateaus = [...]int{32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68}

// learnPathMTU takes the next-hop MTU of a "fragmentation needed" about a
// datagram of length sent to dst, and reports whether the estimate
// dropped.
func (s *Stack) learnPathMTU(dst netip.Addr, mtu, length int, now time.Time) bool {
	if mtu == 0 || mtu >= length {
		mtu = 0 // RFC 1191 §5: not said, or not smaller than what was dropped
		for _, p := range plateaus {
			if p < length {
				mtu = p
				break
			}
		}
	}
	mtu = max(mtu, MinPathMTU)
	if mtu >= s.PathMTU(dst) {
		return false
	}
	c := &s.pmtu
	if c.m == nil {
		c.m = make(map[netip.Addr]pmtuEntry)
	}
	if _, ok := c.m[dst]; !ok && len(c.m) >= MaxPathMTUs {
		var oldest netip.Addr
		var at time.Time
		for a, e := range c.m {
			if !oldest.IsValid() || e.learned.Before(at) {
				oldest, at = a, e.learned
			}
		}
		delete(c.m, oldest)
	}
	c.m[dst] = pmtuEntry{mtu: mtu, learned: now}
	c.dirty = true
	s.c.PathMTUDecreases++
	return true
}

// PathMTU is the MTU of the path to dst: the link's, or less if a router
// said so within PathMTUAge.
func (s *Stack) PathMTU(dst netip.Addr) int {
	if e, ok := s.pmtu.m[dst]; ok && e.mtu < s.cfg.MTU {
		return e.mtu
	}
	return s.cfg.MTU
}

// tickPathMTU forgets the estimates older than PathMTUAge.
func (s *Stack) tickPathMTU(now time.Time) {
	for a, e := range s.pmtu.m {
		if now.Sub(e.learned) >= PathMTUAge {
			delete(s.pmtu.m, a)
			s.pmtu.dirty = true
			s.c.PathMTUExpired++
		}
	}
}

// PathMTUs returns the estimates in their stored form, and whether they
// changed since the last call: what the server keeps in the store so that
// a restarted ip does not send into a narrow path at full size again.
// Each entry is the address, the MTU and when it was learned (Unix
// seconds), 4+2+8 bytes, big-endian.
func (s *Stack) PathMTUs() (b []byte, changed bool) {
	changed, s.pmtu.dirty = s.pmtu.dirty, false
	for a, e := range s.pmtu.m {
		if !a.Is4() {
			continue
		}
		a4 := a.As4()
		b = append(b, a4[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(e.mtu))
		b = binary.BigEndian.AppendUint64(b, uint64(e.learned.Unix()))
	}
	return b, changed
}

// pmtuRecord is the size of one stored estimate (PathMTUs).
const pmtuRecord = 4 + 2 + 8

// RestorePathMTUs takes the estimates PathMTUs stored; malformed or
// expired ones, and any beyond MaxPathMTUs, are skipped. It returns how
// many it took.
func (s *Stack) RestorePathMTUs(b []byte) int {
	now := s.clock.Now()
	n := 0
	for ; len(b) >= pmtuRecord && n < MaxPathMTUs; b = b[pmtuRecord:] {
		a := netip.AddrFrom4([4]byte(b[:4]))
		mtu := int(binary.BigEndian.Uint16(b[4:]))
		at := time.Unix(int64(binary.BigEndian.Uint64(b[6:])), 0)
		if mtu < MinPathMTU || mtu >= s.cfg.MTU || now.Sub(at) >= PathMTUAge || at.After(now) {
			continue
		}
		if s.pmtu.m == nil {
			s.pmtu.m = make(map[netip.Addr]pmtuEntry)
		}
		s.pmtu.m[a] = pmtuEntry{mtu: mtu, learned: at}
		n++
	}
	return n
}

// tsoMSS is the MSS at which the device must cut an offloaded TCP segment
// of hdr header bytes to dst: what the transport asked, or less if the
// path is narrower.
func (s *Stack) tsoMSS(dst netip.Addr, hdr, mss int) int {
	return min(mss, s.PathMTU(dst)-header.IPv4MinimumSize-hdr)
}
