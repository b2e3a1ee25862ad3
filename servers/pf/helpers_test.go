package pf

import (
	"net/netip"
	"testing"
	"time"

	"keepnet/servers/header"
)

// The hosts of the tests: keepnet's own address, a host on its inside
// network, and hosts outside.
var (
	inside  = netip.MustParseAddr("10.0.0.2")
	outside = netip.MustParseAddr("192.0.2.7")
	other   = netip.MustParseAddr("198.51.100.9")
	router  = netip.MustParseAddr("203.0.113.1")
)

// The same hosts' IPv6 addresses, and a router's link-local one.
var (
	inside6  = netip.MustParseAddr("2001:db8::2")
	outside6 = netip.MustParseAddr("2001:db8:7::7")
	other6   = netip.MustParseAddr("2001:db8:9::9")
	router6  = netip.MustParseAddr("fe80::1")
)

// epoch is the fake clock's start.
var epoch = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// datagram is an IPv4 datagram of proto from src to dst around payload,
// or an IPv6 one if the addresses are IPv6 ones.
func datagram(proto uint8, src, dst netip.Addr, payload []byte) []byte {
	if src.Is6() {
		return datagram6(proto, 64, src, dst, payload)
	}
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	header.IPv4(b).Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)), ID: 0x4242, TTL: 64, Protocol: proto, Src: src, Dst: dst,
	})
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

// datagram6 is an IPv6 datagram with hop limit hops whose payload (next
// header proto) is payload: extension headers and all.
func datagram6(proto, hops uint8, src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength: uint16(len(payload)), NextHeader: proto, HopLimit: hops, Src: src, Dst: dst,
	})
	copy(b[header.IPv6MinimumSize:], payload)
	return b
}

// seg describes a TCP segment.
type seg struct {
	src, dst     netip.Addr
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	win          uint16
	data         int  // payload bytes
	wscale       int8 // a SYN's window scale option; 0 for none, else shift+1
}

const (
	syn = header.TCPFlagSYN
	ack = header.TCPFlagACK
	fin = header.TCPFlagFIN
	rst = header.TCPFlagRST
)

func (s seg) bytes() []byte {
	var opts []byte
	if s.wscale != 0 {
		opts = []byte{header.TCPOptionNOP, header.TCPOptionWindowScale, 3, byte(s.wscale - 1)}
	}
	b := make([]byte, header.TCPMinimumSize+len(opts)+s.data)
	win := s.win
	if win == 0 && s.flags&rst == 0 {
		win = 65535
	}
	header.TCP(b).Encode(&header.TCPFields{
		SrcPort: s.sport, DstPort: s.dport, Seq: s.seq, Ack: s.ack, Flags: s.flags, Window: win, Options: opts,
	})
	t := header.TCP(b)
	t.SetChecksum(t.ComputeChecksum(s.src, s.dst))
	return datagram(header.ProtocolTCP, s.src, s.dst, b)
}

// udp is a UDP datagram of n payload bytes.
func udp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, n int) []byte {
	b := make([]byte, header.UDPMinimumSize+n)
	header.UDP(b).Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(b))})
	return datagram(header.ProtocolUDP, src, dst, b)
}

// echo6 is an ICMPv6 echo request or reply.
func echo6(typ header.ICMPv6Type, src, dst netip.Addr, id, seq uint16) []byte {
	return datagram6(header.ProtocolICMPv6, 64, src, dst, icmp6(typ, 0, uint32(id)<<16|uint32(seq), make([]byte, 16)))
}

// icmp6 is an ICMPv6 message (checksum left zero: pf does not check it).
func icmp6(typ header.ICMPv6Type, code uint8, word uint32, body []byte) []byte {
	b := make([]byte, header.ICMPv6MinimumSize+len(body))
	m := header.ICMPv6(b)
	m.SetType(typ)
	m.SetCode(code)
	m.SetWord(word)
	copy(m.Body(), body)
	return b
}

// icmp6Error is an ICMPv6 error from src to dst quoting the datagram
// offending, as much of it as RFC 4443 lets fit.
func icmp6Error(typ header.ICMPv6Type, code uint8, src, dst netip.Addr, offending []byte) []byte {
	q := offending[:min(len(offending), header.ICMPv6ErrorMaxSize-header.ICMPv6MinimumSize)]
	return datagram6(header.ProtocolICMPv6, 64, src, dst, icmp6(typ, code, 0, q))
}

// echo is an ICMP echo request or reply.
func echo(typ header.ICMPv4Type, src, dst netip.Addr, id, seq uint16) []byte {
	b := make([]byte, header.ICMPv4MinimumSize+16)
	header.ICMPv4(b).Encode(&header.ICMPv4Fields{Type: typ, Rest: uint32(id)<<16 | uint32(seq)})
	return datagram(header.ProtocolICMP, src, dst, b)
}

// icmpError is an ICMP error from src to dst quoting the datagram
// offending, as RFC 792 says: its IP header and 8 bytes more.
func icmpError(typ header.ICMPv4Type, code uint8, src, dst netip.Addr, offending []byte) []byte {
	q := offending[:header.IPv4(offending).HeaderLength()+8]
	b := make([]byte, header.ICMPv4MinimumSize+len(q))
	copy(b[header.ICMPv4MinimumSize:], q)
	header.ICMPv4(b).Encode(&header.ICMPv4Fields{Type: typ, Code: code})
	return datagram(header.ProtocolICMP, src, dst, b)
}

// wire plays packets through a Filter on a fake clock.
type wire struct {
	t   *testing.T
	f   *Filter
	now time.Time
}

// newWire makes a Filter of maxStates states (0: a small default) with
// rules.
func newWire(t *testing.T, maxStates int, rules string) *wire {
	t.Helper()
	if maxStates == 0 {
		maxStates = 64
	}
	f, err := New(nil, Config{MaxStates: maxStates, Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.LoadText(rules); err != nil {
		t.Fatal(err)
	}
	return &wire{t: t, f: f, now: epoch}
}

func (w *wire) advance(d time.Duration) { w.now = w.now.Add(d) }

func (w *wire) verdict(dir Dir, iface string, b []byte) Verdict {
	return w.f.Verdict(dir, iface, b, w.now)
}

// pass asserts that b, going dir on e1000.0, passes for reason why.
func (w *wire) pass(dir Dir, b []byte, why Reason, what string) {
	w.t.Helper()
	if v := w.verdict(dir, "e1000.0", b); !v.Pass || v.Reason != why {
		w.t.Errorf("%s (%v): verdict %+v, want pass by %v", what, dir, v, why)
	}
}

// block asserts that b, going dir on e1000.0, is blocked for reason why.
func (w *wire) block(dir Dir, b []byte, why Reason, what string) {
	w.t.Helper()
	if v := w.verdict(dir, "e1000.0", b); v.Pass || v.Reason != why {
		w.t.Errorf("%s (%v): verdict %+v, want block by %v", what, dir, v, why)
	}
}

// conn is a TCP connection's two sides as the tests drive them: the
// client's and server's next sequence numbers.
type conn struct {
	w              *wire
	client, server netip.Addr
	cport, sport   uint16
	cseq, sseq     uint32
	// dir is the way the client's segments cross the filter.
	dir Dir
	// cwin and swin are the windows each side advertises (0: 65535);
	// cws and sws their SYNs' window scale options (0: none, else
	// shift+1).
	cwin, swin uint16
	cws, sws   int8
}

// fromClient is a segment from the client carrying n bytes; it advances
// the client's sequence number.
func (c *conn) fromClient(flags uint8, n int) []byte {
	s := seg{src: c.client, dst: c.server, sport: c.cport, dport: c.sport, seq: c.cseq, ack: c.sseq, flags: flags, data: n, win: c.cwin}
	if flags&syn != 0 {
		s.wscale = c.cws
	}
	c.cseq += uint32(n)
	if flags&(syn|fin) != 0 {
		c.cseq++
	}
	return s.bytes()
}

func (c *conn) fromServer(flags uint8, n int) []byte {
	s := seg{src: c.server, dst: c.client, sport: c.sport, dport: c.cport, seq: c.sseq, ack: c.cseq, flags: flags, data: n, win: c.swin}
	if flags&syn != 0 {
		s.wscale = c.sws
	}
	c.sseq += uint32(n)
	if flags&(syn|fin) != 0 {
		c.sseq++
	}
	return s.bytes()
}

// open plays a three-way handshake; each segment must pass.
func (c *conn) open() {
	c.w.t.Helper()
	c.w.pass(c.dir, c.fromClient(syn, 0), ReasonRule, "SYN")
	c.w.pass(c.dir.reverse(), c.fromServer(syn|ack, 0), ReasonState, "SYN-ACK")
	c.w.pass(c.dir, c.fromClient(ack, 0), ReasonState, "ACK")
}

func (w *wire) conn(client netip.Addr, cport uint16, server netip.Addr, sport uint16, dir Dir) *conn {
	return &conn{w: w, client: client, server: server, cport: cport, sport: sport, cseq: 1000, sseq: 500000, dir: dir}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
