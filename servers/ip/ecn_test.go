package ip

import (
	"net/netip"
	"testing"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// The ECN codepoint a transport asks for (RFC 3168 §5) goes out in the
// IPv4 TOS byte, whichever path the datagram takes, with the header
// checksum right.
func TestOutputECN4(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Offload
		n    int
	}{
		{"checksum offload", Offload{Checksum: true, ECN: ops.ECNECT0}, 100},
		{"segmentation offload", Offload{Checksum: true, MSS: 1448, ECN: ops.ECNECT0}, 10000},
		{"no offload", Offload{ECN: ops.ECNECT0}, 100},
		{"not ECT", Offload{Checksum: true}, 100},
	} {
		l := &offloadLink{}
		s := New(testCfg, l, &fakeClock{epoch}, nil)
		s.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
		l.take()
		if err := s.OutputOffload(header.ProtocolTCP, peerIP, tcpSegment(c.n), c.o); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		f := l.take()
		if len(f) != 1 {
			t.Fatalf("%s: %d frames, want 1", c.name, len(f))
		}
		ip := header.IPv4(f[0][header.EthernetMinimumSize:])
		if ip.TOS() != c.o.ECN {
			t.Errorf("%s: TOS %#x, want %#x", c.name, ip.TOS(), c.o.ECN)
		}
		if c.o.MSS == 0 && header.Checksum(ip[:header.IPv4MinimumSize], 0) != 0xFFFF {
			t.Errorf("%s: IPv4 header checksum wrong", c.name)
		}
	}
}

// Over IPv6 the codepoint goes in the traffic class.
func TestOutputECN6(t *testing.T) {
	tb := &testbed6{link: &mcastLink{groups: map[header.MAC]bool{}}, clock: &fakeClock{epoch}}
	tb.Stack = New(testCfg, tb.link, tb.clock, nil)
	tb.EnableIPv6(IPv6Config{}, nil)
	tb.ready(t)
	solicited := header.SolicitedNode(ourLL)
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(solicited), peerLL, solicited, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	tb.link.take()
	for _, ecn := range []uint8{ops.ECNECT0, ops.ECNNotECT} {
		if err := tb.OutputTransport6ECN(header.ProtocolTCP, netip.Addr{}, peerLL, tcpSegment(100), true, ecn); err != nil {
			t.Fatal(err)
		}
		out := tb.link.take()
		if len(out) != 1 {
			t.Fatalf("%d frames sent, want 1", len(out))
		}
		if h := header.IPv6(header.Ethernet(out[0]).Payload()); h.TrafficClass() != ecn {
			t.Errorf("OutputTransport6ECN(%d): traffic class %#x", ecn, h.TrafficClass())
		}
	}
	// A datagram after it is Not-ECT again.
	if err := tb.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerLL, make([]byte, 20), true); err != nil {
		t.Fatal(err)
	}
	if h := header.IPv6(header.Ethernet(tb.link.take()[0]).Payload()); h.TrafficClass() != 0 {
		t.Errorf("OutputTransport6 after an ECT one: traffic class %#x", h.TrafficClass())
	}
}

// OpOutput's codepoint reaches the wire, and a delivered datagram's
// codepoint reaches the transport with its header offset, both families.
func TestServerECN(t *testing.T) {
	b := newHoldbed(t)
	ref, _ := b.segs.Alloc()
	seg, _ := b.segs.Bytes(ref)
	ref.Len = uint32(copy(seg, tcpSegment(100)))
	m := ops.Output(ref, netip.Addr{}, peerIP, header.ProtocolTCP, 0)
	ops.SetOutputECN(&m, ops.ECNECT0)
	m.ID = 1
	b.s.handle(b.tcp, m)
	var sent []byte
	for _, d := range b.drv.queue {
		if f, err := b.s.tx.Bytes(d.Ref); err == nil && d.Ref.Len > 0 {
			sent = f[:d.Ref.Len]
		}
	}
	if sent == nil {
		t.Fatal("nothing sent")
	}
	if ip := header.IPv4(sent[header.EthernetMinimumSize:]); ip.TOS() != ops.ECNECT0 || header.Checksum(ip[:header.IPv4MinimumSize], 0) != 0xFFFF {
		t.Errorf("sent TOS %#x (checksum %#x), want ECT(0) and a right checksum", ip.TOS(), ip.Checksum())
	}

	tl := &transportLink{s: b.s, name: "tcp"}
	b.tcp.queue = nil
	f := ipFrame(peerMAC, ourMAC, header.IPv4Fields{TOS: 0xb8 | ops.ECNCE, Protocol: header.ProtocolTCP, Src: peerIP, Dst: ourIP}, make([]byte, 20))
	tl.DeliverDatagram(header.IPv4(f[header.EthernetMinimumSize:]), false)
	d6 := frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolTCP, make([]byte, 20))
	h6 := header.IPv6(d6[header.EthernetMinimumSize:])
	h6.Encode(&header.IPv6Fields{TrafficClass: ops.ECNECT1, PayloadLength: 20, NextHeader: header.ProtocolTCP, HopLimit: 64, Src: peerLL, Dst: ourLL})
	tl.DeliverDatagram6(h6, header.IPv6MinimumSize, false)
	var got [][2]int
	for _, m := range b.tcp.queue {
		if ops.OpOf(m) == ops.OpDeliver {
			_, _, off := ops.Delivered(m)
			got = append(got, [2]int{off, int(ops.DeliveredECN(m))})
		}
	}
	want := [][2]int{{20, int(ops.ECNCE)}, {40, int(ops.ECNECT1)}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("delivered (offset, ECN) %v, want %v", got, want)
	}
}
