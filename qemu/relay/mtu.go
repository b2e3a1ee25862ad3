package relay

import (
	"fmt"
	"net/netip"

	"keepnet/servers/header"
)

// A link MTU (Config.MTU) makes the relay behave like a path whose middle
// hop has a smaller MTU than the Ethernet on both sides, as a VPN, PPPoE or
// a tunnel does. For every IPv4 datagram longer than the MTU, going either
// way:
//
//   - with DF set it is dropped and, as a router would (RFC 1191 §4, RFC
//     1812 §5.2.7.1), the sender gets an ICMP destination
//     unreachable "fragmentation needed and DF set" carrying the next-hop
//     MTU, quoting the datagram's header and its first 8 bytes; with
//     BlackHole set, no ICMP is sent (a path whose ICMP is filtered: the
//     "PMTU black hole" of RFC 2923);
//   - without DF it is cut into fragments (RFC 791), each within the MTU.
//
// The relay is a bridge, not a router, and has no address of its own; the
// ICMP message comes from Config.MTUFrom if set, otherwise from the
// datagram's own destination (as if the far end's tunnel endpoint
// answered). Both stacks accept it: neither checks an ICMP error's source
// against a router list, only the quoted datagram against its connections.
// Its Ethernet addresses are the offending frame's, swapped: it goes back
// to the sender from the MAC the sender addressed. It travels the other
// direction, impaired as that direction's frames are.
//
// Frames that are not IPv4, and datagrams within the MTU, pass untouched.

// MinMTU is the smallest link MTU the relay accepts: RFC 791's 68 bytes
// every IPv4 host must pass without further fragmentation.
const MinMTU = 68

// mtuLink applies the link MTU to the frames going one way.
type mtuLink struct {
	mtu       int
	blackHole bool
	from      netip.Addr // ICMP source; invalid: the datagram's destination
	c         *Counters
	buf       []byte // the ICMP message or fragment being built
}

func newMTULink(cfg Config, c *Counters) *mtuLink {
	if cfg.MTU == 0 {
		return nil
	}
	return &mtuLink{mtu: cfg.MTU, blackHole: cfg.BlackHole, from: cfg.MTUFrom, c: c,
		buf: make([]byte, 0, ethLen+max(cfg.MTU, 576))}
}

// apply calls pass with f, or with f's fragments, each valid only during
// the call; or drops f and calls back with the ICMP error for its sender
// (unless the link is a black hole). A nil link passes everything.
func (l *mtuLink) apply(f []byte, pass, back func([]byte)) {
	if l == nil || len(f) < ethLen+header.IPv4MinimumSize ||
		header.Ethernet(f).Type() != header.EtherTypeIPv4 || header.ValidateIPv4(f[ethLen:]) != nil {
		pass(f)
		return
	}
	ip := header.IPv4(f[ethLen:])
	if int(ip.TotalLength()) <= l.mtu {
		pass(f)
		return
	}
	if !ip.DontFragment() {
		l.c.Fragmented.Add(1)
		l.fragment(f, pass)
		return
	}
	l.c.TooBig.Add(1)
	if !l.blackHole {
		back(l.fragNeeded(f))
	}
}

// fragNeeded builds in l.buf the frame answering f with ICMP "fragmentation
// needed", the next-hop MTU in the second word (RFC 1191 §4).
func (l *mtuLink) fragNeeded(f []byte) []byte {
	eth := header.Ethernet(f)
	ip := header.IPv4(f[ethLen:])
	quote := ip[:min(int(ip.TotalLength()), ip.HeaderLength()+header.ICMPv4ErrorDataSize)]
	n := ethLen + header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quote)
	b := l.buf[:n]
	header.Ethernet(b).Encode(&header.EthernetFields{Dst: eth.Src(), Src: eth.Dst(), Type: header.EtherTypeIPv4})
	from := l.from
	if !from.IsValid() {
		from = ip.Dst()
	}
	header.IPv4(b[ethLen:]).Encode(&header.IPv4Fields{TotalLength: uint16(n - ethLen), TTL: 64,
		Protocol: header.ProtocolICMP, Src: from, Dst: ip.Src()})
	m := header.ICMPv4(b[ethLen+header.IPv4MinimumSize:])
	copy(m[header.ICMPv4MinimumSize:], quote)
	m.Encode(&header.ICMPv4Fields{Type: header.ICMPv4DstUnreachable, Code: header.ICMPv4FragNeeded, Rest: uint32(l.mtu)})
	return b
}

// fragment cuts the datagram in frame f into fragments of at most l.mtu
// bytes (RFC 791 §3.2, "an example fragmentation procedure"): each carries
// the header (options copied to every one: the relay does not tell the
// copied ones apart, which a receiver accepts) and a multiple of 8 bytes of
// data, all but the last with MF.
func (l *mtuLink) fragment(f []byte, pass func([]byte)) {
	ip := header.IPv4(f[ethLen:])
	hl := ip.HeaderLength()
	data := ip[hl:ip.TotalLength()]
	per := (l.mtu - hl) &^ 7
	if per <= 0 {
		l.c.Errors.Add(1) // a header of options longer than the link carries
		return
	}
	base := ip.FragmentOffset()
	mf := ip.MoreFragments()
	for off := 0; off < len(data); off += per {
		end := min(off+per, len(data))
		b := append(append(l.buf[:0], f[:ethLen+hl]...), data[off:end]...)
		fr := header.IPv4(b[ethLen:])
		fr.SetTotalLength(uint16(hl + end - off))
		flags := uint16(0)
		if end < len(data) || mf {
			flags = header.IPv4FlagMoreFragments
		}
		fr.SetFlagsFragmentOffset(flags, base+off)
		fr.SetChecksum(0)
		fr.SetChecksum(fr.HeaderChecksum())
		pass(b)
	}
}

// validateMTU checks Config's link MTU.
func validateMTU(cfg Config) error {
	switch {
	case cfg.MTU != 0 && (cfg.MTU < MinMTU || cfg.MTU > 65535):
		return fmt.Errorf("link MTU %d: want %d..65535 (0: none)", cfg.MTU, MinMTU)
	case cfg.MTUFrom.IsValid() && !cfg.MTUFrom.Is4():
		return fmt.Errorf("ICMP source %v: want an IPv4 address", cfg.MTUFrom)
	}
	return nil
}
