package ip

import (
	"errors"
	"net/netip"

	"keepnet/servers/header"
)

// # Several interfaces, routing and forwarding
//
// A Stack is one interface: its MAC, address and prefix, MTU, ARP cache
// and Link. With more than one NIC the Stacks are joined by a [Router]:
//
//   - Local delivery: a datagram to any interface's address is ours,
//     whichever interface it came in on (the weak host model of
//     RFC 1122 §3.3.4.2).
//   - Routing: a [Table] of the connected networks, the static routes and
//     a default route by the first gateway configured, looked up by
//     longest prefix match, picks the interface and next hop of both
//     what we send and what we forward. What a Stack sends itself (echo
//     replies, ICMP errors) has that interface's address as source; what a
//     transport sends goes through the first interface's Stack and has its
//     address (the one the transports were told, and checksummed with).
//   - Forwarding (RFC 1812 §5.2), when on: a datagram for someone else is
//     dropped if its source or destination is a broadcast, multicast or
//     reserved address, or it came in a link-layer broadcast; at TTL 1 or less it gets ICMP time exceeded; with
//     no route, ICMP net unreachable; bigger than the out interface's MTU
//     with DF set, ICMP fragmentation needed with that MTU (RFC 1191);
//     otherwise its TTL is decremented, its checksum patched (RFC 1624)
//     and it goes out, cut in fragments if it must be.
//
// Copies: the server hands HandleFrame its private copy of the received
// frame (taken so no field is read twice from shared memory); a forwarded
// datagram is rewritten in place there (Ethernet addresses, TTL, checksum)
// and that frame goes to the out interface's Link, which copies it once
// into a transmit buffer of that interface. Only a datagram that waits for
// ARP (copied into the queue) or must be fragmented (each fragment built
// in the Stack's frame buffer) is copied once more.
//
// The packet filter sees forwarded datagrams as it sees the others: the
// server asks pf about every received frame before HandleFrame (In, on the
// interface it came in on) and about every frame a Link is given (Out, on
// that Link's interface).
//
// A lone interface has no Router: its Stack routes by its subnet and
// gateway, and the only cost of all this on its path is a nil test.

// StaticRoute is a configured route: Dst through the gateway Via, which
// must be on one of the connected networks.
type StaticRoute struct {
	Dst netip.Prefix
	Via netip.Addr
}

// ForwardCounters are a Router's statistics. Every datagram forwarding
// drops is counted in exactly one of the drop counters.
type ForwardCounters struct {
	Forwarded         uint64 // datagrams sent on (whole or in fragments)
	ForwardFragmented uint64 // of those, cut in fragments for the out MTU
	TTLExceeded       uint64 // drop: TTL ≤ 1 (ICMP time exceeded sent)
	NoRoute           uint64 // drop: no route (ICMP net unreachable sent)
	FragNeeded        uint64 // drop: DF set, over the out MTU (ICMP fragmentation needed sent)
	Martians          uint64 // drop: from or to a broadcast, multicast or reserved address, or a link-layer broadcast
}

// A Router joins the Stacks of several interfaces: one routing table, local
// delivery for all their addresses and, when on, forwarding between them.
// Like its Stacks it is driven by one server loop.
type Router struct {
	ifaces     []*Stack
	table      Table
	forwarding bool
	c          ForwardCounters
}

// ErrBadRoute is returned (wrapped) for a static route ParseRoute cannot
// read or whose gateway is on no connected network.
var ErrBadRoute = errors.New("bad route")

// NewRouter joins ifaces (interface i is ifaces[i]; none may be in another
// Router) with the connected networks, the static routes and a default
// route through the first interface gateway configured, and forwards
// between them if forwarding.
func NewRouter(ifaces []*Stack, static []StaticRoute, forwarding bool) (*Router, error) {
	r := &Router{ifaces: ifaces, forwarding: forwarding}
	nets := make([]netip.Prefix, len(ifaces))
	for i, s := range ifaces {
		nets[i] = s.subnet
		r.table.Add(Route{Dst: s.subnet, Iface: i})
	}
	if err := CheckRoutes(nets, static); err != nil {
		return nil, err
	}
	for _, sr := range static {
		r.table.Add(Route{Dst: sr.Dst, Via: sr.Via, Iface: connectedOn(nets, sr.Via)})
	}
	for i, s := range ifaces {
		if gw := s.cfg.Gateway; gw.IsValid() {
			r.table.Add(Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: gw, Iface: i})
			break
		}
	}
	for _, s := range ifaces {
		s.router = r
	}
	return r, nil
}

// Table returns the routing table's routes, longest prefix first.
func (r *Router) Table() []Route { return r.table.Routes() }

// Counters returns a snapshot of the forwarding statistics.
func (r *Router) Counters() ForwardCounters { return r.c }

// isLocal reports whether a is one of our addresses.
func (r *Router) isLocal(a netip.Addr) bool { return r.owner(a) != nil }

// owner is the interface whose address a is, or nil.
func (r *Router) owner(a netip.Addr) *Stack {
	for _, s := range r.ifaces {
		if s.addr == a {
			return s
		}
	}
	return nil
}

// route sends p, a datagram of from's, by the table.
func (r *Router) route(from *Stack, p pending) error {
	rt, ok := r.table.Lookup(p.dst)
	if !ok || r.isLocal(p.dst) {
		from.c.NoRoute++
		return ErrNoRoute
	}
	out := r.ifaces[rt.Iface]
	out.c.IPOut++
	if !p.src.IsValid() {
		p.src = out.addr // the interface it leaves by (OutputFrom)
	}
	if out.isBroadcast(p.dst) {
		return out.transmit(header.BroadcastMAC, p.src, p.proto, p.dst, p.payload, p.offload)
	}
	return out.resolveAndSend(rt.nextHop(p.dst), p)
}

// forward sends on ip, a valid datagram that came in on in, in the frame
// eth, and not for us, or drops it with the ICMP error RFC 1812 asks for.
func (r *Router) forward(in *Stack, eth header.Ethernet, ip header.IPv4) {
	dgram := ip[:ip.TotalLength()]
	// Neither a martian (RFC 1812 §5.3.7) nor what came in a link-layer
	// broadcast (§5.3.4) is forwarded.
	if eth.Dst() == header.BroadcastMAC || r.martian(in, ip.Src(), ip.Dst()) {
		r.c.Martians++
		return
	}
	if ip.TTL() <= 1 {
		r.c.TTLExceeded++
		in.sendICMPError(header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded, 0, dgram)
		return
	}
	rt, ok := r.table.Lookup(ip.Dst())
	if !ok {
		r.c.NoRoute++
		in.sendICMPError(header.ICMPv4DstUnreachable, header.ICMPv4NetUnreachable, 0, dgram)
		return
	}
	out := r.ifaces[rt.Iface]
	if len(dgram) > out.cfg.MTU && ip.DontFragment() {
		r.c.FragNeeded++
		in.sendICMPError(header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, uint32(out.cfg.MTU), dgram)
		return
	}
	decrementTTL(dgram)
	r.c.Forwarded++
	if len(dgram) > out.cfg.MTU {
		r.c.ForwardFragmented++
	}
	frame := eth[:header.EthernetMinimumSize+len(dgram)]
	out.resolveAndSend(rt.nextHop(ip.Dst()), pending{payload: frame, forwarded: true})
}

// martian reports whether a datagram from src to dst, come in on in, must
// not be forwarded: either is unspecified, loopback, link-local, multicast,
// reserved (240/4) or a broadcast, or src is one of ours.
func (r *Router) martian(in *Stack, src, dst netip.Addr) bool {
	if in.isBroadcast(src) || r.isLocal(src) {
		return true
	}
	for _, s := range r.ifaces {
		if s.isBroadcast(dst) {
			return true
		}
	}
	return unroutable(src) || unroutable(dst)
}

// reserved is 240.0.0.0/4 (RFC 1112's class E), with the limited broadcast.
var reserved = netip.MustParsePrefix("240.0.0.0/4")

// unroutable reports whether a is an address no router forwards to or
// from (RFC 1812 §5.3.7, RFC 3927 §7).
func unroutable(a netip.Addr) bool {
	return a.As4()[0] == 0 || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || reserved.Contains(a)
}

// decrementTTL decrements ip's TTL and patches its header checksum
// incrementally, by RFC 1624's equation 3, HC' = ~(~HC + ~m + m'), where m
// is the 16-bit word holding the TTL (with the protocol) before and m'
// after.
func decrementTTL(ip header.IPv4) {
	m := uint16(ip.TTL())<<8 | uint16(ip.Protocol())
	ip.SetTTL(ip.TTL() - 1)
	sum := uint32(^ip.Checksum()) + uint32(^m) + uint32(m-1<<8)
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	ip.SetChecksum(^uint16(sum))
}

// sendForwarded sends a forwarded datagram, in frame after its Ethernet
// header, to mac: the frame itself, its Ethernet header rewritten, if it
// fits the MTU, else in fragments.
func (s *Stack) sendForwarded(mac header.MAC, frame []byte) error {
	const eh = header.EthernetMinimumSize
	ip := header.IPv4(frame[eh:])
	if len(ip) > s.cfg.MTU {
		return s.fragmentForwarded(mac, ip)
	}
	header.Ethernet(frame).Encode(&header.EthernetFields{Dst: mac, Src: s.mac, Type: header.EtherTypeIPv4})
	if err := s.link.SendFrame(frame); err != nil {
		s.c.LinkErrors++
		return err
	}
	s.c.FramesOut++
	return nil
}

// fragmentForwarded sends ip to mac in fragments of the MTU (RFC 791
// §3.2): each keeps the header's fields, the first its options, the rest
// only those to be copied; offsets count from ip's own (it may be a
// fragment itself), and the last keeps ip's more-fragments flag.
func (s *Stack) fragmentForwarded(mac header.MAC, ip header.IPv4) error {
	const eh = header.EthernetMinimumSize
	header.Ethernet(s.tx).Encode(&header.EthernetFields{Dst: mac, Src: s.mac, Type: header.EtherTypeIPv4})
	f := header.IPv4Fields{TOS: ip.TOS(), ID: ip.ID(), TTL: ip.TTL(), Protocol: ip.Protocol(),
		Src: ip.Src(), Dst: ip.Dst(), Options: ip.Options()}
	data := ip.Payload()
	for off := 0; off < len(data); {
		hl := header.IPv4MinimumSize + len(f.Options)
		end := min(off+(s.cfg.MTU-hl)&^7, len(data))
		f.Flags = 0
		if end < len(data) || ip.MoreFragments() {
			f.Flags = header.IPv4FlagMoreFragments
		}
		f.FragmentOffset, f.TotalLength = ip.FragmentOffset()+off, uint16(hl+end-off)
		header.IPv4(s.tx[eh:]).Encode(&f)
		copy(s.tx[eh+hl:], data[off:end])
		if err := s.sendFrame(eh + hl + end - off); err != nil {
			return err
		}
		s.c.FragmentsOut++
		if off == 0 {
			f.Options = copiedOptions(f.Options)
		}
		off = end
	}
	return nil
}

// IPv4 option types with no length byte (RFC 791).
const (
	optEnd  = 0
	optNoop = 1
	optCopy = 0x80 // the copied flag: the option goes in every fragment
)

// copiedOptions returns the options every fragment carries, those with
// the copied flag, padded with end-of-list to a multiple of 4 bytes. It
// stops at the end of the list or at a malformed option.
func copiedOptions(opts []byte) []byte {
	var out []byte
	for i := 0; i < len(opts) && opts[i] != optEnd; {
		if opts[i] == optNoop {
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			break
		}
		n := int(opts[i+1])
		if opts[i]&optCopy != 0 {
			out = append(out, opts[i:i+n]...)
		}
		i += n
	}
	for len(out)%4 != 0 {
		out = append(out, optEnd)
	}
	return out
}
