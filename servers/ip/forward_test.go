package ip

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"keepnet/servers/header"
)

// The second network: our interface 1 on it, host B, and a network
// behind B.
var (
	ourMAC1 = header.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x57}
	ourIP1  = netip.MustParseAddr("10.78.0.1")
	bMAC    = header.MAC{0x02, 0, 0, 0, 0, 0xb}
	bIP     = netip.MustParseAddr("10.78.0.2")
	behindB = netip.MustParseAddr("10.90.3.4")
	cfg1    = Config{Addr: netip.MustParsePrefix("10.78.0.1/24"), MAC: ourMAC1, MTU: 1500}
	viaB    = StaticRoute{Dst: netip.MustParsePrefix("10.90.0.0/16"), Via: bIP}
)

// routerbed is two Stacks on fake links joined by a Router: interface 0
// is the testbed's network (peer, gateway), interface 1 is B's.
type routerbed struct {
	*testbed        // interface 0
	one      *Stack // interface 1
	link1    *fakeLink
	r        *Router
}

// newRouterbed makes a routerbed whose interface 1 has cfg (cfg1 with
// changes), forwarding on, with the static route viaB.
func newRouterbed(t testing.TB, cfg Config) *routerbed {
	t.Helper()
	b := &routerbed{testbed: newTestbed(t), link1: &fakeLink{}}
	b.one = New(cfg, b.link1, b.clock, nil)
	r, err := NewRouter([]*Stack{b.Stack, b.one}, []StaticRoute{viaB}, true)
	if err != nil {
		t.Fatalf("NewRouter() = %v", err)
	}
	b.r = r
	return b
}

// knowB has B ARP for interface 1, and discards our reply.
func (b *routerbed) knowB() {
	b.one.HandleFrame(arpFrame(header.ARPRequest, bMAC, bIP, header.BroadcastMAC, header.MAC{}, ourIP1))
	b.link1.take()
}

// peerTo is a frame from the peer, by interface 0, to dst, with ttl and
// flags, carrying payload in a UDP-numbered datagram.
func peerTo(dst netip.Addr, ttl uint8, flags uint16, payload []byte) []byte {
	return ipFrame(peerMAC, ourMAC, header.IPv4Fields{ID: 77, TTL: ttl, Flags: flags, Protocol: header.ProtocolUDP,
		Src: peerIP, Dst: dst}, payload)
}

// fromPeerTo is a frame from the peer, by interface 0, to dst.
func fromPeerTo(dst netip.Addr, proto uint8, payload []byte) []byte {
	return ipFrame(peerMAC, ourMAC, header.IPv4Fields{ID: 78, Protocol: proto, Src: peerIP, Dst: dst}, payload)
}

func TestTableLookup(t *testing.T) {
	var tab Table
	tab.Add(Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: gwIP, Iface: 0})
	tab.Add(Route{Dst: netip.MustParsePrefix("10.0.2.0/24"), Iface: 0})
	tab.Add(Route{Dst: netip.MustParsePrefix("10.78.0.0/24"), Iface: 1})
	tab.Add(Route{Dst: netip.MustParsePrefix("10.90.0.0/16"), Via: bIP, Iface: 1})
	tab.Add(Route{Dst: netip.MustParsePrefix("10.90.7.0/24"), Via: netip.MustParseAddr("10.78.0.3"), Iface: 1})
	tab.Add(Route{Dst: netip.MustParsePrefix("10.90.0.0/16"), Via: netip.MustParseAddr("10.78.0.9"), Iface: 1}) // shadowed
	for _, tc := range []struct {
		dst, want string
	}{
		{"10.0.2.9", "10.0.2.0/24 dev 0"},
		{"10.78.0.200", "10.78.0.0/24 dev 1"},
		{"10.90.3.4", "10.90.0.0/16 via 10.78.0.2 dev 1"},
		{"10.90.7.1", "10.90.7.0/24 via 10.78.0.3 dev 1"},
		{"192.0.2.7", "0.0.0.0/0 via 10.0.2.1 dev 0"},
	} {
		r, ok := tab.Lookup(netip.MustParseAddr(tc.dst))
		if !ok || r.String() != tc.want {
			t.Errorf("Lookup(%s) = %v, %v, want %s", tc.dst, r, ok, tc.want)
		}
	}
	var empty Table
	empty.Add(Route{Dst: netip.MustParsePrefix("10.0.2.0/24")})
	if r, ok := empty.Lookup(farIP); ok {
		t.Errorf("Lookup(%v) without a default = %v, want no route", farIP, r)
	}
}

func TestNewRouterTable(t *testing.T) {
	b := newRouterbed(t, cfg1)
	var got []string
	for _, r := range b.r.Table() {
		got = append(got, r.String())
	}
	want := []string{"10.0.2.0/24 dev 0", "10.78.0.0/24 dev 1", "10.90.0.0/16 via 10.78.0.2 dev 1", "0.0.0.0/0 via 10.0.2.1 dev 0"}
	if !slices.Equal(got, want) {
		t.Errorf("Table() = %q, want %q", got, want)
	}
	bad := StaticRoute{Dst: netip.MustParsePrefix("10.91.0.0/16"), Via: netip.MustParseAddr("172.16.0.1")}
	if _, err := NewRouter([]*Stack{newTestbed(t).Stack}, []StaticRoute{bad}, true); err == nil {
		t.Errorf("NewRouter(route via %v, on no network) = nil error", bad.Via)
	}
}

// A datagram from the peer to a host behind B leaves by interface 1 to
// B's MAC, after ARP, with TTL one less and a valid checksum.
func TestForwardBetweenInterfaces(t *testing.T) {
	b := newRouterbed(t, cfg1)
	payload := bytes.Repeat([]byte("fwd!"), 100)
	b.HandleFrame(peerTo(behindB, 64, header.IPv4FlagDontFragment, payload))
	if f := b.link1.take(); len(f) != 1 || header.Ethernet(f[0]).Type() != header.EtherTypeARP {
		t.Fatalf("interface 1 sent %d frames, want one ARP request for B", len(f))
	}
	b.one.HandleFrame(arpFrame(header.ARPReply, bMAC, bIP, ourMAC1, ourMAC1, ourIP1))
	frames := b.link1.take()
	if len(frames) != 1 {
		t.Fatalf("interface 1 sent %d frames after ARP, want the datagram", len(frames))
	}
	checkForwarded(t, frames[0], behindB, payload)

	// B is known now: the next one goes at once.
	b.HandleFrame(peerTo(behindB, 64, 0, payload))
	if frames := b.link1.take(); len(frames) != 1 {
		t.Fatalf("interface 1 sent %d frames, want 1", len(frames))
	} else {
		checkForwarded(t, frames[0], behindB, payload)
	}
	if got := b.link.take(); len(got) != 0 {
		t.Errorf("interface 0 sent %d frames, want none", len(got))
	}
	if c := b.r.Counters(); c != (ForwardCounters{Forwarded: 2}) {
		t.Errorf("Counters() = %+v, want Forwarded: 2", c)
	}
}

// checkForwarded checks a forwarded frame: to B from interface 1, the
// peer's datagram to dst with TTL 63 and payload.
func checkForwarded(t *testing.T, frame []byte, dst netip.Addr, payload []byte) {
	t.Helper()
	s := parseIP(t, frame) // checks the header checksum
	if s.eth.Dst() != bMAC || s.eth.Src() != ourMAC1 {
		t.Errorf("forwarded frame %v -> %v, want %v -> %v", s.eth.Src(), s.eth.Dst(), ourMAC1, bMAC)
	}
	if s.ip.Src() != peerIP || s.ip.Dst() != dst || s.ip.TTL() != 63 || s.ip.ID() != 77 {
		t.Errorf("forwarded %v -> %v TTL %d ID %d, want %v -> %v TTL 63 ID 77", s.ip.Src(), s.ip.Dst(), s.ip.TTL(), s.ip.ID(), peerIP, dst)
	}
	if !bytes.Equal(s.ip.Payload(), payload) {
		t.Errorf("forwarded payload differs")
	}
}

// icmpError returns the one frame the link sent, checked to be an ICMP
// error of typ and code to the peer, and its message.
func icmpError(t *testing.T, l *fakeLink, typ header.ICMPv4Type, code uint8) header.ICMPv4 {
	t.Helper()
	frames := l.take()
	if len(frames) != 1 {
		t.Fatalf("sent %d frames, want one ICMP error", len(frames))
	}
	s := parseIP(t, frames[0])
	if s.ip.Protocol() != header.ProtocolICMP || s.ip.Dst() != peerIP || s.ip.Src() != ourIP {
		t.Fatalf("sent protocol %d %v -> %v, want ICMP %v -> %v", s.ip.Protocol(), s.ip.Src(), s.ip.Dst(), ourIP, peerIP)
	}
	m := header.ICMPv4(s.ip.Payload())
	if m.Type() != typ || m.Code() != code {
		t.Fatalf("ICMP type %d code %d, want %d %d", m.Type(), m.Code(), typ, code)
	}
	return m
}

// At TTL 1 the peer gets ICMP time exceeded quoting the datagram's header
// (as it came, TTL 1) and its first 8 bytes.
func TestForwardTTLExceeded(t *testing.T) {
	b := newRouterbed(t, cfg1)
	b.knowPeer()
	b.knowB()
	in := peerTo(behindB, 1, 0, []byte("0123456789abcdef"))
	b.HandleFrame(in)
	m := icmpError(t, b.link, header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded)
	if want := in[header.EthernetMinimumSize : header.EthernetMinimumSize+28]; !bytes.Equal(m.Payload(), want) {
		t.Errorf("quoted % x, want % x", m.Payload(), want)
	}
	if f := b.link1.take(); len(f) != 0 {
		t.Errorf("interface 1 sent %d frames, want none", len(f))
	}
	if c := b.r.Counters(); c != (ForwardCounters{TTLExceeded: 1}) {
		t.Errorf("Counters() = %+v, want TTLExceeded: 1", c)
	}
}

// Over interface 1's MTU with DF set, the peer gets "fragmentation
// needed" with that MTU.
func TestForwardFragNeeded(t *testing.T) {
	cfg := cfg1
	cfg.MTU = 576
	b := newRouterbed(t, cfg)
	b.knowPeer()
	b.knowB()
	b.HandleFrame(peerTo(behindB, 64, header.IPv4FlagDontFragment, make([]byte, 1000)))
	m := icmpError(t, b.link, header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded)
	if m.MTU() != 576 {
		t.Errorf("next-hop MTU %d, want 576", m.MTU())
	}
	if f := b.link1.take(); len(f) != 0 {
		t.Errorf("interface 1 sent %d frames, want none", len(f))
	}
	if c := b.r.Counters(); c != (ForwardCounters{FragNeeded: 1}) {
		t.Errorf("Counters() = %+v, want FragNeeded: 1", c)
	}
}

// Over interface 1's MTU with DF clear, the datagram goes in fragments
// that each fit and together are the datagram.
func TestForwardFragments(t *testing.T) {
	cfg := cfg1
	cfg.MTU = 576
	b := newRouterbed(t, cfg)
	b.knowB()
	payload := make([]byte, 1400)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	b.HandleFrame(peerTo(behindB, 64, 0, payload))
	frames := b.link1.take()
	if len(frames) != 3 {
		t.Fatalf("interface 1 sent %d frames, want 3 fragments", len(frames))
	}
	for _, f := range frames {
		if len(f) > header.EthernetMinimumSize+576 {
			t.Errorf("fragment of %d bytes, over the MTU", len(f))
		}
	}
	first, got := reassembleSent(t, frames)
	if !bytes.Equal(got, payload) || first.TTL() != 63 || first.Src() != peerIP || first.ID() != 77 {
		t.Errorf("reassembled %d bytes (equal %v), TTL %d from %v ID %d; want the payload, TTL 63 from %v ID 77",
			len(got), bytes.Equal(got, payload), first.TTL(), first.Src(), first.ID(), peerIP)
	}
	if c := b.r.Counters(); c != (ForwardCounters{Forwarded: 1, ForwardFragmented: 1}) {
		t.Errorf("Counters() = %+v, want Forwarded: 1, ForwardFragmented: 1", c)
	}
}

// With no route (no gateway), the peer gets ICMP net unreachable.
func TestForwardNoRoute(t *testing.T) {
	tb := &testbed{link: &fakeLink{}, clock: &fakeClock{epoch}, udp: &fakeTransport{}}
	cfg := testCfg
	cfg.Gateway = netip.Addr{}
	tb.Stack = New(cfg, tb.link, tb.clock, nil)
	one := New(cfg1, &fakeLink{}, tb.clock, nil)
	r, err := NewRouter([]*Stack{tb.Stack, one}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	tb.knowPeer()
	tb.HandleFrame(peerTo(farIP, 64, 0, []byte("no route here")))
	icmpError(t, tb.link, header.ICMPv4DstUnreachable, header.ICMPv4NetUnreachable)
	if c := r.Counters(); c != (ForwardCounters{NoRoute: 1}) {
		t.Errorf("Counters() = %+v, want NoRoute: 1", c)
	}
}

// Nothing from or to a broadcast, multicast or reserved address, nor from
// one of ours, nor in a link-layer broadcast, is forwarded; nor anything
// with forwarding off.
func TestForwardMartians(t *testing.T) {
	b := newRouterbed(t, cfg1)
	b.knowPeer()
	b.knowB()
	for _, tc := range []struct{ src, dst string }{
		{"10.0.2.2", "10.78.0.255"}, // B's network's broadcast
		{"10.0.2.2", "224.0.0.5"},
		{"10.0.2.2", "127.0.0.1"},
		{"10.0.2.2", "169.254.1.1"},
		{"10.0.2.2", "240.0.0.1"},
		{"10.0.2.2", "0.1.2.3"},
		{"10.0.2.255", "10.78.0.2"},
		{"127.0.0.1", "10.78.0.2"},
		{"10.78.0.1", "10.78.0.2"}, // ours
	} {
		b.HandleFrame(ipFrame(peerMAC, ourMAC, header.IPv4Fields{Protocol: header.ProtocolUDP,
			Src: netip.MustParseAddr(tc.src), Dst: netip.MustParseAddr(tc.dst)}, []byte("x")))
		if n := len(b.link.take()) + len(b.link1.take()); n != 0 {
			t.Errorf("%s -> %s: %d frames sent, want none", tc.src, tc.dst, n)
		}
	}
	b.HandleFrame(ipFrame(peerMAC, header.BroadcastMAC, header.IPv4Fields{Protocol: header.ProtocolUDP, Src: peerIP, Dst: bIP}, []byte("x")))
	if n := len(b.link1.take()); n != 0 {
		t.Errorf("a link-layer broadcast to %v: %d frames forwarded, want none", bIP, n)
	}
	if c := b.r.Counters(); c != (ForwardCounters{Martians: 10}) {
		t.Errorf("Counters() = %+v, want Martians: 10", c)
	}

	off := newRouterbed(t, cfg1)
	off.r.forwarding = false
	off.knowB()
	off.HandleFrame(peerTo(bIP, 64, 0, []byte("x")))
	if n := len(off.link1.take()); n != 0 || off.Counters().IPNotForUs != 1 {
		t.Errorf("forwarding off: %d frames forwarded, IPNotForUs %d; want 0, 1", n, off.Counters().IPNotForUs)
	}
}

// A datagram to interface 1's address that comes in on interface 0 is
// ours, and a ping of it is answered from it; a transport's datagram to a network behind B leaves by interface
// 1 with interface 0's address, the one the transports know.
func TestRouterLocal(t *testing.T) {
	b := newRouterbed(t, cfg1)
	b.HandleFrame(peerTo(ourIP1, 64, 0, []byte("to interface 1")))
	if len(b.udp.got) != 1 || b.udp.got[0].dst != ourIP1 {
		t.Fatalf("delivered %+v, want the datagram to %v", b.udp.got, ourIP1)
	}
	b.knowPeer()
	b.HandleFrame(fromPeerTo(ourIP1, header.ProtocolICMP, echo(header.ICMPv4Echo, 7, 1, []byte("ping 1"))))
	if frames := b.link.take(); len(frames) != 1 {
		t.Errorf("ping of %v by interface 0: %d frames sent, want the echo reply", ourIP1, len(frames))
	} else if s := parseIP(t, frames[0]); s.ip.Src() != ourIP1 || s.ip.Dst() != peerIP {
		t.Errorf("echo reply %v -> %v, want %v -> %v", s.ip.Src(), s.ip.Dst(), ourIP1, peerIP)
	}
	b.knowB()
	if err := b.OutputOffload(header.ProtocolUDP, behindB, []byte("out"), Offload{}); err != nil {
		t.Fatalf("Output(%v) = %v", behindB, err)
	}
	frames := b.link1.take()
	if len(frames) != 1 {
		t.Fatalf("interface 1 sent %d frames, want 1", len(frames))
	}
	if s := parseIP(t, frames[0]); s.eth.Dst() != bMAC || s.ip.Src() != ourIP || s.ip.Dst() != behindB {
		t.Errorf("sent to %v, %v -> %v; want to %v, %v -> %v", s.eth.Dst(), s.ip.Src(), s.ip.Dst(), bMAC, ourIP, behindB)
	}
	if err := b.OutputOffload(header.ProtocolUDP, ourIP1, []byte("self"), Offload{}); err == nil {
		t.Errorf("Output(%v, one of ours) = nil, want ErrNoRoute", ourIP1)
	}
}

// A transport answering on interface 1's address (OutputFrom) sends from
// it, by the interface the route says; one that leaves the source (and the
// checksum) to ip gets that interface's address; a source that is none of
// ours is refused with ErrNotOurs, and nothing is sent.
func TestRouterOutputFrom(t *testing.T) {
	b := newRouterbed(t, cfg1)
	b.knowB()
	if err := b.OutputFrom(header.ProtocolUDP, ourIP1, bIP, []byte("reply"), Offload{}); err != nil {
		t.Fatalf("OutputFrom(%v, %v) = %v", ourIP1, bIP, err)
	}
	frames := b.link1.take()
	if len(frames) != 1 {
		t.Fatalf("interface 1 sent %d frames, want 1", len(frames))
	}
	if s := parseIP(t, frames[0]); s.ip.Src() != ourIP1 || s.ip.Dst() != bIP {
		t.Errorf("sent %v -> %v, want %v -> %v", s.ip.Src(), s.ip.Dst(), ourIP1, bIP)
	}
	// A source left to ip, with the checksum: the interface it leaves by,
	// and a checksum over that address.
	u := udpTo(53)
	if err := b.OutputFrom(header.ProtocolUDP, netip.Addr{}, bIP, u, Offload{Checksum: true}); err != nil {
		t.Fatalf("OutputFrom(no source, %v) = %v", bIP, err)
	}
	if frames := b.link1.take(); len(frames) != 1 {
		t.Errorf("interface 1 sent %d frames, want 1", len(frames))
	} else if s := parseIP(t, frames[0]); s.ip.Src() != ourIP1 || header.ValidateUDP(s.ip.Payload(), ourIP1, bIP) != nil {
		t.Errorf("sent %v -> %v (UDP checksum valid: %v), want from %v, checksummed over it", s.ip.Src(), s.ip.Dst(),
			header.ValidateUDP(s.ip.Payload(), ourIP1, bIP) == nil, ourIP1)
	}
	notOurs := netip.MustParseAddr("10.78.0.9")
	if err := b.OutputFrom(header.ProtocolUDP, notOurs, bIP, []byte("spoof"), Offload{}); !errors.Is(err, ErrNotOurs) {
		t.Errorf("OutputFrom(%v, not ours) = %v, want ErrNotOurs", notOurs, err)
	}
	if frames := append(b.link.take(), b.link1.take()...); len(frames) != 0 {
		t.Errorf("%d frames sent from an address not ours", len(frames))
	}
}

// The incremental checksum is the checksum computed anew, for every TTL
// and for checksums near the wrap-around.
func TestDecrementTTL(t *testing.T) {
	for ttl := 2; ttl < 256; ttl++ {
		for _, id := range []uint16{0, 1, 0x1234, 0xfeff, 0xffff} {
			ip := make(header.IPv4, header.IPv4MinimumSize)
			ip.Encode(&header.IPv4Fields{TotalLength: 20, ID: id, TTL: uint8(ttl), Protocol: 17,
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")})
			decrementTTL(ip)
			if ip.TTL() != uint8(ttl-1) || ip.Checksum() != ip.HeaderChecksum() {
				t.Fatalf("TTL %d ID %#x: after decrementTTL TTL %d checksum %#04x, want %d %#04x",
					ttl, id, ip.TTL(), ip.Checksum(), ttl-1, ip.HeaderChecksum())
			}
		}
	}
}

func TestCopiedOptions(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{nil, nil},
		{[]byte{optNoop, optNoop, optNoop, optEnd}, nil},
		{[]byte{0x07, 3, 0, optNoop}, nil},                                  // record route: not copied
		{[]byte{0x83, 3, 4, optNoop, 0x07, 3, 0, 0}, []byte{0x83, 3, 4, 0}}, // loose source route: copied
		{[]byte{0x83, 9, 4, 0}, nil},                                        // a length past the end
	} {
		if got := copiedOptions(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("copiedOptions(% x) = % x, want % x", tc.in, got, tc.want)
		}
	}
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "": an error
	}{
		{"10.90.0.0/16,via=10.78.0.2", "10.90.0.0/16,via=10.78.0.2"},
		{"10.90.1.2/16,via=10.78.0.2", "10.90.0.0/16,via=10.78.0.2"}, // masked
		{"0.0.0.0/0,via=10.78.0.2", "0.0.0.0/0,via=10.78.0.2"},
		{"10.90.0.0/16", ""},
		{"10.90.0.0/16,via=", ""},
		{"10.90.0.0,via=10.78.0.2", ""},
		{"fd00::/8,via=10.78.0.2", ""},
		{"10.90.0.0/16,via=fd00::1", ""},
	} {
		r, err := ParseRoute(tc.in)
		if got := r.String(); tc.want == "" && err == nil || tc.want != "" && (err != nil || got != tc.want) {
			t.Errorf("ParseRoute(%q) = %s, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
