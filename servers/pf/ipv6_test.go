package pf

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
)

// ext is an IPv6 extension header naming next after it: Hop-by-Hop,
// Destination Options or Routing (type 2 here, not 0), of 8 bytes.
func ext(next uint8) []byte { return []byte{next, 0, 2, 0, 0, 0, 0, 0} }

// fragHeader is a Fragment header naming next, at offset bytes, with the
// M flag if more.
func fragHeader(next uint8, offset int, more bool, id uint32) []byte {
	b := []byte{next, 0, 0, 0, 0, 0, 0, 0}
	word := uint16(offset/8) << 3
	if more {
		word |= 1
	}
	binary.BigEndian.PutUint16(b[2:], word)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

// withExtensions is the IPv6 datagram d with the extension headers hdrs
// (each naming the next; the last naming d's upper layer) put between
// its fixed header and its payload; first is the Next Header of the
// fixed header.
func withExtensions(d []byte, first uint8, hdrs ...[]byte) []byte {
	h := header.IPv6(d)
	var payload []byte
	for _, x := range hdrs {
		payload = append(payload, x...)
	}
	payload = append(payload, h.Payload()...)
	return datagram6(first, h.HopLimit(), h.Src(), h.Dst(), payload)
}

func TestIPv6RulesMatchTheirFamily(t *testing.T) {
	w := newWire(t, 0, `set default block
pass in inet6 proto tcp to port 80 no state
pass in proto tcp from 192.0.2.0/24 to any port 22 no state
pass in proto tcp from 2001:db8:7::/48 to 2001:db8::2 port 23 no state
pass in proto tcp to any port 443 no state
pass in inet proto udp to any port 53 no state
`)
	syn6 := func(dport uint16) []byte {
		return seg{src: outside6, dst: inside6, sport: 40000, dport: dport, flags: syn}.bytes()
	}
	syn4 := func(dport uint16) []byte {
		return seg{src: outside, dst: inside, sport: 40000, dport: dport, flags: syn}.bytes()
	}
	w.pass(In, syn6(80), ReasonRule, "IPv6 to port 80, inet6 rule")
	w.block(In, syn4(80), ReasonDefault, "IPv4 to port 80, inet6 rule")
	w.pass(In, syn4(22), ReasonRule, "IPv4 to port 22 from 192.0.2.0/24")
	w.block(In, syn6(22), ReasonDefault, "IPv6 to port 22: an IPv4 prefix matches no IPv6 datagram")
	w.pass(In, syn6(23), ReasonRule, "IPv6 to port 23 from 2001:db8:7::/48")
	w.block(In, seg{src: other6, dst: inside6, sport: 1, dport: 23, flags: syn}.bytes(), ReasonDefault, "IPv6 from another prefix")
	w.pass(In, syn4(443), ReasonRule, "IPv4 to 443, any address")
	w.pass(In, syn6(443), ReasonRule, "IPv6 to 443, any address")
	w.pass(In, udp(outside, 1, inside, 53, 4), ReasonRule, "IPv4 DNS, inet rule")
	w.block(In, udp(outside6, 1, inside6, 53, 4), ReasonDefault, "IPv6 DNS, inet rule")
}

// TestIPv6Mapped: an IPv6 datagram whose addresses are IPv4-mapped is
// still IPv6: an IPv4 rule does not match it, and its flow is not the
// IPv4 flow of the same numbers.
func TestIPv6Mapped(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto udp from 10.0.0.2\n")
	mapped4, mappedOut := addrFrom(inside).netip(true), addrFrom(outside).netip(true)
	w.block(Out, udp(mapped4, 5000, mappedOut, 53, 4), ReasonDefault, "mapped addresses in IPv6")
	w.pass(Out, udp(inside, 5000, outside, 53, 4), ReasonRule, "the IPv4 query")
	w.block(In, udp(mappedOut, 53, mapped4, 5000, 4), ReasonDefault, "an IPv6 answer to the IPv4 query")
	w.pass(In, udp(outside, 53, inside, 5000, 4), ReasonState, "the IPv4 answer")
}

func TestIPv6TCPConnection(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out inet6 proto tcp\n")
	c := w.conn(inside6, 40000, outside6, 80, Out)
	c.cws, c.sws = 8, 8
	c.open()
	w.pass(Out, c.fromClient(ack, 100), ReasonState, "request")
	w.pass(In, c.fromServer(ack, 1400), ReasonState, "response")
	forged := seg{src: outside6, dst: inside6, sport: 80, dport: 40000, seq: c.sseq + 1<<30, flags: rst}.bytes()
	w.block(In, forged, ReasonBadWindow, "RST far out of window")
	w.pass(Out, c.fromClient(fin|ack, 0), ReasonState, "FIN")
	w.pass(In, c.fromServer(fin|ack, 0), ReasonState, "FIN back")
	w.pass(Out, c.fromClient(ack, 0), ReasonState, "last ACK")
	w.block(In, seg{src: outside6, dst: inside6, sport: 80, dport: 40001, flags: syn | ack}.bytes(), ReasonDefault, "SYN-ACK of no connection")
}

func TestICMPv6Echo(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto icmp6 icmp6-type echoreq\n")
	w.pass(Out, echo6(header.ICMPv6EchoRequest, inside6, outside6, 77, 1), ReasonRule, "ping")
	w.pass(In, echo6(header.ICMPv6EchoReply, outside6, inside6, 77, 1), ReasonState, "pong")
	w.block(In, echo6(header.ICMPv6EchoReply, outside6, inside6, 78, 1), ReasonDefault, "pong of another id")
	w.block(In, echo6(header.ICMPv6EchoRequest, outside6, inside6, 77, 1), ReasonDefault, "a ping the other way, same id")
	w.block(Out, echo(header.ICMPv4Echo, inside, outside, 77, 1), ReasonDefault, "an IPv4 ping: the rule is icmp6's")
	w.advance(DefaultTimeouts().ICMPFirst)
	w.block(In, echo6(header.ICMPv6EchoReply, outside6, inside6, 77, 2), ReasonDefault, "pong after icmp.first")
}

// TestICMPv6Errors: an ICMPv6 error quoting a tracked flow passes; one
// quoting anything else is left to the rules.
func TestICMPv6Errors(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out inet6 proto udp\npass out inet6 proto tcp\npass out proto icmp6 icmp6-type echoreq\n")
	q := udp(inside6, 5000, outside6, 53, 1)
	w.pass(Out, q, ReasonRule, "query")
	w.pass(In, icmp6Error(header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, outside6, inside6, q), ReasonRelated, "port unreachable")
	w.pass(In, icmp6Error(header.ICMPv6TimeExceeded, 0, router6, inside6, q), ReasonRelated, "time exceeded from a router")
	w.block(In, icmp6Error(header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, outside6, inside6, udp(inside6, 5001, outside6, 53, 1)),
		ReasonDefault, "error quoting an untracked flow")
	w.block(In, icmp6Error(header.ICMPv6DstUnreachable, 0, outside6, other6, q), ReasonDefault, "error addressed to another host")
	w.block(In, icmpError(header.ICMPv4DstUnreachable, 3, outside, inside, udp(inside, 5000, outside, 53, 1)), ReasonDefault,
		"an IPv4 error quoting the IPv4 flow of the same numbers")

	c := w.conn(inside6, 40000, outside6, 80, Out)
	c.open()
	sent := c.fromClient(ack, 1400)
	w.pass(Out, sent, ReasonState, "data")
	w.pass(In, icmp6Error(header.ICMPv6PacketTooBig, 0, router6, inside6, sent), ReasonRelated, "packet too big for the data")
	dst := withExtensions(sent, header.ProtocolIPv6DstOpts, ext(header.ProtocolTCP))
	w.pass(In, icmp6Error(header.ICMPv6ParamProblem, 0, router6, inside6, dst), ReasonRelated, "an error quoting extension headers")
	forged := seg{src: inside6, dst: outside6, sport: 40000, dport: 80, seq: c.cseq + 1<<30, flags: ack}.bytes()
	w.block(In, icmp6Error(header.ICMPv6DstUnreachable, 0, router6, inside6, forged), ReasonBadWindow, "error quoting a sequence number far out of window")

	ping := echo6(header.ICMPv6EchoRequest, inside6, outside6, 9, 1)
	w.pass(Out, ping, ReasonRule, "ping")
	w.pass(In, icmp6Error(header.ICMPv6DstUnreachable, 3, router6, inside6, ping), ReasonRelated, "address unreachable for the ping")
	w.advance(DefaultTimeouts().ICMPError)
	w.block(In, echo6(header.ICMPv6EchoReply, outside6, inside6, 9, 1), ReasonDefault, "a late reply: icmp.error ended the state")

	if c := w.f.Counters(); c.ICMPErrors != 5 || c.BadWindow != 1 {
		t.Errorf("counters %+v, want 5 ICMP errors passed, 1 bad window", c)
	}
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	w := newWire(t, 0, "set default block\npass in proto tcp to any port 80 no state\n")
	s := seg{src: outside6, dst: inside6, sport: 1, dport: 80, flags: syn}.bytes()
	s81 := seg{src: outside6, dst: inside6, sport: 1, dport: 81, flags: syn}.bytes()
	const hbh, dst, rt, fr = header.ProtocolIPv6HopByHop, header.ProtocolIPv6DstOpts, header.ProtocolIPv6Routing, header.ProtocolIPv6Fragment
	const tcp = header.ProtocolTCP
	w.pass(In, withExtensions(s, hbh, ext(dst), ext(rt), ext(tcp)), ReasonRule, "hop-by-hop, destination options, routing, then TCP to 80")
	w.block(In, withExtensions(s81, hbh, ext(tcp)), ReasonDefault, "hop-by-hop, then TCP to 81")
	w.pass(In, withExtensions(s, fr, fragHeader(tcp, 0, false, 5)), ReasonRule, "an atomic fragment is whole")

	eight := [][]byte{}
	for range 7 {
		eight = append(eight, ext(dst))
	}
	eight = append(eight, ext(tcp))
	w.pass(In, withExtensions(s, dst, eight...), ReasonRule, "eight headers")
	nine := append([][]byte{ext(dst)}, eight...)
	routing0 := ext(tcp)
	routing0[2] = 0
	cut := withExtensions(s, dst, ext(tcp))
	cut[header.IPv6MinimumSize+1] = 200 // the header claims 1608 bytes
	for what, b := range map[string][]byte{
		"nine headers":                 withExtensions(s, dst, nine...),
		"hop-by-hop after another":     withExtensions(s, dst, ext(hbh), ext(tcp)),
		"routing type 0":               withExtensions(s, rt, routing0),
		"a header past the end":        cut,
		"two fragment headers":         withExtensions(s, fr, fragHeader(fr, 0, true, 1), fragHeader(tcp, 0, true, 2)),
		"first fragment without TCP's": datagram6(fr, 64, outside6, inside6, append(fragHeader(tcp, 0, true, 3), s[header.IPv6MinimumSize:][:8]...)),
		"fixed header cut":             s[:39],
		"payload length past the end":  s[:len(s)-1],
	} {
		w.block(In, b, ReasonMalformed, what)
	}
}

func TestIPv6Fragments(t *testing.T) {
	w := newWire(t, 0, "set default block\npass in proto udp to any port 53 no state\n")
	payload := make([]byte, 48)
	header.UDP(payload).Encode(&header.UDPFields{SrcPort: 1000, DstPort: 53, Length: 48})
	frag := func(id uint32, off int, more bool, b []byte) []byte {
		return datagram6(header.ProtocolIPv6Fragment, 64, outside6, inside6, append(fragHeader(header.ProtocolUDP, off, more, id), b...))
	}
	w.pass(In, frag(1, 0, true, payload[:24]), ReasonRule, "first fragment to port 53")
	w.pass(In, frag(1, 24, false, payload[24:]), ReasonFragment, "its second fragment")
	w.block(In, frag(2, 24, false, payload[24:]), ReasonFragment, "a later fragment whose first never passed")
	later4 := datagram(header.ProtocolUDP, outside, inside, payload[24:])
	header.IPv4(later4).SetID(1)
	header.IPv4(later4).SetFlagsFragmentOffset(0, 24)
	w.block(In, later4, ReasonFragment, "an IPv4 fragment of the same identification")

	header.UDP(payload).SetDstPort(54)
	w.block(In, frag(3, 0, true, payload[:24]), ReasonDefault, "first fragment to port 54")
	w.block(In, frag(3, 24, false, payload[24:]), ReasonFragment, "its second fragment")
	w.advance(fragmentTimeout)
	w.block(In, frag(1, 24, false, payload[24:]), ReasonFragment, "a fragment of datagram 1 after the timeout")
	if c := w.f.Counters(); c.FragmentsPassed != 1 || c.FragmentsLost != 4 {
		t.Errorf("counters %+v, want 1 fragment passed, 4 lost", c)
	}
}

// TestNeighborDiscoveryPasses: under "set default block" and no ICMPv6
// rule, ND and MLD on the link pass both ways; the same messages from
// beyond the link (a hop limit a router lowered), and the rest of
// ICMPv6, do not.
func TestNeighborDiscoveryPasses(t *testing.T) {
	w := newWire(t, 0, "set default block\n")
	nd := func(typ header.ICMPv6Type, hops uint8, src, dst string) []byte {
		return datagram6(header.ProtocolICMPv6, hops, mustAddr(src), mustAddr(dst), icmp6(typ, 0, 0, make([]byte, 16)))
	}
	for _, dir := range []Dir{In, Out} {
		w.pass(dir, nd(header.ICMPv6NeighborSolic, 255, "::", "ff02::1:ff00:2"), ReasonND, "DAD's solicitation")
		w.pass(dir, nd(header.ICMPv6NeighborSolic, 255, "fe80::1", "ff02::1:ff00:2"), ReasonND, "neighbour solicitation")
		w.pass(dir, nd(header.ICMPv6NeighborAdvert, 255, "2001:db8::2", "fe80::1"), ReasonND, "neighbour advertisement")
		w.pass(dir, nd(header.ICMPv6RouterSolicit, 255, "fe80::2", "ff02::2"), ReasonND, "router solicitation")
		w.pass(dir, nd(header.ICMPv6RouterAdvert, 255, "fe80::1", "ff02::1"), ReasonND, "router advertisement")
		w.pass(dir, nd(header.ICMPv6MLDv2Report, 1, "fe80::2", "ff02::16"), ReasonND, "MLDv2 report")
		w.pass(dir, nd(header.ICMPv6MLDv2Report, 1, "::", "ff02::16"), ReasonND, "MLDv2 report before an address")
		w.pass(dir, nd(header.ICMPv6MLDQuery, 1, "fe80::1", "ff02::1"), ReasonND, "MLD query")

		w.block(dir, nd(header.ICMPv6NeighborSolic, 254, "2001:db8:7::7", "2001:db8::2"), ReasonDefault, "a solicitation a router forwarded")
		w.block(dir, nd(header.ICMPv6RouterAdvert, 64, "fe80::1", "ff02::1"), ReasonDefault, "an advertisement with hop limit 64")
		w.block(dir, nd(header.ICMPv6MLDv2Report, 1, "2001:db8::2", "ff02::16"), ReasonDefault, "MLD from a global address")
		w.block(dir, nd(header.ICMPv6MLDv2Report, 2, "fe80::2", "ff02::16"), ReasonDefault, "MLD with hop limit 2")
		w.block(dir, nd(header.ICMPv6Redirect, 255, "fe80::1", "2001:db8::2"), ReasonDefault, "a redirect")
		w.block(dir, nd(header.ICMPv6EchoRequest, 255, "fe80::1", "fe80::2"), ReasonDefault, "an echo request with hop limit 255")
	}
	frag := datagram6(header.ProtocolIPv6Fragment, 255, mustAddr("fe80::1"), mustAddr("ff02::1"),
		append(fragHeader(header.ProtocolICMPv6, 0, true, 1), icmp6(header.ICMPv6RouterAdvert, 0, 0, make([]byte, 16))...))
	w.block(In, frag, ReasonDefault, "a fragmented router advertisement (RFC 6980)")
	if c := w.f.Counters(); c.NDPassed != 16 {
		t.Errorf("NDPassed = %d, want 16", c.NDPassed)
	}
}

// TestIPv6StatesSurviveCrash: IPv6 states are adopted from kept memory
// like IPv4 ones, beside them, and listed readably.
func TestIPv6StatesSurviveCrash(t *testing.T) {
	const maxStates = 16
	mem := make([]byte, MemBytes(maxStates))
	w := &wire{t: t, now: epoch}
	w.restart(mem, maxStates)
	c6 := w.conn(inside6, 40001, outside6, 80, Out)
	c4 := w.conn(inside, 40001, outside, 80, Out)
	for _, c := range []*conn{c6, c4} {
		c.open()
		w.pass(Out, c.fromClient(ack, 100), ReasonState, "request")
		w.pass(In, c.fromServer(ack, 1000), ReasonState, "response")
	}
	w.pass(Out, udp(inside6, 5000, outside6, 53, 30), ReasonRule, "DNS query over IPv6")

	w.restart(mem, maxStates) // pf crashed
	if c := w.f.Counters(); c.Adopted != 3 || c.Discarded != 0 {
		t.Fatalf("Adopted %d, Discarded %d; want 3, 0", c.Adopted, c.Discarded)
	}
	for _, c := range []*conn{c6, c4} {
		w.pass(In, c.fromServer(ack, 1000), ReasonState, "response after the crash")
		w.pass(Out, c.fromClient(ack, 0), ReasonState, "its ACK")
	}
	w.pass(In, udp(outside6, 53, inside6, 5000, 70), ReasonState, "DNS answer after the crash")
	w.block(In, udp(outside, 53, inside, 5000, 70), ReasonDefault, "the IPv4 answer of the same numbers")

	var lines []string
	for _, s := range w.f.States(w.now, -1) {
		lines = append(lines, s.String())
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"tcp out [2001:db8::2]:40001 -> [2001:db8:7::7]:80 ESTABLISHED:ESTABLISHED",
		"tcp out 10.0.0.2:40001 -> 192.0.2.7:80 ESTABLISHED:ESTABLISHED",
		"udp out [2001:db8::2]:5000 -> [2001:db8:7::7]:53 SINGLE:SINGLE",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("states:\n%s\nwant a line starting %q", all, want)
		}
	}
}

// TestOldKeptFormatStartsAfresh: memory a pf of the first layout (IPv4
// addresses only) set up is not adopted: the new pf starts empty.
func TestOldKeptFormatStartsAfresh(t *testing.T) {
	mem := make([]byte, MemBytes(8))
	w := &wire{t: t, now: epoch}
	w.restart(mem, 8)
	w.conn(inside, 40000, outside, 80, Out).open()
	binary.LittleEndian.PutUint32(mem[hdrVersion:], 1)
	binary.LittleEndian.PutUint32(mem[hdrCRC:], crc32Header(mem))
	w.restart(mem, 8)
	if c := w.f.Counters(); c.Adopted != 0 || c.Discarded != 0 || w.f.NumStates() != 0 {
		t.Errorf("counters %+v, %d states; want a fresh table", c, w.f.NumStates())
	}
}

// TestIPv6EstablishedPathAllocatesNothing is TestEstablishedPathAllocatesNothing
// over IPv6.
func TestIPv6EstablishedPathAllocatesNothing(t *testing.T) {
	w, data, reply := established6(t)
	if n := testing.AllocsPerRun(1000, func() {
		w.f.Verdict(Out, "e1000.0", data, w.now)
		w.f.Verdict(In, "e1000.0", reply, w.now)
	}); n != 0 {
		t.Errorf("established path: %v allocations per run, want 0", n)
	}
	if v := w.f.Verdict(Out, "e1000.0", data, w.now); !v.Pass || v.Reason != ReasonState {
		t.Errorf("data: %+v, want pass by state", v)
	}
}

func established6(t *testing.T) (w *wire, data, reply []byte) {
	w = newWire(t, 1024, "set default block\npass out proto tcp\n")
	c := w.conn(inside6, 40000, outside6, 80, Out)
	c.open()
	data = c.fromClient(ack, 1400)
	reply = c.fromServer(ack, 0)
	w.pass(Out, data, ReasonState, "data")
	w.pass(In, reply, ReasonState, "ACK")
	return w, data, reply
}

// BenchmarkEstablished6 is BenchmarkEstablished over IPv6.
func BenchmarkEstablished6(b *testing.B) {
	w, data, reply := established6(&testing.T{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			w.f.Verdict(Out, "e1000.0", data, w.now)
		} else {
			w.f.Verdict(In, "e1000.0", reply, w.now)
		}
	}
}

// FuzzPacket6: any bytes after an IPv6 version nibble parse without a
// panic, into a packet whose transport fields come from inside the
// datagram; and the Filter judges them without breaking.
func FuzzPacket6(f *testing.F) {
	s := seg{src: outside6, dst: inside6, sport: 1, dport: 80, flags: syn}.bytes()
	f.Add(s)
	f.Add(withExtensions(s, header.ProtocolIPv6HopByHop, ext(header.ProtocolIPv6Fragment), fragHeader(header.ProtocolTCP, 0, true, 9)))
	f.Add(datagram6(header.ProtocolIPv6Fragment, 64, outside6, inside6, append(fragHeader(header.ProtocolUDP, 24, false, 1), 1, 2, 3)))
	f.Add(icmp6Error(header.ICMPv6PacketTooBig, 0, router6, inside6, s))
	f.Add(echo6(header.ICMPv6EchoRequest, inside6, outside6, 1, 1))
	f.Add(datagram6(header.ProtocolICMPv6, 255, router6, inside6, icmp6(header.ICMPv6RouterAdvert, 0, 0, make([]byte, 8))))
	w := newWire(&testing.T{}, 8, "pass out all\npass in inet6 proto udp\npass in proto icmp6 icmp6-type echoreq\n")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 {
			b[0] = b[0]&0x0f | header.IPv6Version<<4
		}
		var p packet
		if p.parse(b) == wellFormed && (!p.v6 || p.length > len(b)) {
			t.Fatalf("parse(%x) = well formed, v6 %v, length %d of %d", b, p.v6, p.length, len(b))
		}
		w.f.Verdict(In, "e1000.0", b, w.now)
		w.f.Verdict(Out, "e1000.0", b, w.now)
		w.advance(time.Second)
		if len(w.f.index)+len(w.f.free) != len(w.f.states) {
			t.Fatalf("%d indexed, %d free of %d", len(w.f.index), len(w.f.free), len(w.f.states))
		}
	})
}
