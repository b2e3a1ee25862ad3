package ip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/ip/nd"
)

// The IPv6 test link: us (link-local from ourMAC), a peer and a router.
var (
	ourLL    = header.LinkLocal(ourMAC)
	peerLL   = netip.MustParseAddr("fe80::2")
	routerLL = netip.MustParseAddr("fe80::1")
	slaacNet = netip.MustParsePrefix("2001:db8:1::/64")
	ourSLAAC = header.WithInterfaceID(slaacNet, header.InterfaceID(ourMAC))
	peerG    = netip.MustParseAddr("2001:db8:1::2")
	farG     = netip.MustParseAddr("2001:db8:99::7")
)

// mcastLink is a fakeLink with a multicast filter.
type mcastLink struct {
	fakeLink
	groups map[header.MAC]bool
}

func (l *mcastLink) SetMulticast(g header.MAC, join bool) error {
	if join {
		l.groups[g] = true
	} else {
		delete(l.groups, g)
	}
	return nil
}

type testbed6 struct {
	*Stack
	link  *mcastLink
	clock *fakeClock
}

// newTestbed6 is a Stack with IPv6 on, its link-local address through DAD.
func newTestbed6(t *testing.T, cfg IPv6Config) *testbed6 {
	t.Helper()
	tb := &testbed6{link: &mcastLink{groups: map[header.MAC]bool{}}, clock: &fakeClock{epoch}}
	tb.Stack = New(testCfg, tb.link, tb.clock, nil)
	tb.EnableIPv6(cfg, nil)
	return tb
}

// run advances the clock by d in the server's steps, ticking the Stack.
func (tb *testbed6) run(d time.Duration) {
	for end := tb.clock.now.Add(d); tb.clock.now.Before(end); {
		tb.clock.Advance(tickEvery)
		tb.Tick()
	}
}

// ready runs until the link-local address passed DAD, and forgets what
// was sent on the way.
func (tb *testbed6) ready(t *testing.T) {
	t.Helper()
	tb.run(3 * time.Second)
	ll := header.LinkLocal(tb.mac)
	if !slices.ContainsFunc(tb.IPv6Addresses(), func(a nd.Address) bool { return a.Prefix.Addr() == ll && a.State == nd.Preferred }) {
		t.Fatalf("link-local %v not preferred after 3 s: %+v", ll, tb.IPv6Addresses())
	}
	tb.link.take()
}

// frame6 is an Ethernet frame with an IPv6 datagram.
func frame6(srcMAC, dstMAC header.MAC, src, dst netip.Addr, hops, proto uint8, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{Dst: dstMAC, Src: srcMAC, Type: header.EtherTypeIPv6})
	header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)),
		NextHeader: proto, HopLimit: hops, Src: src, Dst: dst})
	copy(b[header.EthernetMinimumSize+header.IPv6MinimumSize:], payload)
	return b
}

// icmp6 is an ICMPv6 message from src to dst: type, the word, the body.
func icmp6(typ header.ICMPv6Type, word uint32, body []byte, src, dst netip.Addr) []byte {
	m := header.ICMPv6(make([]byte, header.ICMPv6MinimumSize+len(body)))
	m.SetType(typ)
	m.SetWord(word)
	copy(m.Body(), body)
	m.SetChecksumFor(src, dst)
	return m
}

// ns is a Neighbor Solicitation for target from src (with src's MAC as its
// source link-layer address unless src is unspecified).
func ns(src netip.Addr, mac header.MAC, target netip.Addr) []byte {
	b := make([]byte, 32)
	var sll *header.MAC
	if !src.IsUnspecified() {
		sll = &mac
	}
	m := header.ICMPv6(b[:header.NeighborSolicitation(b, target, sll)])
	m.SetChecksumFor(src, header.SolicitedNode(target))
	return m
}

// parsed6 is a frame the Stack sent, taken apart.
type parsed6 struct {
	dstMAC   header.MAC
	src, dst netip.Addr
	hops     uint8
	m        header.ICMPv6
}

func parse6(t *testing.T, f []byte) parsed6 {
	t.Helper()
	eth := header.Ethernet(f)
	if eth.Type() != header.EtherTypeIPv6 {
		t.Fatalf("frame of type %#x, want IPv6", eth.Type())
	}
	h := header.IPv6(eth.Payload())
	err := header.ValidateIPv6(h)
	x, xerr := header.ParseIPv6Extensions(h)
	if err != nil || xerr != nil || x.Upper != header.ProtocolICMPv6 {
		t.Fatalf("not an ICMPv6 datagram: %v, %v, upper %d", err, xerr, x.Upper)
	}
	m := header.ICMPv6(h[x.UpperOffset:])
	if err := header.ValidateICMPv6(m, h.Src(), h.Dst()); err != nil {
		t.Fatalf("ICMPv6 sent with %v", err)
	}
	return parsed6{eth.Dst(), h.Src(), h.Dst(), h.HopLimit(), m}
}

// Starting: all-nodes and the link-local's solicited-node group joined, a
// DAD solicitation from the unspecified address, a router solicitation,
// then the address in use and announced.
func TestIPv6Start(t *testing.T) {
	tb := newTestbed6(t, IPv6Config{})
	solicited := header.SolicitedNode(ourLL)
	for _, g := range []netip.Addr{allNodes, solicited} {
		if !tb.link.groups[header.MulticastMAC(g)] {
			t.Errorf("NIC filter lacks %v's group %v: %v", g, header.MulticastMAC(g), tb.link.groups)
		}
	}
	tb.run(3 * time.Second)
	var dad, rs, na, mld bool
	for _, f := range tb.link.take() {
		p := parse6(t, f)
		switch p.m.Type() {
		case header.ICMPv6MLDv2Report:
			// One record, CHANGE_TO_EXCLUDE for the solicited-node group.
			r := p.m[header.ICMPv6MinimumSize:]
			mld = mld || p.dst == netip.MustParseAddr("ff02::16") && p.hops == 1 && len(r) == 20 && r[0] == 4 &&
				netip.AddrFrom16([16]byte(r[4:20])) == solicited
		case header.ICMPv6NeighborSolic:
			dad = p.src.IsUnspecified() && p.dst == solicited && p.m.Target() == ourLL && p.hops == 255 &&
				!p.m.Options().Has(header.NDPSourceLinkAddr) && p.dstMAC == header.MulticastMAC(solicited)
		case header.ICMPv6RouterSolicit:
			rs = p.dst == allRouters
		case header.ICMPv6NeighborAdvert:
			na = p.dst == allNodes && p.m.Target() == ourLL && p.src == ourLL
		}
	}
	if !dad || !rs || !na || !mld {
		t.Errorf("sent DAD %v, router solicitation %v, unsolicited advertisement %v, MLD report %v; want all", dad, rs, na, mld)
	}
	if c := tb.Counters(); c.IP6AddrsConfigured != 1 {
		t.Errorf("IP6AddrsConfigured = %d, want 1", c.IP6AddrsConfigured)
	}
}

// A solicitation for our address is answered, solicited, to the asker's
// MAC; then its echo request is answered without another solicitation.
func TestIPv6NeighborAndEcho(t *testing.T) {
	tb := newTestbed6(t, IPv6Config{})
	tb.ready(t)
	solicited := header.SolicitedNode(ourLL)
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(solicited), peerLL, solicited, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	out := tb.link.take()
	if len(out) != 1 {
		t.Fatalf("%d frames after a solicitation, want 1 advertisement", len(out))
	}
	p := parse6(t, out[0])
	if p.m.Type() != header.ICMPv6NeighborAdvert || p.dstMAC != peerMAC || p.dst != peerLL || p.m.Target() != ourLL ||
		p.m.NAFlags() != header.NASolicited|header.NAOverride {
		t.Fatalf("answer = %+v, want a solicited advertisement of %v to %v", p, ourLL, peerLL)
	}
	if body, ok := p.m.Options().Find(header.NDPTargetLinkAddr); !ok || header.MAC(body) != ourMAC {
		t.Errorf("advertisement's target link-layer address = %x, want %v", body, ourMAC)
	}

	tb.HandleFrame(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolICMPv6,
		icmp6(header.ICMPv6EchoRequest, 7<<16|1, []byte("ping6"), peerLL, ourLL)))
	out = tb.link.take()
	if len(out) != 1 {
		t.Fatalf("%d frames after an echo request, want 1 reply", len(out))
	}
	p = parse6(t, out[0])
	if p.m.Type() != header.ICMPv6EchoReply || p.dstMAC != peerMAC || p.src != ourLL || p.dst != peerLL ||
		p.m.Ident() != 7 || p.m.Sequence() != 1 || string(p.m.Body()) != "ping6" {
		t.Errorf("reply = %+v %q, want echo reply 7/1 \"ping6\" to the peer", p, p.m.Body())
	}
}

// An echo request from a neighbour we do not know waits for its
// resolution: a solicitation goes out, and the reply follows the
// advertisement.
func TestIPv6ResolveThenReply(t *testing.T) {
	tb := newTestbed6(t, IPv6Config{})
	tb.ready(t)
	tb.HandleFrame(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolICMPv6,
		icmp6(header.ICMPv6EchoRequest, 1, []byte("x"), peerLL, ourLL)))
	out := tb.link.take()
	if len(out) != 1 {
		t.Fatalf("%d frames, want one solicitation", len(out))
	}
	if p := parse6(t, out[0]); p.m.Type() != header.ICMPv6NeighborSolic || p.m.Target() != peerLL || p.src != ourLL {
		t.Fatalf("sent %+v, want a solicitation for %v", p, peerLL)
	}
	na := make([]byte, 32)
	m := header.ICMPv6(na[:header.NeighborAdvertisement(na, peerLL, header.NASolicited|header.NAOverride, peerMAC)])
	m.SetChecksumFor(peerLL, ourLL)
	tb.HandleFrame(frame6(peerMAC, ourMAC, peerLL, ourLL, 255, header.ProtocolICMPv6, m))
	out = tb.link.take()
	if len(out) != 1 {
		t.Fatalf("%d frames after the advertisement, want the echo reply", len(out))
	}
	if p := parse6(t, out[0]); p.m.Type() != header.ICMPv6EchoReply || p.dstMAC != peerMAC {
		t.Errorf("sent %+v, want the echo reply to %v", p, peerMAC)
	}
}

// A router's advertisement with an autonomous prefix gives a SLAAC
// address (after DAD); it answers echo, and replies to a far address go to
// the router.
func TestIPv6SLAAC(t *testing.T) {
	tb := newTestbed6(t, IPv6Config{})
	tb.ready(t)
	pi := make([]byte, 32)
	pi[0], pi[1], pi[2], pi[3] = uint8(header.NDPPrefixInfo), 4, 64, 0xc0
	for i := 4; i < 12; i++ {
		pi[i] = 0xff // lifetimes: infinite
	}
	copy(pi[16:], slaacNet.Addr().AsSlice())
	sll := []byte{uint8(header.NDPSourceLinkAddr), 1, gwMAC[0], gwMAC[1], gwMAC[2], gwMAC[3], gwMAC[4], gwMAC[5]}
	body := append(make([]byte, 8), append(pi, sll...)...) // reachable and retrans 0
	ra := icmp6(header.ICMPv6RouterAdvert, 64<<24|1800, body, routerLL, allNodes)
	tb.HandleFrame(frame6(gwMAC, header.MulticastMAC(allNodes), routerLL, allNodes, 255, header.ProtocolICMPv6, ra))
	if !tb.link.groups[header.MulticastMAC(header.SolicitedNode(ourSLAAC))] {
		t.Errorf("the SLAAC address's solicited-node group is not joined")
	}
	tb.run(3 * time.Second)
	tb.link.take()
	found := false
	for _, a := range tb.IPv6Addresses() {
		found = found || a.Prefix.Addr() == ourSLAAC && a.State == nd.Preferred && a.Prefix.Bits() == 64
	}
	if !found {
		t.Fatalf("no preferred %v/64 after the advertisement: %+v", ourSLAAC, tb.IPv6Addresses())
	}
	tb.HandleFrame(frame6(gwMAC, ourMAC, farG, ourSLAAC, 60, header.ProtocolICMPv6,
		icmp6(header.ICMPv6EchoRequest, 2<<16|9, []byte("far"), farG, ourSLAAC)))
	out := tb.link.take()
	if len(out) != 1 {
		t.Fatalf("%d frames after a far echo request, want the reply", len(out))
	}
	if p := parse6(t, out[0]); p.m.Type() != header.ICMPv6EchoReply || p.dstMAC != gwMAC || p.src != ourSLAAC || p.dst != farG {
		t.Errorf("reply %+v, want from %v to %v through the router's MAC", p, ourSLAAC, farG)
	}
}

// Another node doing DAD for our tentative address wins: ours is given
// up, its group left, the conflict counted.
func TestIPv6DADConflict(t *testing.T) {
	static := netip.MustParsePrefix("2001:db8:5::15/64")
	tb := newTestbed6(t, IPv6Config{Static: []netip.Prefix{static}})
	sn := header.SolicitedNode(static.Addr())
	tb.HandleFrame(frame6(otherMAC, header.MulticastMAC(sn), netip.IPv6Unspecified(), sn, 255, header.ProtocolICMPv6,
		ns(netip.IPv6Unspecified(), otherMAC, static.Addr())))
	tb.run(3 * time.Second)
	for _, a := range tb.IPv6Addresses() {
		if a.Prefix.Addr() == static.Addr() {
			t.Errorf("duplicate address %v kept: %+v", static, a)
		}
	}
	if c := tb.Counters(); c.DADConflicts != 1 {
		t.Errorf("DADConflicts = %d, want 1", c.DADConflicts)
	}
	if tb.link.groups[header.MulticastMAC(sn)] {
		t.Errorf("the duplicate's solicited-node group is still joined")
	}
}

// What is refused: ND not from this link (hop limit below 255), a frame to
// a group we never joined, TCP (no transport over IPv6 yet: port
// unreachable back), an unknown option that asks for an error.
func TestIPv6Refusals(t *testing.T) {
	tb := newTestbed6(t, IPv6Config{})
	tb.ready(t)
	solicited := header.SolicitedNode(ourLL)
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(solicited), peerLL, solicited, 64, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	other := netip.MustParseAddr("ff02::1:ff99:9999")
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(other), peerLL, other, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	if out := tb.link.take(); len(out) != 0 {
		t.Fatalf("answered %d frames, want none", len(out))
	}
	if c := tb.Counters(); c.NDBad != 1 || c.FramesNotForUs != 1 {
		t.Errorf("NDBad %d, FramesNotForUs %d, want 1 and 1", c.NDBad, c.FramesNotForUs)
	}
	// Learn the peer first, so errors need no resolution.
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(solicited), peerLL, solicited, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	tb.link.take()
	tb.HandleFrame(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolTCP, make([]byte, 20)))
	// A destination option of type 0x80 (skip? no: "discard and send a
	// parameter problem, even to multicast"), pointer at the option.
	opts := []byte{header.ProtocolIPv6NoNext, 0, 0x80, 4, 0, 0, 0, 0}
	tb.HandleFrame(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolIPv6DstOpts, opts))
	out := tb.link.take()
	if len(out) != 2 {
		t.Fatalf("%d frames, want a port unreachable and a parameter problem", len(out))
	}
	if p := parse6(t, out[0]); p.m.Type() != header.ICMPv6DstUnreachable || p.m.Code() != header.ICMPv6PortUnreachable || p.dst != peerLL {
		t.Errorf("first answer %+v, want port unreachable to the peer", p)
	}
	if p := parse6(t, out[1]); p.m.Type() != header.ICMPv6ParamProblem || p.m.Code() != header.ICMPv6UnknownOption || p.m.Pointer() != 42 {
		t.Errorf("second answer %+v (pointer %d), want parameter problem code 2 at byte 42", p, p.m.Pointer())
	}
}

// fake6 is a transport that takes IPv6 datagrams.
type fake6 struct {
	got      []header.IPv6
	offs     []int
	verified []bool
}

func (f *fake6) Deliver(uint8, netip.Addr, netip.Addr, []byte) {}
func (f *fake6) DeliverDatagram6(h header.IPv6, off int, verified bool) {
	f.got, f.offs = append(f.got, header.IPv6(append([]byte(nil), h...))), append(f.offs, off)
	f.verified = append(f.verified, verified)
}

// UDP over IPv6 reaches a transport that takes it, its header's offset
// past a destination-options header; a segment a transport sends without a
// source goes from the address RFC 6724 picks, its checksum filled in.
func TestIPv6Transport(t *testing.T) {
	udp := &fake6{}
	tb := &testbed6{link: &mcastLink{groups: map[header.MAC]bool{}}, clock: &fakeClock{epoch}}
	tb.Stack = New(testCfg, tb.link, tb.clock, map[uint8]Transport{header.ProtocolUDP: udp})
	tb.EnableIPv6(IPv6Config{}, nil)
	tb.ready(t)
	payload := append([]byte{header.ProtocolUDP, 0, 1, 4, 0, 0, 0, 0}, make([]byte, 12)...) // PadN, then 12 bytes of "UDP"
	tb.HandleFrame(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolIPv6DstOpts, payload))
	if len(udp.got) != 1 || udp.offs[0] != header.IPv6MinimumSize+8 || udp.got[0].Src() != peerLL {
		t.Fatalf("delivered %d datagrams at %v, want one from %v at offset 48", len(udp.got), udp.offs, peerLL)
	}
	// Learn the peer, then send to it.
	solicited := header.SolicitedNode(ourLL)
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(solicited), peerLL, solicited, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	tb.link.take()
	seg := make([]byte, header.UDPMinimumSize+5)
	header.UDP(seg).Encode(&header.UDPFields{SrcPort: 7, DstPort: 4000, Length: uint16(len(seg))})
	copy(seg[header.UDPMinimumSize:], "hello")
	if err := tb.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerLL, seg, true); err != nil {
		t.Fatal(err)
	}
	out := tb.link.take()
	if len(out) != 1 {
		t.Fatalf("%d frames sent, want 1", len(out))
	}
	h := header.IPv6(header.Ethernet(out[0]).Payload())
	u := header.UDP(h.Payload())
	if h.Src() != ourLL || h.Dst() != peerLL || u.Checksum() != u.ComputeChecksum(ourLL, peerLL) || u.Checksum() == 0 {
		t.Errorf("sent from %v to %v, checksum %#x (want %#x); want from %v", h.Src(), h.Dst(), u.Checksum(), u.ComputeChecksum(ourLL, peerLL), ourLL)
	}
	if err := tb.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerLL, seg, false); err == nil {
		t.Errorf("OutputTransport6 without a source or a checksum to fill: nil error")
	}
}

// A UDP datagram longer than the link goes as fragments, and another
// Stack puts them back together, checksum right (RFC 8200 §4.5); a
// fragment that overlaps one held drops the whole datagram (RFC 5722).
func TestIPv6Fragments(t *testing.T) {
	peerAddr := header.LinkLocal(peerMAC)
	tx := newTestbed6(t, IPv6Config{})
	tx.ready(t)
	sn := header.SolicitedNode(ourLL)
	tx.HandleFrame(frame6(peerMAC, header.MulticastMAC(sn), peerAddr, sn, 255, header.ProtocolICMPv6, ns(peerAddr, peerMAC, ourLL)))
	tx.link.take()

	udp := &fake6{}
	rx := &testbed6{link: &mcastLink{groups: map[header.MAC]bool{}}, clock: &fakeClock{epoch}}
	cfg := testCfg
	cfg.MAC = peerMAC
	rx.Stack = New(cfg, rx.link, rx.clock, map[uint8]Transport{header.ProtocolUDP: udp})
	rx.EnableIPv6(IPv6Config{}, nil)
	rx.ready(t)

	seg := make([]byte, header.UDPMinimumSize+3000)
	header.UDP(seg).Encode(&header.UDPFields{SrcPort: 7, DstPort: 4000, Length: uint16(len(seg))})
	for i := range seg[header.UDPMinimumSize:] {
		seg[header.UDPMinimumSize+i] = byte(i * 7)
	}
	if err := tx.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerAddr, seg, true); err != nil {
		t.Fatal(err)
	}
	frames := tx.link.take()
	if len(frames) != 3 {
		t.Fatalf("%d frames for 3,008 bytes over a 1,500-byte link, want 3 fragments", len(frames))
	}
	for _, f := range frames {
		if len(f) > header.EthernetMinimumSize+1500 {
			t.Errorf("a fragment of %d bytes exceeds the link", len(f))
		}
		rx.HandleFrame(f)
	}
	if len(udp.got) != 1 {
		t.Fatalf("%d datagrams delivered, want the one reassembled (counters %+v)", len(udp.got), rx.Counters())
	}
	got := header.UDP(udp.got[0][udp.offs[0]:])
	if len(got) != len(seg) || got.Checksum() != got.ComputeChecksum(ourLL, peerAddr) || string(got.Payload()) != string(seg[header.UDPMinimumSize:]) {
		t.Errorf("reassembled %d bytes (want %d), checksum %#x (want %#x), payload equal %v", len(got), len(seg),
			got.Checksum(), got.ComputeChecksum(ourLL, peerAddr), string(got.Payload()) == string(seg[header.UDPMinimumSize:]))
	}

	// Overlap: fragment zero, then fragment zero again shifted by 8.
	if err := tx.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerAddr, seg, true); err != nil {
		t.Fatal(err)
	}
	frames = tx.link.take()
	rx.HandleFrame(frames[0])
	shifted := append([]byte(nil), frames[1]...)
	fh := shifted[header.EthernetMinimumSize+header.IPv6MinimumSize:]
	fh[2], fh[3] = byte((int(fh[2])<<8|int(fh[3])-8)>>8), byte((int(fh[2])<<8|int(fh[3]))-8)
	rx.HandleFrame(shifted)
	rx.HandleFrame(frames[1])
	rx.HandleFrame(frames[2])
	if len(udp.got) != 1 || rx.Counters().ReassemblyOverlaps != 1 {
		t.Errorf("after an overlapping fragment: %d datagrams, %d overlaps; want 1 and 1", len(udp.got), rx.Counters().ReassemblyOverlaps)
	}
}

// FuzzIPv6Frame feeds a Stack with IPv6 on frames built from the input:
// the fuzzer's bytes as an IPv6 datagram from the peer, to us or to a
// group, interleaved with clock ticks and sends. No input may panic, and
// the bounds hold: reassembly's memory, nd's addresses, the datagrams
// waiting for Neighbor Discovery.
func FuzzIPv6Frame(f *testing.F) {
	sn := header.SolicitedNode(ourLL)
	f.Add(frame6(peerMAC, header.MulticastMAC(sn), peerLL, sn, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL))[header.EthernetMinimumSize:], uint8(0))
	f.Add(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolICMPv6, icmp6(header.ICMPv6EchoRequest, 1, []byte("x"), peerLL, ourLL))[header.EthernetMinimumSize:], uint8(1))
	f.Add(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolIPv6Fragment, []byte{17, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8})[header.EthernetMinimumSize:], uint8(2))
	f.Fuzz(func(t *testing.T, dgram []byte, op uint8) {
		hang := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("hung on % x, op %#x", dgram, op)) })
		defer hang.Stop()
		udp := &fake6{}
		tb := &testbed6{link: &mcastLink{groups: map[header.MAC]bool{}}, clock: &fakeClock{epoch}}
		tb.Stack = New(testCfg, tb.link, tb.clock, map[uint8]Transport{header.ProtocolUDP: udp})
		l := DefaultLimits()
		l.ReassemblyMemory, l.MaxReassemblies, l.ARPQueueMemory = 64<<10, 8, 16<<10
		tb.SetLimits(l)
		tb.EnableIPv6(IPv6Config{}, nil)
		tb.run(3 * time.Second)
		for i := range 4 {
			dst := ourMAC
			if op&(1<<i) != 0 {
				dst = header.MulticastMAC(allNodes)
			}
			f := make([]byte, header.EthernetMinimumSize+len(dgram))
			header.Ethernet(f).Encode(&header.EthernetFields{Dst: dst, Src: peerMAC, Type: header.EtherTypeIPv6})
			copy(f[header.EthernetMinimumSize:], dgram)
			tb.HandleFrame(f)
			if op&0x10 != 0 {
				tb.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerLL, make([]byte, int(op)*20), true)
			}
			tb.clock.Advance(time.Duration(op>>5) * time.Second)
			tb.Tick()
		}
		held := 0
		for _, r := range tb.reasm {
			held += r.charge
		}
		if held != tb.reasmMem || tb.reasmMem > l.ReassemblyMemory || len(tb.reasm) > l.MaxReassemblies {
			t.Fatalf("reassembly holds %d bytes (accounted %d) in %d datagrams", held, tb.reasmMem, len(tb.reasm))
		}
		if n := len(tb.IPv6Addresses()); n > nd.MaxAddresses {
			t.Fatalf("%d addresses", n)
		}
		queued := 0
		for _, q := range tb.v6.waiting {
			for _, d := range q {
				queued += len(d)
			}
		}
		if queued != tb.v6.waitBytes || queued > l.ARPQueueMemory {
			t.Fatalf("%d bytes wait for ND (accounted %d), limit %d", queued, tb.v6.waitBytes, l.ARPQueueMemory)
		}
	})
}

// A Packet Too Big about a datagram of ours lowers the path's MTU: what
// goes there next is cut to fit (RFC 8201, RFC 8200 §5), never below 1280;
// one quoting a datagram not ours changes nothing.
func TestIPv6PacketTooBig(t *testing.T) {
	tb := newTestbed6(t, IPv6Config{})
	tb.ready(t)
	sn := header.SolicitedNode(ourLL)
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(sn), peerLL, sn, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	tb.link.take()
	send := func() [][]byte {
		seg := make([]byte, 1400)
		header.UDP(seg).Encode(&header.UDPFields{SrcPort: 7, DstPort: 9, Length: uint16(len(seg))})
		if err := tb.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerLL, seg, true); err != nil {
			t.Fatal(err)
		}
		return tb.link.take()
	}
	ptb := func(from netip.Addr, mtu uint32) {
		quoted := frame6(ourMAC, peerMAC, from, peerLL, 64, header.ProtocolUDP, make([]byte, 1400))[header.EthernetMinimumSize:][:1232]
		tb.HandleFrame(frame6(gwMAC, ourMAC, routerLL, ourLL, 64, header.ProtocolICMPv6, icmp6(header.ICMPv6PacketTooBig, mtu, quoted, routerLL, ourLL)))
	}
	if n := len(send()); n != 1 {
		t.Fatalf("%d frames for 1,440 bytes on a 1,500-byte link, want 1", n)
	}
	ptb(peerG, 1300) // not our address: ignored
	if n := len(send()); n != 1 {
		t.Errorf("%d frames after a Packet Too Big about a datagram not ours, want 1", n)
	}
	ptb(ourLL, 1000) // below IPv6's minimum: 1280
	frames := send()
	if len(frames) != 2 {
		for _, f := range frames {
			h := header.IPv6(header.Ethernet(f).Payload())
			t.Logf("frame of %d bytes, next header %d, to %v", len(f), h.NextHeader(), h.Dst())
		}
		t.Fatalf("%d frames after a Packet Too Big, want 2 fragments", len(frames))
	}
	for _, f := range frames {
		if len(f)-header.EthernetMinimumSize > header.IPv6MinimumMTU {
			t.Errorf("a fragment of %d bytes, want at most 1280", len(f)-header.EthernetMinimumSize)
		}
	}
	if c := tb.Counters(); c.ICMP6PacketTooBig != 1 || c.ICMPErrorsIgnored != 1 {
		t.Errorf("ICMP6PacketTooBig %d, ICMPErrorsIgnored %d; want 1 and 1", c.ICMP6PacketTooBig, c.ICMPErrorsIgnored)
	}
}

// A router's MLD query is answered with a report of our groups (but not
// all-nodes), from our link-local address, hop limit 1.
func TestIPv6MLDQuery(t *testing.T) {
	tb := newTestbed6(t, IPv6Config{})
	tb.ready(t)
	q := append(make([]byte, 16+4), 0, 0, 0, 0) // MLDv2 query: max resp (in the word), group ::, flags, QQIC, no sources
	hbh := append([]byte{header.ProtocolICMPv6, 0, 5, 2, 0, 0, 1, 0}, icmp6(header.ICMPv6MLDQuery, 1000<<16, q, routerLL, allNodes)...)
	tb.HandleFrame(frame6(gwMAC, header.MulticastMAC(allNodes), routerLL, allNodes, 1, header.ProtocolIPv6HopByHop, hbh))
	out := tb.link.take()
	if len(out) != 1 {
		t.Fatalf("%d frames after a query, want one report", len(out))
	}
	p := parse6(t, out[0])
	r := p.m[header.ICMPv6MinimumSize:]
	if p.m.Type() != header.ICMPv6MLDv2Report || p.src != ourLL || p.hops != 1 || len(r) != 20 ||
		netip.AddrFrom16([16]byte(r[4:20])) != header.SolicitedNode(ourLL) {
		t.Errorf("answer %+v (records % x), want a report of %v from %v", p, r, header.SolicitedNode(ourLL), ourLL)
	}
}

// Source answers which address a datagram would leave from (servers/ops
// OpSource): none without IPv6 or a route, none while the only address
// is tentative, then the one of the destination's scope.
func TestIPv6Source(t *testing.T) {
	bare := New(testCfg, &mcastLink{groups: map[header.MAC]bool{}}, &fakeClock{epoch}, nil)
	if _, err := bare.Source(peerG); !errors.Is(err, ErrNoRoute) {
		t.Errorf("Source(%v) without IPv6: %v, want ErrNoRoute", peerG, err)
	}
	if got, err := bare.Source(testCfg.Addr.Addr()); err != nil || got != testCfg.Addr.Addr() {
		t.Errorf("Source(IPv4) = %v, %v, want %v", got, err, testCfg.Addr.Addr())
	}

	static := netip.MustParsePrefix("2001:db8:5::15/64")
	tb := newTestbed6(t, IPv6Config{Static: []netip.Prefix{static}, Gateway: routerLL})
	if _, err := tb.Source(peerLL); !errors.Is(err, ErrNoAddress) {
		t.Errorf("Source(%v) with every address tentative: %v, want ErrNoAddress", peerLL, err)
	}
	tb.ready(t)
	for _, tt := range []struct{ dst, want netip.Addr }{
		{peerLL, ourLL},
		{farG, static.Addr()},
		{netip.MustParseAddr("2001:db8:5::9"), static.Addr()},
	} {
		if got, err := tb.Source(tt.dst); err != nil || got != tt.want {
			t.Errorf("Source(%v) = %v, %v, want %v", tt.dst, got, err, tt.want)
		}
	}

	noRouter := newTestbed6(t, IPv6Config{})
	noRouter.ready(t)
	if _, err := noRouter.Source(farG); !errors.Is(err, ErrNoRoute) {
		t.Errorf("Source(%v) with no router: %v, want ErrNoRoute", farG, err)
	}
}
