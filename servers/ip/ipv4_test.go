package ip

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"keepnet/servers/header"
)

// ping: the peer asks, we answer with the same identifier, sequence and data.
func TestPing(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	req := echo(header.ICMPv4Echo, 0x1234, 7, []byte("keep net working"))
	tb.HandleFrame(fromPeer(header.ProtocolICMP, 1, req))
	got := tb.link.take()
	if len(got) != 1 {
		t.Fatalf("ping: sent %d frames, want 1 echo reply", len(got))
	}
	s := parseIP(t, got[0])
	if s.eth.Dst() != peerMAC || s.eth.Src() != ourMAC || s.ip.Src() != ourIP || s.ip.Dst() != peerIP || s.ip.Protocol() != header.ProtocolICMP {
		t.Errorf("ping: reply %v->%v, %v->%v proto %d, want %v->%v, %v->%v proto 1",
			s.eth.Src(), s.eth.Dst(), s.ip.Src(), s.ip.Dst(), s.ip.Protocol(), ourMAC, peerMAC, ourIP, peerIP)
	}
	if err := header.ValidateICMPv4(s.ip.Payload()); err != nil {
		t.Fatalf("ping: ValidateICMPv4(reply) = %v, want nil", err)
	}
	if want := echo(header.ICMPv4EchoReply, 0x1234, 7, []byte("keep net working")); !bytes.Equal(s.ip.Payload(), want) {
		t.Errorf("ping: reply ICMP = % x, want % x", s.ip.Payload(), want)
	}
	if c := tb.Counters(); c.ICMPEchoRequests != 1 || c.ICMPEchoReplies != 1 {
		t.Errorf("Counters() ICMPEchoRequests, ICMPEchoReplies = %d, %d, want 1, 1", c.ICMPEchoRequests, c.ICMPEchoReplies)
	}
}

// ping -s 8000: six fragments in shuffled order, one echo request, a reply
// in six fragments.
func TestPingFragmented(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	data := make([]byte, 8000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	req := echo(header.ICMPv4Echo, 99, 1, data)
	frames := fragmentsFromPeer(header.ProtocolICMP, 4242, req, 1480)
	if len(frames) != 6 {
		t.Fatalf("test setup: %d fragments, want 6", len(frames))
	}
	r := rand.New(rand.NewPCG(3, 4))
	r.Shuffle(len(frames), func(i, j int) { frames[i], frames[j] = frames[j], frames[i] })
	for i, f := range frames {
		tb.HandleFrame(f)
		if sent := len(tb.link.frames); i < 5 && sent != 0 {
			t.Fatalf("after %d of 6 fragments, sent %d frames, want 0", i+1, sent)
		}
	}
	got := tb.link.take()
	if len(got) != 6 {
		t.Fatalf("reply to 8000-byte ping: %d frames, want 6", len(got))
	}
	first, icmp := reassembleSent(t, got)
	if first.Src() != ourIP || first.Dst() != peerIP {
		t.Errorf("reply %v->%v, want %v->%v", first.Src(), first.Dst(), ourIP, peerIP)
	}
	if err := header.ValidateICMPv4(icmp); err != nil {
		t.Fatalf("ValidateICMPv4(reassembled reply) = %v, want nil", err)
	}
	if want := echo(header.ICMPv4EchoReply, 99, 1, data); !bytes.Equal(icmp, want) {
		t.Errorf("reassembled reply differs from the echo reply of the request (len %d, want %d)", len(icmp), len(want))
	}
	c := tb.Counters()
	if c.FragmentsIn != 6 || c.ReassemblyOK != 1 || c.FragmentsOut != 6 || c.ICMPEchoReplies != 1 {
		t.Errorf("Counters() FragmentsIn, ReassemblyOK, FragmentsOut, ICMPEchoReplies = %d, %d, %d, %d, want 6, 1, 6, 1",
			c.FragmentsIn, c.ReassemblyOK, c.FragmentsOut, c.ICMPEchoReplies)
	}
	if tb.reasmMem != 0 || len(tb.reasm) != 0 {
		t.Errorf("after reassembly: %d datagrams, %d bytes held, want 0, 0", len(tb.reasm), tb.reasmMem)
	}
}

// Deliveries to the transport: whole, reassembled, broadcast.
func TestDeliver(t *testing.T) {
	udp := []byte("0123456789abcdef0123456789")
	tests := []struct {
		name   string
		frames [][]byte
		want   []delivery
	}{
		{"unicast", [][]byte{fromPeer(header.ProtocolUDP, 1, udp)},
			[]delivery{{header.ProtocolUDP, peerIP, ourIP, string(udp)}}},
		{"limited broadcast", [][]byte{ipFrame(peerMAC, header.BroadcastMAC, header.IPv4Fields{Protocol: header.ProtocolUDP, Src: peerIP, Dst: netip.MustParseAddr("255.255.255.255")}, udp)},
			[]delivery{{header.ProtocolUDP, peerIP, netip.MustParseAddr("255.255.255.255"), string(udp)}}},
		{"fragments in reverse", [][]byte{frag(5, 16, false, udp[16:]), frag(5, 8, true, udp[8:16]), frag(5, 0, true, udp[:8])},
			[]delivery{{header.ProtocolUDP, peerIP, ourIP, string(udp)}}},
		{"options (IHL 6)", [][]byte{ipFrame(peerMAC, ourMAC, header.IPv4Fields{Protocol: header.ProtocolUDP, Src: peerIP, Dst: ourIP, Options: []byte{1, 1, 1, 0}}, udp)},
			[]delivery{{header.ProtocolUDP, peerIP, ourIP, string(udp)}}},
		{"TTL 1 (we don't forward, so it's fine)", [][]byte{ipFrame(peerMAC, ourMAC, header.IPv4Fields{TTL: 1, Protocol: header.ProtocolUDP, Src: peerIP, Dst: ourIP}, udp)},
			[]delivery{{header.ProtocolUDP, peerIP, ourIP, string(udp)}}},
		{"Ethernet padding", [][]byte{append(fromPeer(header.ProtocolUDP, 1, []byte("x")), 0, 0, 0, 0)},
			[]delivery{{header.ProtocolUDP, peerIP, ourIP, "x"}}},
	}
	for _, tt := range tests {
		tb := newTestbed(t)
		for _, f := range tt.frames {
			tb.HandleFrame(f)
		}
		if len(tb.udp.got) != len(tt.want) {
			t.Errorf("%s: Deliver called %d times, want %d", tt.name, len(tb.udp.got), len(tt.want))
			continue
		}
		for i := range tt.want {
			if tb.udp.got[i] != tt.want[i] {
				t.Errorf("%s: Deliver(%v), want Deliver(%v)", tt.name, tb.udp.got[i], tt.want[i])
			}
		}
	}
}

// A protocol nobody serves: ICMP protocol unreachable quoting the header
// and 8 bytes. SendUnreachable does the same for the transports.
func TestUnreachable(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	payload := []byte("0123456789abcdef")
	in := fromPeer(header.ProtocolTCP, 77, payload)
	offending := in[header.EthernetMinimumSize:]
	tests := []struct {
		name string
		send func()
		code uint8
	}{
		{"tcp with no transport", func() { tb.HandleFrame(in) }, header.ICMPv4ProtoUnreachable},
		{"SendUnreachable(port)", func() {
			if err := tb.SendUnreachable(header.ICMPv4PortUnreachable, offending); err != nil {
				t.Errorf("SendUnreachable() = %v, want nil", err)
			}
		}, header.ICMPv4PortUnreachable},
	}
	for _, tt := range tests {
		tt.send()
		got := tb.link.take()
		if len(got) != 1 {
			t.Fatalf("%s: sent %d frames, want 1", tt.name, len(got))
		}
		s := parseIP(t, got[0])
		m := header.ICMPv4(s.ip.Payload())
		if err := header.ValidateICMPv4(m); err != nil {
			t.Fatalf("%s: ValidateICMPv4() = %v", tt.name, err)
		}
		if m.Type() != header.ICMPv4DstUnreachable || m.Code() != tt.code || s.ip.Dst() != peerIP {
			t.Errorf("%s: ICMP type %d code %d to %v, want 3 %d to %v", tt.name, m.Type(), m.Code(), s.ip.Dst(), tt.code, peerIP)
		}
		if want := offending[:20+8]; !bytes.Equal(m.Payload(), want) {
			t.Errorf("%s: quoted % x, want % x", tt.name, m.Payload(), want)
		}
	}
	if err := tb.SendUnreachable(3, offending[:10]); !errorsIs(err, ErrBadPacket) {
		t.Errorf("SendUnreachable(truncated) = %v, want %v", err, ErrBadPacket)
	}
	// No error about an ICMP error (RFC 1122 §3.2.2).
	icmpErr := fromPeer(header.ProtocolICMP, 3, func() []byte {
		m := make([]byte, 8+28)
		header.ICMPv4(m).Encode(&header.ICMPv4Fields{Type: header.ICMPv4DstUnreachable, Code: 3})
		return m
	}())[header.EthernetMinimumSize:]
	if err := tb.SendUnreachable(2, icmpErr); err != nil || len(tb.link.take()) != 0 {
		t.Errorf("SendUnreachable(about an ICMP error) sent something or failed (%v), want silence", err)
	}
	if c := tb.Counters(); c.ICMPUnreachableOut != 2 || c.ICMPErrorsSuppressed != 1 || c.IPUnknownProtocol != 1 {
		t.Errorf("Counters() ICMPUnreachableOut, ICMPErrorsSuppressed, IPUnknownProtocol = %d, %d, %d, want 2, 1, 1",
			c.ICMPUnreachableOut, c.ICMPErrorsSuppressed, c.IPUnknownProtocol)
	}
}

// Malformed or foreign frames are dropped, counted once, and never answered.
func TestDropped(t *testing.T) {
	good := func() []byte { return fromPeer(header.ProtocolUDP, 1, []byte("payload!")) }
	ipHdr := func(f []byte) header.IPv4 { return header.IPv4(f[header.EthernetMinimumSize:]) }
	refix := func(f []byte) []byte { ipHdr(f).SetChecksum(ipHdr(f).HeaderChecksum()); return f }
	tests := []struct {
		name  string
		frame []byte
		count func(Counters) uint64
		field string
	}{
		{"another MAC", ipFrame(peerMAC, otherMAC, header.IPv4Fields{Protocol: header.ProtocolUDP, Src: peerIP, Dst: ourIP}, nil),
			func(c Counters) uint64 { return c.FramesNotForUs }, "FramesNotForUs"},
		{"multicast MAC", ipFrame(peerMAC, header.MAC{1, 0, 0x5e, 0, 0, 1}, header.IPv4Fields{Protocol: header.ProtocolUDP, Src: peerIP, Dst: ourIP}, nil),
			func(c Counters) uint64 { return c.FramesNotForUs }, "FramesNotForUs"},
		{"13-byte frame", good()[:13], func(c Counters) uint64 { return c.FramesTruncated }, "FramesTruncated"},
		{"oversized frame", fromPeer(header.ProtocolUDP, 1, make([]byte, 1481)), func(c Counters) uint64 { return c.FramesOversized }, "FramesOversized"},
		{"IPv6 EtherType", func() []byte { f := good(); header.Ethernet(f).SetType(0x86dd); return f }(),
			func(c Counters) uint64 { return c.FramesUnknownType }, "FramesUnknownType"},
		{"bad checksum", func() []byte { f := good(); ipHdr(f)[10] ^= 0x40; return f }(),
			func(c Counters) uint64 { return c.IPBadChecksum }, "IPBadChecksum"},
		{"truncated IP header", good()[:header.EthernetMinimumSize+19], func(c Counters) uint64 { return c.IPTruncated }, "IPTruncated"},
		{"total length beyond frame", good()[:header.EthernetMinimumSize+27], func(c Counters) uint64 { return c.IPTruncated }, "IPTruncated"},
		{"bad IHL", refix(func() []byte { f := good(); ipHdr(f)[0] = 0x44; return f }()),
			func(c Counters) uint64 { return c.IPBadIHL }, "IPBadIHL"},
		{"total length below header", refix(func() []byte { f := good(); ipHdr(f).SetTotalLength(12); return f }()),
			func(c Counters) uint64 { return c.IPBadLength }, "IPBadLength"},
		{"ping of death fragment", frag(1, 65528, false, make([]byte, 16)), func(c Counters) uint64 { return c.IPBadLength }, "IPBadLength"},
		{"version 6", refix(func() []byte { f := good(); ipHdr(f)[0] = 0x65; return f }()),
			func(c Counters) uint64 { return c.IPBadVersion }, "IPBadVersion"},
		{"not our address", ipFrame(peerMAC, ourMAC, header.IPv4Fields{Protocol: header.ProtocolUDP, Src: peerIP, Dst: netip.MustParseAddr("10.0.2.16")}, nil),
			func(c Counters) uint64 { return c.IPNotForUs }, "IPNotForUs"},
		{"broadcast source", ipFrame(peerMAC, ourMAC, header.IPv4Fields{Protocol: header.ProtocolUDP, Src: netip.MustParseAddr("10.0.2.255"), Dst: ourIP}, nil),
			func(c Counters) uint64 { return c.IPBadSource }, "IPBadSource"},
		{"ICMP bad checksum", fromPeer(header.ProtocolICMP, 1, func() []byte { m := echo(header.ICMPv4Echo, 1, 1, []byte("x")); m[8] ^= 1; return m }()),
			func(c Counters) uint64 { return c.ICMPBad }, "ICMPBad"},
		{"ICMP truncated", fromPeer(header.ProtocolICMP, 1, []byte{8, 0, 0xf7}),
			func(c Counters) uint64 { return c.ICMPBad }, "ICMPBad"},
		{"broadcast ping", ipFrame(peerMAC, header.BroadcastMAC, header.IPv4Fields{Protocol: header.ProtocolICMP, Src: peerIP, Dst: netip.MustParseAddr("10.0.2.255")}, echo(header.ICMPv4Echo, 1, 1, nil)),
			func(c Counters) uint64 { return c.ICMPEchoIgnored }, "ICMPEchoIgnored"},
		{"unaligned middle fragment", frag(1, 0, true, make([]byte, 9)), func(c Counters) uint64 { return c.ReassemblyBad }, "ReassemblyBad"},
	}
	for _, tt := range tests {
		tb := newTestbed(t)
		tb.knowPeer()
		tb.HandleFrame(tt.frame)
		if got := tt.count(tb.Counters()); got != 1 {
			t.Errorf("%s: Counters().%s = %d, want 1", tt.name, tt.field, got)
		}
		if got := tb.link.take(); len(got) != 0 {
			t.Errorf("%s: HandleFrame() sent %d frames, want 0", tt.name, len(got))
		}
		if len(tb.udp.got) != 0 {
			t.Errorf("%s: delivered %v, want nothing", tt.name, tb.udp.got)
		}
	}
}

func TestReassemblyOverlap(t *testing.T) {
	data := make([]byte, 48)
	tests := []struct {
		name   string
		frames [][]byte
	}{
		{"overlapping start", [][]byte{frag(9, 0, true, data[:24]), frag(9, 16, false, data[16:])}},
		{"overlapping end", [][]byte{frag(9, 24, false, data[24:]), frag(9, 0, true, data[:32])}},
		{"contained", [][]byte{frag(9, 0, true, data[:40]), frag(9, 8, true, data[8:16])}},
		{"exact duplicate", [][]byte{frag(9, 8, true, data[8:16]), frag(9, 8, true, data[8:16])}},
	}
	for _, tt := range tests {
		tb := newTestbed(t)
		for _, f := range tt.frames {
			tb.HandleFrame(f)
		}
		// The rest of the datagram now starts a new, incomplete reassembly
		// at most; nothing is delivered.
		tb.HandleFrame(frag(9, 40, false, data[40:]))
		if c := tb.Counters().ReassemblyOverlaps; c != 1 {
			t.Errorf("%s: Counters().ReassemblyOverlaps = %d, want 1", tt.name, c)
		}
		if len(tb.udp.got) != 0 {
			t.Errorf("%s: delivered %d datagrams, want 0", tt.name, len(tb.udp.got))
		}
	}
}

// A datagram missing a fragment times out after 30 s: dropped, memory
// released, and the source told (time exceeded, reassembly) since fragment
// zero arrived.
func TestReassemblyTimeout(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	data := []byte("0123456789abcdef0123")
	first := frag(7, 0, true, data[:16])
	tb.HandleFrame(first)
	tb.clock.Advance(29 * time.Second)
	tb.Tick()
	if c := tb.Counters().ReassemblyTimeouts; c != 0 {
		t.Fatalf("at 29 s: Counters().ReassemblyTimeouts = %d, want 0", c)
	}
	tb.clock.Advance(time.Second)
	tb.Tick()
	tb.HandleFrame(frag(7, 16, false, data[16:])) // too late: starts a new datagram
	if c := tb.Counters(); c.ReassemblyTimeouts != 1 || c.ReassemblyOK != 0 || c.ICMPTimeExceededOut != 1 {
		t.Errorf("at 30 s: Counters() ReassemblyTimeouts, ReassemblyOK, ICMPTimeExceededOut = %d, %d, %d, want 1, 0, 1",
			c.ReassemblyTimeouts, c.ReassemblyOK, c.ICMPTimeExceededOut)
	}
	got := tb.link.take()
	if len(got) != 1 {
		t.Fatalf("at 30 s: sent %d frames, want 1 time exceeded", len(got))
	}
	m := header.ICMPv4(parseIP(t, got[0]).ip.Payload())
	if m.Type() != header.ICMPv4TimeExceeded || m.Code() != header.ICMPv4ReassemblyTimeout {
		t.Errorf("at 30 s: ICMP type %d code %d, want 11 1", m.Type(), m.Code())
	}
	if want := first[header.EthernetMinimumSize : header.EthernetMinimumSize+28]; !bytes.Equal(m.Payload(), want) {
		t.Errorf("time exceeded quotes % x, want % x", m.Payload(), want)
	}
	tb.clock.Advance(30 * time.Second)
	tb.Tick() // the late last fragment alone: no fragment zero, no ICMP
	if n := len(tb.link.take()); n != 0 || tb.reasmMem != 0 {
		t.Errorf("second timeout without fragment zero: sent %d frames, %d bytes held, want 0, 0", n, tb.reasmMem)
	}
}

// Memory cap and datagram count cap: old datagrams make room for new ones.
func TestReassemblyLimits(t *testing.T) {
	tests := []struct {
		name        string
		memory, max int
		wantMem     uint64
		wantEvict   uint64
	}{
		// Each first fragment costs 256 + 1480 + 64 + 20 = 1820 bytes.
		{"memory cap", 4 * 1820, 64, 6, 0},
		{"count cap", 4 << 20, 4, 0, 6},
	}
	for _, tt := range tests {
		tb := newTestbed(t)
		l := DefaultLimits()
		l.ReassemblyMemory, l.MaxReassemblies = tt.memory, tt.max
		tb.SetLimits(l)
		for id := uint16(0); id < 10; id++ {
			tb.HandleFrame(frag(id, 0, true, make([]byte, 1480)))
			tb.clock.Advance(time.Millisecond)
			if tb.reasmMem > tt.memory || len(tb.reasm) > tt.max {
				t.Fatalf("%s: holding %d bytes in %d datagrams, limits %d, %d", tt.name, tb.reasmMem, len(tb.reasm), tt.memory, tt.max)
			}
		}
		c := tb.Counters()
		if c.ReassemblyMemoryDrops != tt.wantMem || c.ReassemblyEvictions != tt.wantEvict {
			t.Errorf("%s: Counters() ReassemblyMemoryDrops, ReassemblyEvictions = %d, %d, want %d, %d",
				tt.name, c.ReassemblyMemoryDrops, c.ReassemblyEvictions, tt.wantMem, tt.wantEvict)
		}
		// The newest datagram survived: completing it delivers it.
		tb.HandleFrame(frag(9, 1480, false, []byte("end")))
		if len(tb.udp.got) != 1 || len(tb.udp.got[0].payload) != 1483 {
			t.Errorf("%s: completing the newest datagram delivered %d datagrams, want 1 of 1483 bytes", tt.name, len(tb.udp.got))
		}
	}
}

// Output larger than the MTU: fragments at multiples of 8, one ID.
func TestOutputFragments(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	payload := make([]byte, 4000)
	for i := range payload {
		payload[i] = byte(i)
	}
	if err := tb.Output(header.ProtocolUDP, peerIP, payload); err != nil {
		t.Fatalf("Output(4000 bytes) = %v, want nil", err)
	}
	got := tb.link.take()
	if len(got) != 3 {
		t.Fatalf("Output(4000 bytes) sent %d frames, want 3", len(got))
	}
	wantOffsets := []int{0, 1480, 2960}
	for i, f := range got {
		if off := parseIP(t, f).ip.FragmentOffset(); off != wantOffsets[i] {
			t.Errorf("fragment %d offset = %d, want %d", i, off, wantOffsets[i])
		}
	}
	if _, p := reassembleSent(t, got); !bytes.Equal(p, payload) {
		t.Errorf("reassembled Output payload differs from the payload")
	}
}

// ICMP errors are rate-limited by a token bucket (RFC 1812 §4.3.2.8): a
// burst goes out, then the rate; the rest are counted, not sent.
func TestICMPErrorRateLimit(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	l := DefaultLimits()
	l.ICMPErrorRate, l.ICMPErrorBurst = 10, 5
	tb.SetLimits(l)
	offending := fromPeer(header.ProtocolUDP, 77, []byte("0123456789"))[header.EthernetMinimumSize:]
	send := func(n int) int {
		for range n {
			if err := tb.SendUnreachable(header.ICMPv4PortUnreachable, offending); err != nil {
				t.Fatalf("SendUnreachable() = %v", err)
			}
		}
		return len(tb.link.take())
	}
	if got := send(20); got != 5 {
		t.Fatalf("20 errors at once: %d sent, want the burst of 5", got)
	}
	tb.clock.Advance(300 * time.Millisecond) // 3 tokens at 10 a second
	if got := send(20); got != 3 {
		t.Fatalf("20 errors 300 ms later: %d sent, want 3", got)
	}
	tb.clock.Advance(10 * time.Second) // 100 tokens due; the bucket holds the burst
	if got := send(20); got != 5 {
		t.Fatalf("20 errors 10 s later: %d sent, want the burst of 5", got)
	}
	if c := tb.Counters(); c.ICMPUnreachableOut != 13 || c.ICMPErrorsRateLimited != 47 {
		t.Errorf("ICMPUnreachableOut %d, ICMPErrorsRateLimited %d; want 13, 47", c.ICMPUnreachableOut, c.ICMPErrorsRateLimited)
	}
}
