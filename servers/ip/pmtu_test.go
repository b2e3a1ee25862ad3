package ip

import (
	"bytes"
	"net/netip"
	"testing"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// errTransport records the ICMP errors the Stack hands it.
type errTransport struct {
	fakeTransport
	errs []deliveredError
}

type deliveredError struct {
	e       ops.ICMPError
	pathMTU int
}

func (t *errTransport) DeliverError(ip header.IPv4, pathMTU int) {
	b := bytes.Clone(ip)
	// What the server does: IP's estimate in place of the router's.
	if pathMTU > 0 {
		header.ICMPv4(b[ip.HeaderLength():]).SetMTU(uint16(pathMTU))
	}
	e, ok := ops.ICMPErrorOf(b, ip.HeaderLength())
	if !ok {
		panic("ICMPErrorOf refused what the Stack checked")
	}
	e.Quote = bytes.Clone(e.Quote)
	t.errs = append(t.errs, deliveredError{e, pathMTU})
}

// quotedTCP is the IP header and first 8 bytes of a TCP segment of total
// length n we sent from src (port 40000) to farIP:80 with sequence number
// seq, as an ICMP error quotes it.
func quotedTCP(src netip.Addr, n int, seq uint32) []byte {
	q := make([]byte, header.IPv4MinimumSize+8)
	header.IPv4(q).Encode(&header.IPv4Fields{TotalLength: uint16(n), ID: 1, Flags: header.IPv4FlagDontFragment, TTL: 64,
		Protocol: header.ProtocolTCP, Src: src, Dst: farIP})
	t := q[header.IPv4MinimumSize:]
	t[0], t[1], t[2], t[3] = 40000>>8, 40000&0xff, 0, 80
	t[4], t[5], t[6], t[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	return q
}

// icmpErrorFrame is an ICMP error from the gateway to us quoting quote.
func icmpErrorFrame(typ header.ICMPv4Type, code uint8, mtu uint16, quote []byte) []byte {
	m := make([]byte, header.ICMPv4MinimumSize+len(quote))
	copy(m[header.ICMPv4MinimumSize:], quote)
	header.ICMPv4(m).Encode(&header.ICMPv4Fields{Type: typ, Code: code, Rest: uint32(mtu)})
	return ipFrame(gwMAC, ourMAC, header.IPv4Fields{ID: 9, Protocol: header.ProtocolICMP, Src: gwIP, Dst: ourIP}, m)
}

func newPMTUTestbed(t *testing.T) (*Stack, *errTransport, *fakeClock) {
	tcp := &errTransport{}
	clock := &fakeClock{epoch}
	return New(testCfg, &fakeLink{}, clock, map[uint8]Transport{header.ProtocolTCP: tcp}), tcp, clock
}

// "Fragmentation needed" about a segment of ours: the path MTU to its
// destination drops to the router's next-hop MTU (a plateau if it said
// none, never below MinPathMTU), and tcp gets the error with the
// estimate; an error about a datagram that is not ours changes nothing.
func TestFragNeededLearnsPathMTU(t *testing.T) {
	for _, tc := range []struct {
		name       string
		src        netip.Addr
		mtu        uint16
		wantMTU    int
		wantErrors int
	}{
		{"next-hop MTU", ourIP, 1000, 1000, 1},
		{"below the floor", ourIP, 100, MinPathMTU, 1},
		{"none said: plateau", ourIP, 0, 1492, 1},
		{"not ours", peerIP, 1000, 1500, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, tcp, _ := newPMTUTestbed(t)
			s.HandleFrame(icmpErrorFrame(header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, tc.mtu, quotedTCP(tc.src, 1500, 77)))
			if got := s.PathMTU(farIP); got != tc.wantMTU {
				t.Errorf("PathMTU(%v) = %d, want %d", farIP, got, tc.wantMTU)
			}
			if len(tcp.errs) != tc.wantErrors {
				t.Fatalf("%d errors delivered, want %d", len(tcp.errs), tc.wantErrors)
			}
			if tc.wantErrors == 0 {
				if s.Counters().ICMPErrorsIgnored != 1 {
					t.Errorf("ICMPErrorsIgnored = %d, want 1", s.Counters().ICMPErrorsIgnored)
				}
				return
			}
			e := tcp.errs[0].e
			want := ops.ICMPError{Type: header.ICMPv4DstUnreachable, Code: header.ICMPv4FragNeeded, MTU: tc.wantMTU,
				Local: netip.AddrPortFrom(ourIP, 40000), Remote: netip.AddrPortFrom(farIP, 80), Quote: e.Quote}
			if e.Type != want.Type || e.Code != want.Code || e.MTU != want.MTU || e.Local != want.Local || e.Remote != want.Remote {
				t.Errorf("delivered %+v, want %+v", e, want)
			}
			if len(e.Quote) < 8 || e.Quote[7] != 77 {
				t.Errorf("quote % x: want the TCP header's first 8 bytes (seq 77)", e.Quote)
			}
		})
	}
}

// Other errors reach the transport as they are, and teach nothing about
// the path.
func TestICMPErrorsReachTransport(t *testing.T) {
	s, tcp, _ := newPMTUTestbed(t)
	for _, m := range []struct {
		typ  header.ICMPv4Type
		code uint8
	}{
		{header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable},
		{header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable},
		{header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded},
		{header.ICMPv4ParamProblem, 0},
	} {
		s.HandleFrame(icmpErrorFrame(m.typ, m.code, 0, quotedTCP(ourIP, 1500, 1)))
	}
	if len(tcp.errs) != 4 || s.PathMTU(farIP) != 1500 {
		t.Fatalf("%d errors delivered, PathMTU %d; want 4, 1500", len(tcp.errs), s.PathMTU(farIP))
	}
	for _, d := range tcp.errs {
		if d.pathMTU != 0 || d.e.MTU != 0 {
			t.Errorf("%+v: want no MTU", d)
		}
	}
	// A quote too short to hold the ports and sequence number.
	s.HandleFrame(icmpErrorFrame(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, 0, quotedTCP(ourIP, 1500, 1)[:24]))
	if len(tcp.errs) != 4 || s.Counters().ICMPErrorsIgnored != 1 {
		t.Errorf("a short quote: %d delivered, ICMPErrorsIgnored %d; want 4, 1", len(tcp.errs), s.Counters().ICMPErrorsIgnored)
	}
}

// RFC 1191 §6.3: an estimate is forgotten after PathMTUAge, and the link's
// MTU is tried again.
func TestPathMTUAges(t *testing.T) {
	s, _, clock := newPMTUTestbed(t)
	s.HandleFrame(icmpErrorFrame(header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, 1000, quotedTCP(ourIP, 1500, 1)))
	clock.Advance(PathMTUAge - 1)
	s.Tick()
	if got := s.PathMTU(farIP); got != 1000 {
		t.Fatalf("PathMTU before PathMTUAge = %d, want 1000", got)
	}
	clock.Advance(1)
	s.Tick()
	if got := s.PathMTU(farIP); got != 1500 {
		t.Errorf("PathMTU after PathMTUAge = %d, want 1500", got)
	}
	// A larger MTU than the estimate never raises it.
	s.HandleFrame(icmpErrorFrame(header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, 1000, quotedTCP(ourIP, 1500, 1)))
	s.HandleFrame(icmpErrorFrame(header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, 1200, quotedTCP(ourIP, 1500, 1)))
	if got := s.PathMTU(farIP); got != 1000 {
		t.Errorf("PathMTU after a larger next-hop MTU = %d, want 1000", got)
	}
}

// The cache holds MaxPathMTUs destinations; the oldest goes first.
func TestPathMTUBounded(t *testing.T) {
	s, _, clock := newPMTUTestbed(t)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}) }
	for i := range MaxPathMTUs + 1 {
		s.learnPathMTU(addr(i), 1000, 1500, clock.now)
		clock.Advance(1)
	}
	if len(s.pmtu.m) != MaxPathMTUs || s.PathMTU(addr(0)) != 1500 || s.PathMTU(addr(MaxPathMTUs)) != 1000 {
		t.Errorf("%d entries, PathMTU(first) %d, PathMTU(last) %d; want %d, 1500, 1000",
			len(s.pmtu.m), s.PathMTU(addr(0)), s.PathMTU(addr(MaxPathMTUs)), MaxPathMTUs)
	}
}

// What the server keeps in the store comes back in a restarted Stack,
// less what has aged meanwhile.
func TestPathMTUsRestored(t *testing.T) {
	s, _, clock := newPMTUTestbed(t)
	s.learnPathMTU(farIP, 1000, 1500, clock.now)
	clock.Advance(PathMTUAge / 2)
	s.learnPathMTU(peerIP, 1200, 1500, clock.now)
	b, changed := s.PathMTUs()
	if !changed {
		t.Error("PathMTUs: not changed after learning")
	}
	if _, changed := s.PathMTUs(); changed {
		t.Error("PathMTUs: changed twice")
	}
	clock.Advance(PathMTUAge / 2)
	s2 := New(testCfg, &fakeLink{}, clock, nil)
	if n := s2.RestorePathMTUs(append(b, 1, 2, 3)); n != 1 {
		t.Errorf("RestorePathMTUs = %d, want 1 (one aged)", n)
	}
	if s2.PathMTU(peerIP) != 1200 || s2.PathMTU(farIP) != 1500 {
		t.Errorf("restored PathMTU %d, %d; want 1200, 1500", s2.PathMTU(peerIP), s2.PathMTU(farIP))
	}
}

// Offloaded segments follow the path MTU: the device cuts them at it even
// when the transport asked for more.
func TestSegmentationFollowsPathMTU(t *testing.T) {
	l := &offloadLink{}
	s := New(testCfg, l, &fakeClock{epoch}, nil)
	s.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
	l.take()
	s.learnPathMTU(peerIP, 1000, 1500, epoch)
	// One MSS of the link, over the path's: segmented all the same.
	for _, n := range []int{1460, 10000} {
		l.offloads = nil
		if err := s.OutputOffload(header.ProtocolTCP, peerIP, tcpSegment(n), Offload{Checksum: true, MSS: 1460}); err != nil {
			t.Fatal(err)
		}
		l.take()
		if len(l.offloads) != 1 || l.offloads[0].MSS != 960 {
			t.Errorf("a %d-byte segment: offloads %+v, want one at MSS 960", n, l.offloads)
		}
	}
	if s.Counters().PathMTUClamped != 2 {
		t.Errorf("PathMTUClamped = %d, want 2", s.Counters().PathMTUClamped)
	}
}

// TCP datagrams carry DF also without offloads: path MTU discovery needs
// it.
func TestTCPSetsDF(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	if err := tb.Output(header.ProtocolTCP, peerIP, tcpSegment(100)); err != nil {
		t.Fatal(err)
	}
	f := tb.link.take()
	if len(f) != 1 || !parseIP(t, f[0]).ip.DontFragment() {
		t.Errorf("a TCP segment without DF")
	}
}
