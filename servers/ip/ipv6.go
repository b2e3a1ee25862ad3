package ip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"keepnet/drivers/link"
	"keepnet/servers/header"
	"keepnet/servers/ip/nd"
)

// IPv6 on an interface (issue 20): the Stack answers Neighbor Discovery,
// configures its addresses (link-local, the operator's, SLAAC from routers'
// advertisements, each after duplicate address detection), resolves its
// neighbours and answers ICMPv6 echo. The protocol state is servers/ip/nd's;
// this file does its I/O: it hands nd what arrives and the time, and
// carries out the Actions nd returns.

// IPv6Config is an interface's IPv6 configuration from the command line
// (keepnet.ip6=, keepnet.gw6=). IPv6 runs unless Off: the link-local
// address and SLAAC need nothing given.
type IPv6Config struct {
	Off     bool
	Static  []netip.Prefix // the operator's addresses (DAD first, as for any)
	Gateway netip.Addr     // a default router when no router advertises one
}

// MulticastLink is a Link whose NIC filters multicast frames: the Stack
// joins the Ethernet groups of its IPv6 groups (all-nodes, each address's
// solicited-node group), and frames to any other group never reach it.
type MulticastLink interface {
	Link
	SetMulticast(group header.MAC, join bool) error
}

// Datagram6Transport is a transport that takes IPv6 datagrams too: whole
// (as DatagramTransport), its header at off, after the extension headers;
// verified as DatagramTransport's.
type Datagram6Transport interface {
	DeliverDatagram6(h header.IPv6, off int, verified bool)
}

// Limits of the IPv6 state: datagrams waiting for Neighbor Discovery, as
// for ARP (Limits.ARPQueueLen, ARPQueueMemory).
const ndCacheEntries = 512

// allNodes is the link-local all-nodes group every IPv6 node is in.
var allNodes = netip.MustParseAddr("ff02::1")

// allRouters is where router solicitations go.
var allRouters = netip.MustParseAddr("ff02::2")

// stack6 is a Stack's IPv6 state.
type stack6 struct {
	cfg   IPv6Config
	auto  *nd.Autoconf
	cache *nd.Cache
	// groups counts, for each IPv6 group joined, the reasons (addresses)
	// it is joined for; macs counts the groups behind each Ethernet group.
	groups map[netip.Addr]int
	macs   map[header.MAC]int
	// waiting are datagrams (IPv6 header included) for next hops being
	// resolved, oldest first; waitBytes their bytes.
	waiting   map[netip.Addr][][]byte
	waitBytes int
	next      time.Time // when nd has work next (zero: none)
	// fragID identifies the datagrams we fragment; whole and frag are
	// the datagram being cut (checksummed) and the fragment being built.
	fragID      uint32
	whole, frag []byte
	saved       []byte // the state IPv6State last returned (or EnableIPv6 took)
	// tclass is the traffic class of the datagrams being sent: the ECN
	// codepoint a transport asked for, set only during OutputTransport6.
	tclass uint8
}

// EnableIPv6 starts IPv6 on the interface with cfg: its link-local and
// static addresses start duplicate address detection, and it solicits
// routers. kept, if not nil, is what a predecessor's IPv6State said: its
// addresses are ours again at once, its routers and prefixes too (nd's
// RestoreAutoconf). Call it once, after New.
func (s *Stack) EnableIPv6(cfg IPv6Config, kept []byte) {
	if cfg.Off || s.v6 != nil {
		return
	}
	now := s.clock.Now()
	v := &stack6{cfg: cfg, groups: map[netip.Addr]int{}, macs: map[header.MAC]int{}, fragID: uint32(now.UnixNano() >> 10),
		waiting: map[netip.Addr][][]byte{}, cache: nd.NewCache(nd.CacheConfig{MaxEntries: ndCacheEntries})}
	s.v6 = v
	s.join6(allNodes, true)
	acfg := nd.AutoconfConfig{MAC: s.mac, LinkMTU: uint32(s.cfg.MTU), Static: cfg.Static}
	auto, acts := nd.NewAutoconf(acfg, now)
	if kept != nil {
		var err error
		if auto, acts, err = nd.RestoreAutoconf(acfg, kept, now); err != nil {
			s.c.IP6KeptRefused++ // started anew
		}
	}
	v.auto = auto
	v.saved = kept
	s.do6(acts)
}

// IPv6State is the interface's IPv6 configuration in the form EnableIPv6
// takes back, and whether it changed since the last call: what the server
// keeps in the store for its successor. Nil without IPv6.
func (s *Stack) IPv6State() ([]byte, bool) {
	if s.v6 == nil {
		return nil, false
	}
	b := s.v6.auto.Marshal()
	if bytes.Equal(b, s.v6.saved) {
		return b, false
	}
	s.v6.saved = b
	return b, true
}

// IPv6Addresses are the interface's IPv6 addresses (tentative ones too),
// for its statistics; none without IPv6.
func (s *Stack) IPv6Addresses() []nd.Address {
	if s.v6 == nil {
		return nil
	}
	return s.v6.auto.Addresses()
}

// join6 joins (or leaves) group g, programming the NIC's filter when its
// Ethernet group is new (or no longer needed).
func (s *Stack) join6(g netip.Addr, join bool) {
	v := s.v6
	mac := header.MulticastMAC(g)
	if join {
		if v.groups[g]++; v.groups[g] == 1 {
			s.sendMLD(mldJoin, g)
		}
		if v.macs[mac]++; v.macs[mac] == 1 {
			s.setMulticast(mac, true)
		}
		return
	}
	if v.groups[g] == 0 {
		return
	}
	if v.groups[g]--; v.groups[g] == 0 {
		delete(v.groups, g)
		s.sendMLD(mldLeave, g)
	}
	if v.macs[mac]--; v.macs[mac] == 0 {
		delete(v.macs, mac)
		s.setMulticast(mac, false)
	}
}

func (s *Stack) setMulticast(mac header.MAC, join bool) {
	ml, ok := s.link.(MulticastLink)
	if !ok {
		return
	}
	if err := ml.SetMulticast(mac, join); err != nil {
		s.c.LinkErrors++
	}
}

// acceptsGroup says whether frames to Ethernet group mac are for us.
func (s *Stack) acceptsGroup(mac header.MAC) bool {
	return s.v6 != nil && s.v6.macs[mac] > 0
}

// do6 carries out nd's actions.
func (s *Stack) do6(acts []nd.Action) {
	v := s.v6
	for _, a := range acts {
		switch a.Kind {
		case nd.SendNS:
			s.sendNS(a)
		case nd.SendRS:
			s.sendRS()
		case nd.Resolved:
			s.flushWaiting(a.Target, a.MAC)
		case nd.Unreachable:
			s.c.NDQueueDrops += uint64(len(v.waiting[a.Target]))
			s.dropWaiting(a.Target)
			s.c.NDResolveFailures++
		case nd.Join:
			s.join6(header.SolicitedNode(a.Target), true)
		case nd.Leave:
			s.join6(header.SolicitedNode(a.Target), false)
		case nd.AddrReady:
			if a.Restored {
				s.c.IP6AddrsKept++
				continue // in use before the restart: nothing new to announce
			}
			s.c.IP6AddrsConfigured++
			// Tell the link we are here (RFC 4861 §7.2.6 MAY): switches
			// learn us, neighbours with a stale entry update it.
			s.sendNA(allNodes, header.MulticastMAC(allNodes), a.Target, header.NAOverride)
		case nd.AddrGone:
			if a.Duplicate {
				s.c.DADConflicts++
			}
		}
	}
	v.next = earliest(v.auto.Next(), v.cache.Next())
}

// earliest is the earlier of two times, zero being never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// tick6 runs nd's timers when they are due.
func (s *Stack) tick6(now time.Time) {
	v := s.v6
	if v == nil || v.next.IsZero() || now.Before(v.next) {
		return
	}
	acts := v.auto.Tick(now)
	s.do6(append(acts, v.cache.Tick(now)...))
}

// handleIPv6 processes an IPv6 datagram in a frame for us.
func (s *Stack) handleIPv6(eth header.Ethernet) {
	v := s.v6
	if v == nil {
		s.c.FramesUnknownType++
		return
	}
	s.c.IP6In++
	b := eth.Payload()
	if header.ValidateIPv6(b) != nil {
		s.c.IP6Bad++
		return
	}
	h := header.IPv6(b[:header.IPv6MinimumSize+int(header.IPv6(b).PayloadLength())])
	src, dst := h.Src(), h.Dst()
	if src.IsMulticast() || src.IsLoopback() || src.Is4In6() {
		s.c.IP6Bad++
		return
	}
	if !(v.auto.IsOurs(dst) || dst.IsMulticast() && v.groups[dst] > 0) {
		s.c.IP6NotForUs++
		return
	}
	x, err := header.ParseIPv6Extensions(h)
	if err != nil {
		s.c.IP6BadExtension++
		var pp *header.IPv6ParamProblem
		if errors.As(err, &pp) && (!dst.IsMulticast() || pp.EvenToMulticast) {
			s.sendICMPv6Error(header.ICMPv6ParamProblem, pp.Code, pp.Pointer, h)
		}
		return
	}
	verified := s.rxChecked&link.RxCheckedL4 != 0
	if x.Fragment {
		verified = false
		if h = s.reassemble6(h, x); h == nil {
			return
		}
		if x, err = header.ParseIPv6Extensions(h); err != nil || x.Fragment {
			s.c.IP6BadExtension++ // the reassembled chain is bad: no error for a datagram put together
			return
		}
	}
	switch x.Upper {
	case header.ProtocolICMPv6:
		s.handleICMPv6(h, header.ICMPv6(h[x.UpperOffset:]))
	case header.ProtocolIPv6NoNext:
	case header.ProtocolTCP, header.ProtocolUDP:
		if t, ok := s.transports[x.Upper].(Datagram6Transport); ok {
			s.c.IP6Delivered++
			if verified {
				s.c.IP6ChecksumVerified++
			}
			t.DeliverDatagram6(h, x.UpperOffset, verified)
			return
		}
		// No transport takes it: say so as a closed port would, so a
		// peer's connect fails at once rather than timing out.
		s.c.IP6NoTransport++
		if !dst.IsMulticast() {
			s.sendICMPv6Error(header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, 0, h)
		}
	default:
		s.c.IP6NoTransport++
		if !dst.IsMulticast() {
			s.sendICMPv6Error(header.ICMPv6ParamProblem, header.ICMPv6UnknownNextHdr, uint32(x.UpperField), h)
		}
	}
}

// handleICMPv6 processes the ICMPv6 message m of datagram h.
func (s *Stack) handleICMPv6(h header.IPv6, m header.ICMPv6) {
	s.c.ICMP6In++
	src, dst := h.Src(), h.Dst()
	if header.ValidateICMPv6(m, src, dst) != nil {
		s.c.ICMP6Bad++
		return
	}
	if m.Type().IsNDP() {
		if header.ValidateNDP(m, h.HopLimit(), src, dst) != nil {
			s.c.NDBad++
			return
		}
	}
	switch m.Type() {
	case header.ICMPv6EchoRequest:
		s.echo6(src, dst, m)
	case header.ICMPv6NeighborSolic:
		s.handleNS(src, dst, m)
	case header.ICMPv6NeighborAdvert:
		s.handleNA(m)
	case header.ICMPv6RouterAdvert:
		s.handleRA(src, m)
	case header.ICMPv6PacketTooBig:
		s.packetTooBig(m)
	case header.ICMPv6MLDQuery:
		s.mldQuery(h)
	default:
		// Router solicitations (we are no router), redirects, MLD
		// queries, replies and errors: nothing to do yet.
		s.c.ICMP6Ignored++
	}
}

// packetTooBig takes a Packet Too Big about a datagram we sent (RFC 8201):
// the path to its destination carries m.MTU() bytes at most (never below
// IPv6's minimum, 1280), and what we send there later is cut in fragments
// to fit (RFC 8200 §5: the source fragments). A message whose quote is no
// datagram of ours is ignored.
func (s *Stack) packetTooBig(m header.ICMPv6) {
	q := m.Body()
	if len(q) < header.IPv6MinimumSize || header.IPv6(q).Version() != header.IPv6Version || !s.v6.auto.IsOurs(header.IPv6(q).Src()) {
		s.c.ICMPErrorsIgnored++
		return
	}
	s.c.ICMP6PacketTooBig++
	// The length of what was dropped: the quote may be cut short.
	length := header.IPv6MinimumSize + int(header.IPv6(q).PayloadLength())
	s.learnPathMTU(header.IPv6(q).Dst(), max(int(m.MTU()), header.IPv6MinimumMTU), max(length, int(m.MTU())+1), s.clock.Now())
}

// echo6 answers an echo request (RFC 4443 §4.2): the same identifier,
// sequence number and data, from the address it was sent to (or, sent to
// a group, from the address we would use to reach its source).
func (s *Stack) echo6(src, dst netip.Addr, m header.ICMPv6) {
	s.c.ICMP6EchoRequests++
	from := dst
	if dst.IsMulticast() {
		var ok bool
		if from, ok = s.v6.auto.Source(src); !ok {
			return
		}
	}
	reply := header.ICMPv6(s.icmpBuf[:len(m)])
	copy(reply, m)
	reply.SetType(header.ICMPv6EchoReply)
	reply.SetCode(0)
	reply.SetChecksumFor(from, src)
	if s.output6(header.ProtocolICMPv6, from, src, reply, 0, false) == nil {
		s.c.ICMP6EchoReplies++
	}
}

// handleNS answers a Neighbor Solicitation for one of our addresses (RFC
// 4861 §7.2.3-4), or finds a duplicate of a tentative one (RFC 4862 §5.4.3).
func (s *Stack) handleNS(src, dst netip.Addr, m header.ICMPv6) {
	v := s.v6
	s.c.NSIn++
	target := m.Target()
	var sll *header.MAC
	if body, ok := m.Options().Find(header.NDPSourceLinkAddr); ok {
		if mac, ok := header.LinkAddr(body); ok {
			sll = &mac
		}
	}
	if v.auto.IsTentative(target) {
		if src.IsUnspecified() { // another node's DAD for it: ours loses
			s.do6(v.auto.Conflict(target))
		}
		return // never answered while tentative
	}
	if !v.auto.IsOurs(target) {
		return
	}
	if src.IsUnspecified() {
		// DAD of an address we hold: say it is ours, to all nodes.
		s.sendNA(allNodes, header.MulticastMAC(allNodes), target, header.NAOverride)
		return
	}
	if sll != nil {
		s.do6(v.cache.Solicited(src, *sll, false, s.clock.Now()))
	}
	mac, ok := header.MAC{}, false
	if sll != nil {
		mac, ok = *sll, true
	} else if st, m, have := v.cache.State(src); have && st != nd.Incomplete {
		mac, ok = m, true
	}
	if !ok {
		return // unicast solicitation without the address to answer: wait for its retry
	}
	s.sendNA(src, mac, target, header.NASolicited|header.NAOverride)
}

// handleNA takes a Neighbor Advertisement: a duplicate of a tentative
// address, or a neighbour's link-layer address (RFC 4861 §7.2.5).
func (s *Stack) handleNA(m header.ICMPv6) {
	v := s.v6
	s.c.NAIn++
	target := m.Target()
	if v.auto.IsTentative(target) || v.auto.IsOurs(target) {
		s.do6(v.auto.Conflict(target))
		return
	}
	var tll *header.MAC
	if body, ok := m.Options().Find(header.NDPTargetLinkAddr); ok {
		if mac, ok := header.LinkAddr(body); ok {
			tll = &mac
		}
	}
	s.do6(v.cache.Advertised(target, m.NAFlags(), tll, s.clock.Now()))
}

// handleRA takes a Router Advertisement (RFC 4861 §6.3.4): a default
// router, its prefixes (on-link, SLAAC), the link's MTU and timers.
func (s *Stack) handleRA(src netip.Addr, m header.ICMPv6) {
	v := s.v6
	s.c.RAIn++
	now := s.clock.Now()
	ms := func(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
	ra := nd.RA{Lifetime: time.Duration(m.RALifetime()) * time.Second, Reachable: ms(m.RAReachable()),
		Retrans: ms(m.RARetransmit()), HopLimit: m.RAHopLimit()}
	var acts []nd.Action
	for t, body := range m.Options().All() {
		switch t {
		case header.NDPPrefixInfo:
			if pi, ok := header.ParsePrefixInfo(body); ok {
				ra.Prefixes = append(ra.Prefixes, pi)
			}
		case header.NDPMTU:
			if mtu, ok := header.ParseMTUOption(body); ok {
				ra.MTU = mtu
			}
		case header.NDPSourceLinkAddr:
			if mac, ok := header.LinkAddr(body); ok {
				acts = append(acts, v.cache.Solicited(src, mac, true, now)...)
			}
		}
	}
	v.cache.SetRouterTimes(ra.Reachable, ra.Retrans)
	s.do6(append(acts, v.auto.RouterAdvert(src, ra, now)...))
}

// sendNS sends a Neighbor Solicitation: for DAD from the unspecified
// address without our link-layer address; otherwise from our address for
// the target's scope, to its solicited-node group or, probing, to it.
func (s *Stack) sendNS(a nd.Action) {
	var b [32]byte
	var src netip.Addr = netip.IPv6Unspecified()
	dst, mac := header.SolicitedNode(a.Target), header.MulticastMAC(header.SolicitedNode(a.Target))
	n := 0
	if a.DAD {
		n = header.NeighborSolicitation(b[:], a.Target, nil)
	} else {
		var ok bool
		if src, ok = s.v6.auto.Source(a.Target); !ok {
			return
		}
		if a.Unicast {
			dst, mac = a.Target, a.MAC
		}
		n = header.NeighborSolicitation(b[:], a.Target, &s.mac)
	}
	m := header.ICMPv6(b[:n])
	m.SetChecksumFor(src, dst)
	if s.send6(mac, src, dst, header.ProtocolICMPv6, header.NDPHopLimit, m, false) == nil {
		s.c.NSOut++
	}
}

// sendNA advertises target, one of our addresses, to dst at mac.
func (s *Stack) sendNA(dst netip.Addr, mac header.MAC, target netip.Addr, flags uint8) {
	var b [32]byte
	m := header.ICMPv6(b[:header.NeighborAdvertisement(b[:], target, flags, s.mac)])
	m.SetChecksumFor(target, dst)
	if s.send6(mac, target, dst, header.ProtocolICMPv6, header.NDPHopLimit, m, false) == nil {
		s.c.NAOut++
	}
}

// sendRS solicits routers, from our link-local address once it is ours
// (with our link-layer address), else from the unspecified address
// without it (RFC 4861 §6.3.7, §4.1).
func (s *Stack) sendRS() {
	var b [16]byte
	src := header.LinkLocal(s.mac)
	var m header.ICMPv6
	if s.v6.auto.IsOurs(src) {
		m = b[:header.RouterSolicitation(b[:], &s.mac)]
	} else {
		src = netip.IPv6Unspecified()
		m = b[:header.RouterSolicitation(b[:], nil)]
	}
	m.SetChecksumFor(src, allRouters)
	if s.send6(header.MulticastMAC(allRouters), src, allRouters, header.ProtocolICMPv6, header.NDPHopLimit, m, false) == nil {
		s.c.RSOut++
	}
}

// Source is the address a datagram to dst would be sent from: for IPv6
// the one RFC 6724 picks (nd.Autoconf.Source), for IPv4 ours. It fails
// with ErrNoRoute when nothing routes to dst (no IPv6 on the stack; no
// on-link prefix, router or static gateway for it), and ErrNoAddress when
// something does but no address is usable yet. A transport asks it before
// its first segment (servers/ops OpSource): TCP names its 4-tuple before
// the SYN.
func (s *Stack) Source(dst netip.Addr) (netip.Addr, error) {
	if dst = dst.Unmap(); dst.Is4() {
		if a := s.cfg.Addr.Addr(); a.IsValid() && !a.IsUnspecified() {
			return a, nil
		}
		return netip.Addr{}, fmt.Errorf("ip: %v: %w", dst, ErrNoAddress)
	}
	v := s.v6
	if v == nil {
		return netip.Addr{}, fmt.Errorf("ip: %v: %w", dst, ErrNoRoute)
	}
	if _, ok := v.auto.NextHop(dst, v.cache); !ok && !v.cfg.Gateway.IsValid() && !dst.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("ip: %v: %w", dst, ErrNoRoute)
	}
	src, ok := v.auto.Source(dst)
	if !ok {
		return netip.Addr{}, fmt.Errorf("ip: %v: %w", dst, ErrNoAddress)
	}
	return src, nil
}

// Output6 sends payload, an upper-layer message of protocol proto whose
// checksum the caller set, from src (one of our addresses; the zero Addr:
// the one RFC 6724 picks) to dst.
func (s *Stack) Output6(proto uint8, src, dst netip.Addr, payload []byte) error {
	if s.v6 == nil {
		return fmt.Errorf("ip: %v: %w", dst, ErrNoRoute)
	}
	if !src.IsValid() {
		var ok bool
		if src, ok = s.v6.auto.Source(dst); !ok {
			return fmt.Errorf("ip: %v: no source address: %w", dst, ErrNoRoute)
		}
	} else if !s.v6.auto.IsOurs(src) {
		return fmt.Errorf("ip: %v: %w", src, ErrNotOurs)
	}
	return s.output6(proto, src, dst, payload, 0, false)
}

// OutputTransport6 sends a transport's segment to dst from src (invalid:
// the address RFC 6724 picks for dst); with checksum, IP fills in the
// transport's checksum (it must, when it picked the source).
func (s *Stack) OutputTransport6(proto uint8, src, dst netip.Addr, seg []byte, checksum bool) error {
	return s.OutputTransport6ECN(proto, src, dst, seg, checksum, 0)
}

// OutputTransport6ECN is OutputTransport6 of a datagram whose traffic
// class carries the ECN codepoint ecn (RFC 3168 §5).
func (s *Stack) OutputTransport6ECN(proto uint8, src, dst netip.Addr, seg []byte, checksum bool, ecn uint8) error {
	if _, ok := checksumOffset(proto); checksum && !ok {
		return fmt.Errorf("ip: checksum of protocol %d: %w", proto, ErrTooBig)
	}
	if !src.IsValid() && !checksum {
		return fmt.Errorf("ip: %v: no source and no checksum asked: %w", dst, ErrNotOurs)
	}
	if s.v6 == nil {
		return fmt.Errorf("ip: %v: %w", dst, ErrNoRoute)
	}
	if !src.IsValid() {
		var ok bool
		if src, ok = s.v6.auto.Source(dst); !ok {
			return fmt.Errorf("ip: %v: no source address: %w", dst, ErrNoRoute)
		}
	} else if !s.v6.auto.IsOurs(src) {
		return fmt.Errorf("ip: %v: %w", src, ErrNotOurs)
	}
	s.v6.tclass = ecn & 3
	defer func() { s.v6.tclass = 0 }()
	return s.output6(proto, src, dst, seg, 0, checksum)
}

// SendUnreachable6 answers offending, an IPv6 datagram we received, with a
// port unreachable to its source (RFC 4443 §3.1, its rules in
// sendICMPv6Error).
func (s *Stack) SendUnreachable6(offending []byte) {
	if s.v6 == nil || header.ValidateIPv6(offending) != nil {
		return
	}
	h := header.IPv6(offending[:header.IPv6MinimumSize+int(header.IPv6(offending).PayloadLength())])
	if !h.Dst().IsMulticast() {
		s.sendICMPv6Error(header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, 0, h)
	}
}

// isIPv6Datagram says whether b starts with an IPv6 header.
func isIPv6Datagram(b []byte) bool { return len(b) > 0 && b[0]>>4 == header.IPv6Version }

// fillChecksum6 sets the transport checksum of seg, of protocol proto,
// sent from src to dst (UDP's zero is sent as all ones: over IPv6 a zero
// checksum is not allowed, RFC 8200 §8.1).
func fillChecksum6(proto uint8, src, dst netip.Addr, seg []byte) {
	off, ok := checksumOffset(proto)
	if !ok || len(seg) < off+2 {
		return
	}
	seg[off], seg[off+1] = 0, 0
	c := ^header.Checksum(seg, header.PseudoHeaderChecksum6(proto, src, dst, uint32(len(seg))))
	if c == 0 && proto == header.ProtocolUDP {
		c = 0xffff
	}
	seg[off], seg[off+1] = byte(c>>8), byte(c)
}

// output6 sends one datagram, resolving its next hop first: it waits (a
// bounded queue, as for ARP) while Neighbor Discovery runs. hops 0 is the
// link's hop limit.
func (s *Stack) output6(proto uint8, src, dst netip.Addr, payload []byte, hops uint8, checksum bool) error {
	v := s.v6
	if hops == 0 {
		hops = v.auto.HopLimit()
	}
	if mtu := s.pathMTU6(dst); header.IPv6MinimumSize+len(payload) > mtu {
		return s.fragment6(proto, src, dst, payload, hops, checksum, mtu)
	}
	if dst.IsMulticast() {
		return s.send6(header.MulticastMAC(dst), src, dst, proto, hops, payload, checksum)
	}
	next, ok := v.auto.NextHop(dst, v.cache)
	if !ok && v.cfg.Gateway.IsValid() {
		next, ok = v.cfg.Gateway, true
	}
	if !ok {
		s.c.IP6NoRoute++
		return fmt.Errorf("ip: %v: %w", dst, ErrNoRoute)
	}
	now := s.clock.Now()
	mac, ok, acts := v.cache.Lookup(next, now)
	if ok {
		err := s.send6(mac, src, dst, proto, hops, payload, checksum)
		s.do6(acts)
		return err
	}
	// Wait for the neighbour: the whole datagram, built now.
	q := v.waiting[next]
	size := header.IPv6MinimumSize + len(payload)
	if len(q) >= s.limits.ARPQueueLen {
		s.c.NDQueueDrops++
		v.waitBytes -= len(q[0])
		q = q[1:]
	}
	if v.waitBytes+size > s.limits.ARPQueueMemory {
		s.c.NDQueueDrops++
		s.do6(acts)
		return nil
	}
	d := make([]byte, size)
	header.IPv6(d).Encode(&header.IPv6Fields{TrafficClass: v.tclass, PayloadLength: uint16(len(payload)), NextHeader: proto, HopLimit: hops, Src: src, Dst: dst})
	copy(d[header.IPv6MinimumSize:], payload)
	if checksum {
		fillChecksum6(proto, src, dst, d[header.IPv6MinimumSize:])
	}
	v.waiting[next] = append(q, d)
	v.waitBytes += size
	s.c.IP6Out++
	s.do6(acts)
	return nil
}

// mtu6 is the link's IPv6 MTU: a router's MTU option, else the link's.
func (s *Stack) mtu6() uint32 {
	if m := s.v6.auto.MTU(); m >= header.IPv6MinimumMTU {
		return m
	}
	return uint32(s.cfg.MTU)
}

// pathMTU6 is the MTU of the path to dst: the link's (mtu6), or less if
// a Packet Too Big said so.
func (s *Stack) pathMTU6(dst netip.Addr) int {
	if e, ok := s.pmtu.m[dst]; ok && e.mtu < int(s.mtu6()) {
		return e.mtu
	}
	return int(s.mtu6())
}

// send6 frames an IPv6 datagram to mac.
func (s *Stack) send6(mac header.MAC, src, dst netip.Addr, proto, hops uint8, payload []byte, checksum bool) error {
	n := header.EthernetMinimumSize + header.IPv6MinimumSize + len(payload)
	if n > len(s.tx) {
		return fmt.Errorf("ip: %v: %w", dst, ErrTooBig)
	}
	f := s.tx[:n]
	header.Ethernet(f).Encode(&header.EthernetFields{Dst: mac, Src: s.mac, Type: header.EtherTypeIPv6})
	header.IPv6(f[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{TrafficClass: s.v6.tclass, PayloadLength: uint16(len(payload)), NextHeader: proto, HopLimit: hops, Src: src, Dst: dst})
	seg := f[header.EthernetMinimumSize+header.IPv6MinimumSize:]
	copy(seg, payload)
	if checksum {
		if ol, lo, ok := s.checksumOffload6(proto); ok {
			// What the device wants (netdev.Offload): the pseudo-header
			// sum with the length, for it to finish over the segment.
			off, _ := checksumOffset(proto)
			binary.BigEndian.PutUint16(seg[off:], header.PseudoHeaderChecksum6(proto, src, dst, uint32(len(seg))))
			if err := ol.SendFrameOffload(f, lo); err != nil {
				s.c.LinkErrors++
				return err
			}
			s.c.FramesOut++
			s.c.IP6Out++
			s.c.IP6ChecksumOffload++
			return nil
		}
		fillChecksum6(proto, src, dst, seg)
	}
	if err := s.sendFrame(n); err != nil {
		return err
	}
	s.c.IP6Out++
	return nil
}

// checksumOffload6 is the link and the request that leave a proto
// segment's checksum over IPv6, in one frame with no extension headers,
// to the device; false where it does not do that one (TCP and UDP are
// apart: a device that would send UDP's zero sum as zero does not do
// UDP, link.FeatureUDPChecksum6).
func (s *Stack) checksumOffload6(proto uint8) (OffloadLink, link.Offload, bool) {
	ol, ok := s.link.(OffloadLink)
	if !ok {
		return nil, link.Offload{}, false
	}
	const eh, ih = header.EthernetMinimumSize, header.IPv6MinimumSize
	lo := link.Offload{L3: eh, L4: eh + ih, IPv6: true}
	need := link.FeatureUDPChecksum6
	switch proto {
	case header.ProtocolTCP:
		lo.TCP, need = true, link.FeatureChecksum6
	case header.ProtocolUDP:
	default:
		return nil, link.Offload{}, false
	}
	return ol, lo, ol.Features()&need != 0
}

// flushWaiting sends what waited for next, now at mac.
func (s *Stack) flushWaiting(next netip.Addr, mac header.MAC) {
	v := s.v6
	q := v.waiting[next]
	delete(v.waiting, next)
	for _, d := range q {
		v.waitBytes -= len(d)
		n := header.EthernetMinimumSize + len(d)
		f := s.tx[:n]
		header.Ethernet(f).Encode(&header.EthernetFields{Dst: mac, Src: s.mac, Type: header.EtherTypeIPv6})
		copy(f[header.EthernetMinimumSize:], d)
		_ = s.sendFrame(n) // counted by sendFrame
	}
}

// dropWaiting forgets what waited for next.
func (s *Stack) dropWaiting(next netip.Addr) {
	v := s.v6
	for _, d := range v.waiting[next] {
		v.waitBytes -= len(d)
	}
	delete(v.waiting, next)
}

// sendICMPv6Error sends an ICMPv6 error about h to its source (RFC 4443
// §2.4): never about an error or a redirect, nor to a source that names
// no single node; as much of h as fits in the minimum MTU; rate-limited
// with ICMP's bucket.
func (s *Stack) sendICMPv6Error(typ header.ICMPv6Type, code uint8, word uint32, h header.IPv6) {
	src := h.Src()
	if src.IsUnspecified() || src.IsMulticast() {
		s.c.ICMPErrorsSuppressed++
		return
	}
	if x, err := header.ParseIPv6Extensions(h); err == nil && x.Upper == header.ProtocolICMPv6 && !x.Fragment &&
		len(h) > x.UpperOffset && (header.ICMPv6Type(h[x.UpperOffset]).IsError() || header.ICMPv6Type(h[x.UpperOffset]) == header.ICMPv6Redirect) {
		s.c.ICMPErrorsSuppressed++
		return
	}
	if !s.icmpTokens.take(s.clock.Now(), s.limits.ICMPErrorRate, s.limits.ICMPErrorBurst) {
		s.c.ICMPErrorsRateLimited++
		return
	}
	from, ok := s.v6.auto.Source(src)
	if dst := h.Dst(); s.v6.auto.IsOurs(dst) {
		from, ok = dst, true
	}
	if !ok {
		return
	}
	quote := h[:min(len(h), header.ICMPv6ErrorMaxSize-header.ICMPv6MinimumSize)]
	m := header.ICMPv6(s.icmpBuf[:header.ICMPv6MinimumSize+len(quote)])
	copy(m[header.ICMPv6MinimumSize:], quote)
	m.SetType(typ)
	m.SetCode(code)
	m.SetWord(word)
	m.SetChecksumFor(from, src)
	if s.output6(header.ProtocolICMPv6, from, src, m, 0, false) == nil {
		s.c.ICMP6ErrorsOut++
	}
}

// reassemble6 adds the fragment h (x its walk) to its datagram, and
// returns the whole datagram, in s.bigBuf, when this fragment completes
// it: fragment zero's unfragmentable part, its Next Header where the
// Fragment header was named, and the pieces (RFC 8200 §4.5). Nil
// otherwise. The memory bounds and checks are IPv4's (addFragment).
func (s *Stack) reassemble6(h header.IPv6, x header.IPv6Extensions) header.IPv6 {
	data := h[x.FragmentHeader+header.IPv6FragmentHeaderSize:]
	// Fragment zero's unfragmentable part, and after it the Next Header
	// its Fragment header gives: what the reassembled payload is.
	key := fragKey{src: h.Src(), dst: h.Dst(), id: x.FragmentID}
	r := s.addFragment(key, x.FragmentOffset, data, x.MoreFragments, h[:x.FragmentHeader+1])
	if r == nil {
		return nil
	}
	unfrag, next := r.header[:len(r.header)-1], r.header[len(r.header)-1]
	if len(unfrag)+r.size > header.IPv6MinimumSize+0xffff {
		s.c.ReassemblyBad++
		return nil
	}
	pkt := header.IPv6(s.bigBuf[:len(unfrag)+r.size])
	copy(pkt, unfrag)
	for _, f := range r.frags {
		copy(pkt[len(unfrag)+f.first:], f.data)
	}
	// The field that named the Fragment header names what followed it.
	field := 6
	for off := header.IPv6MinimumSize; off < len(unfrag); off += (int(pkt[off+1]) + 1) * 8 {
		field = off
	}
	pkt[field] = next
	pkt.SetPayloadLength(uint16(len(pkt) - header.IPv6MinimumSize))
	s.c.ReassemblyOK++
	return pkt
}

// reassemblyTimeout6 tells the source of a datagram whose fragments did
// not all come (RFC 8200 §4.5: ICMPv6 time exceeded, code 1, when fragment
// zero came), quoting fragment zero as it arrived.
func (s *Stack) reassemblyTimeout6(k fragKey, r *reassembly) {
	if s.v6 == nil || r.frags[0].first != 0 {
		return
	}
	unfrag, next := r.header[:len(r.header)-1], r.header[len(r.header)-1]
	q := make([]byte, 0, len(unfrag)+header.IPv6FragmentHeaderSize+len(r.frags[0].data))
	q = append(q, unfrag...)
	q = append(q, next, 0, 0, 1) // offset 0, more fragments
	q = binary.BigEndian.AppendUint32(q, k.id)
	q = append(q, r.frags[0].data...)
	field := 6
	for off := header.IPv6MinimumSize; off < len(unfrag); off += (int(q[off+1]) + 1) * 8 {
		field = off
	}
	q[field] = header.ProtocolIPv6Fragment
	h := header.IPv6(q)
	h.SetPayloadLength(uint16(len(q) - header.IPv6MinimumSize))
	s.sendICMPv6Error(header.ICMPv6TimeExceeded, header.ICMPv6ReassemblyTime, 0, h)
}

// fragment6 sends a datagram too long for the link as fragments (RFC 8200
// §4.5): each an IPv6 header, a Fragment header and a multiple of 8 bytes
// of the payload (the last one the rest), one identification for them
// all. The transport's checksum, if IP fills it in, is over the whole
// payload, before it is cut.
func (s *Stack) fragment6(proto uint8, src, dst netip.Addr, payload []byte, hops uint8, checksum bool, mtu int) error {
	v := s.v6
	if len(payload) > 0xffff {
		return fmt.Errorf("ip: %v: %d bytes: %w", dst, len(payload), ErrTooBig)
	}
	if checksum {
		v.whole = append(v.whole[:0], payload...)
		fillChecksum6(proto, src, dst, v.whole)
		payload = v.whole
	}
	v.fragID++
	per := (mtu - header.IPv6MinimumSize - header.IPv6FragmentHeaderSize) &^ 7
	for off := 0; off < len(payload); off += per {
		n := min(per, len(payload)-off)
		more := uint16(0)
		if off+n < len(payload) {
			more = 1
		}
		f := append(v.frag[:0], proto, 0, 0, 0)
		binary.BigEndian.PutUint16(f[2:], uint16(off)|more) // offset in 8-byte units, times 8: the bytes
		f = binary.BigEndian.AppendUint32(f, v.fragID)
		f = append(f, payload[off:off+n]...)
		v.frag = f
		if err := s.output6(header.ProtocolIPv6Fragment, src, dst, f, hops, false); err != nil {
			return err
		}
		s.c.FragmentsOut++
	}
	return nil
}

// MLDv2 (RFC 3810), as much as a host needs so that switches snooping
// multicast let its groups' frames through: a report when it joins or
// leaves a group (its solicited-node groups), and its groups again when a
// router asks (a query). The all-nodes group is never reported (§6).
const (
	mldJoin  = 4 // CHANGE_TO_EXCLUDE_MODE, no sources: every source
	mldLeave = 3 // CHANGE_TO_INCLUDE_MODE, no sources: none
	mldAllV2 = "ff02::16"
)

var mldRouters = netip.MustParseAddr(mldAllV2)

// sendMLD reports records of kind for groups: from our link-local address
// once it is ours, else from the unspecified address (RFC 3590), hop limit
// 1 and a Router Alert (RFC 3810 §5.2.14).
func (s *Stack) sendMLD(kind byte, groups ...netip.Addr) {
	var recs []netip.Addr
	for _, g := range groups {
		if g != allNodes {
			recs = append(recs, g)
		}
	}
	if len(recs) == 0 {
		return
	}
	src := header.LinkLocal(s.mac)
	if !s.v6.auto.IsOurs(src) {
		src = netip.IPv6Unspecified()
	}
	// Hop-by-Hop: next ICMPv6, Router Alert (type 5, value 0: MLD), PadN.
	b := []byte{header.ProtocolICMPv6, 0, 5, 2, 0, 0, 1, 0}
	m := make([]byte, header.ICMPv6MinimumSize, header.ICMPv6MinimumSize+20*len(recs))
	header.ICMPv6(m).SetType(header.ICMPv6MLDv2Report)
	binary.BigEndian.PutUint16(m[6:], uint16(len(recs)))
	for _, g := range recs {
		v := g.As16()
		m = append(append(m, kind, 0, 0, 0), v[:]...)
	}
	header.ICMPv6(m).SetChecksumFor(src, mldRouters)
	if s.send6(header.MulticastMAC(mldRouters), src, mldRouters, header.ProtocolIPv6HopByHop, 1, append(b, m...), false) == nil {
		s.c.MLDReportsOut++
	}
}

// mldQuery answers a router's query (hop limit 1, from a link-local
// address, RFC 3810 §5.1.14) with a report of every group we are in:
// at once rather than after a random delay, one report for all.
func (s *Stack) mldQuery(h header.IPv6) {
	if h.HopLimit() != 1 || !h.Src().IsLinkLocalUnicast() {
		s.c.NDBad++
		return
	}
	groups := make([]netip.Addr, 0, len(s.v6.groups))
	for g := range s.v6.groups {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, netip.Addr.Compare)
	s.sendMLD(mldJoin, groups...)
}
