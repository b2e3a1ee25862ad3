package relay

import (
	"bytes"
	"net/netip"
	"testing"

	"keepnet/servers/header"
)

var (
	macA = header.MAC{2, 0, 0, 0, 0, 0xa}
	macB = header.MAC{2, 0, 0, 0, 0, 0xb}
	ipA  = netip.MustParseAddr("10.0.0.1")
	ipB  = netip.MustParseAddr("10.0.0.2")
)

// ipFrame is an Ethernet frame from A to B holding an IPv4 datagram of
// total length n (protocol TCP, payload counting up), with flags.
func ipFrame(n int, flags uint16) []byte {
	f := make([]byte, ethLen+n)
	header.Ethernet(f).Encode(&header.EthernetFields{Dst: macB, Src: macA, Type: header.EtherTypeIPv4})
	for i := range f[ethLen+header.IPv4MinimumSize:] {
		f[ethLen+header.IPv4MinimumSize+i] = byte(i)
	}
	header.IPv4(f[ethLen:]).Encode(&header.IPv4Fields{TotalLength: uint16(n), ID: 7, Flags: flags, TTL: 64,
		Protocol: header.ProtocolTCP, Src: ipA, Dst: ipB})
	return f
}

// run applies a link of cfg to f and returns what passed and what went
// back, copied.
func run(t *testing.T, cfg Config, f []byte) (passed, back [][]byte, c *Counters) {
	t.Helper()
	c = new(Counters)
	l := newMTULink(cfg, c)
	l.apply(f, func(b []byte) { passed = append(passed, bytes.Clone(b)) },
		func(b []byte) { back = append(back, bytes.Clone(b)) })
	return passed, back, c
}

func TestMTUPassesWhatFits(t *testing.T) {
	for _, f := range [][]byte{ipFrame(1000, header.IPv4FlagDontFragment), ipFrame(400, 0), {1, 2, 3}} {
		passed, back, _ := run(t, Config{MTU: 1000}, f)
		if len(passed) != 1 || !bytes.Equal(passed[0], f) || len(back) != 0 {
			t.Errorf("a %d-byte frame: passed %d, back %d; want it passed as it was", len(f), len(passed), len(back))
		}
	}
}

// A datagram with DF over the MTU: dropped, and the sender gets ICMP
// "fragmentation needed" with the next-hop MTU, quoting its header and 8
// bytes, from its destination (or MTUFrom), to the MAC it came from.
func TestMTUFragNeeded(t *testing.T) {
	router := netip.MustParseAddr("192.0.2.1")
	for _, from := range []netip.Addr{{}, router} {
		f := ipFrame(1500, header.IPv4FlagDontFragment)
		passed, back, c := run(t, Config{MTU: 1000, MTUFrom: from}, f)
		if len(passed) != 0 || len(back) != 1 || c.TooBig.Load() != 1 {
			t.Fatalf("passed %d, back %d, TooBig %d; want 0, 1, 1", len(passed), len(back), c.TooBig.Load())
		}
		b := back[0]
		eth := header.Ethernet(b)
		if eth.Dst() != macA || eth.Src() != macB {
			t.Errorf("ICMP frame from %v to %v, want %v to %v", eth.Src(), eth.Dst(), macB, macA)
		}
		ip := header.IPv4(b[ethLen:])
		if err := header.ValidateIPv4(ip); err != nil {
			t.Fatal(err)
		}
		wantSrc := ipB
		if from.IsValid() {
			wantSrc = from
		}
		if ip.Src() != wantSrc || ip.Dst() != ipA || ip.Protocol() != header.ProtocolICMP {
			t.Errorf("ICMP datagram %v -> %v proto %d, want %v -> %v proto 1", ip.Src(), ip.Dst(), ip.Protocol(), wantSrc, ipA)
		}
		m := header.ICMPv4(ip.Payload())
		if err := header.ValidateICMPv4(m); err != nil {
			t.Fatal(err)
		}
		if m.Type() != header.ICMPv4DstUnreachable || m.Code() != header.ICMPv4FragNeeded || m.MTU() != 1000 {
			t.Errorf("ICMP type %d code %d MTU %d, want 3, 4, 1000", m.Type(), m.Code(), m.MTU())
		}
		if q := m.Payload(); !bytes.Equal(q, f[ethLen:ethLen+28]) {
			t.Errorf("quote = % x, want % x", q, f[ethLen:ethLen+28])
		}
	}
}

func TestMTUBlackHole(t *testing.T) {
	passed, back, c := run(t, Config{MTU: 1000, BlackHole: true}, ipFrame(1500, header.IPv4FlagDontFragment))
	if len(passed) != 0 || len(back) != 0 || c.TooBig.Load() != 1 {
		t.Errorf("passed %d, back %d, TooBig %d; want 0, 0, 1", len(passed), len(back), c.TooBig.Load())
	}
}

// Without DF: fragments within the MTU, 8-byte aligned, that put together
// give the datagram back.
func TestMTUFragments(t *testing.T) {
	f := ipFrame(2500, 0)
	passed, back, c := run(t, Config{MTU: 1000, BlackHole: true}, f)
	if len(back) != 0 || c.Fragmented.Load() != 1 || len(passed) != 3 {
		t.Fatalf("back %d, Fragmented %d, fragments %d; want 0, 1, 3", len(back), c.Fragmented.Load(), len(passed))
	}
	var data []byte
	for i, p := range passed {
		ip := header.IPv4(p[ethLen:])
		if err := header.ValidateIPv4(ip); err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		if int(ip.TotalLength()) > 1000 || ip.FragmentOffset() != len(data) || ip.MoreFragments() != (i < 2) || ip.ID() != 7 {
			t.Errorf("fragment %d: length %d offset %d MF %v ID %d", i, ip.TotalLength(), ip.FragmentOffset(), ip.MoreFragments(), ip.ID())
		}
		data = append(data, ip.Payload()...)
	}
	if !bytes.Equal(data, f[ethLen+header.IPv4MinimumSize:]) {
		t.Error("the fragments' data is not the datagram's")
	}
}

func TestMTUValidate(t *testing.T) {
	for _, cfg := range []Config{{MTU: 67}, {MTU: 70000}, {MTU: 1000, MTUFrom: netip.MustParseAddr("::1")}} {
		if validateMTU(cfg) == nil {
			t.Errorf("validateMTU(%+v) = nil, want an error", cfg)
		}
	}
}

// Through a running Relay: a guest's datagram too big for the link comes
// back to the guest as ICMP, a namespace's goes back to the wire, and
// datagrams without DF come out the other side in fragments (the wire
// side, a socket, gets them as they are: no virtio_net_hdr here).
func TestRelayLinkMTU(t *testing.T) {
	g := newRig(t, Config{MTU: 1000})
	g.guest.Write(AppendFrame(nil, ipFrame(1500, header.IPv4FlagDontFragment)))
	back := recvGuest(t, g.guest, 1, hangWait)
	if len(back) != 1 || header.ICMPv4(back[0][ethLen+20:]).Code() != header.ICMPv4FragNeeded {
		t.Fatalf("guest got %d frames back, want one ICMP fragmentation needed", len(back))
	}
	g.wire.Write(ipFrame(1500, header.IPv4FlagDontFragment))
	back = recvWire(t, g.wire, 1, hangWait)
	if len(back) != 1 || header.ICMPv4(back[0][ethLen+20:]).MTU() != 1000 {
		t.Fatalf("wire got %d frames back, want one ICMP with MTU 1000", len(back))
	}
	g.wire.Write(ipFrame(1500, 0))
	if got := recvGuest(t, g.guest, 2, hangWait); len(got) != 2 {
		t.Errorf("guest got %d fragments, want 2", len(got))
	}
	g.guest.Write(AppendFrame(nil, ipFrame(1500, 0)))
	if got := recvWire(t, g.wire, 2, hangWait); len(got) != 2 {
		t.Errorf("wire got %d fragments, want 2", len(got))
	}
	out, in := g.r.Stats()
	if out.TooBig != 1 || in.TooBig != 1 || out.Fragmented != 1 || in.Fragmented != 1 {
		t.Errorf("stats out %v, in %v; want too_big and fragmented 1 each way", out, in)
	}
}
