package itest

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/servers/header"
)

// TestHelperRawFrames is not a test of its own: TestKeepnetMalformedFrames
// runs the test binary inside its namespace with RAW_* set, and this sends
// the malformed frames from a raw socket on the tap device.
func TestHelperRawFrames(t *testing.T) {
	iface := os.Getenv("RAW_IFACE")
	if iface == "" {
		return // run only as the helper
	}
	dstMAC, err := net.ParseMAC(os.Getenv("RAW_DST_MAC"))
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr(os.Getenv("RAW_SRC_IP"))
	dst := netip.MustParseAddr(os.Getenv("RAW_DST_IP"))
	rounds, _ := strconv.Atoi(os.Getenv("RAW_ROUNDS"))
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	addr := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
	copy(addr.Addr[:], dstMAC)
	var us header.MAC
	copy(us[:], ifi.HardwareAddr)
	var them header.MAC
	copy(them[:], dstMAC)

	sent := 0
	send := func(f []byte) {
		if err := unix.Sendto(fd, f, 0, addr); err != nil {
			t.Fatalf("sendto: %v", err)
		}
		sent++
	}
	eth := func(to header.MAC, typ header.EtherType, payload []byte) []byte {
		f := make([]byte, header.EthernetMinimumSize+len(payload))
		header.Ethernet(f).Encode(&header.EthernetFields{Dst: to, Src: us, Type: typ})
		copy(f[header.EthernetMinimumSize:], payload)
		return f
	}
	// A valid ICMP echo request datagram with id, to be broken below.
	echo := func(id uint16, payload int) []byte {
		p := make([]byte, 20+8+payload)
		ic := header.ICMPv4(p[20:])
		ic.Encode(&header.ICMPv4Fields{Type: header.ICMPv4Echo, Rest: uint32(id)<<16 | 1})
		ic.SetChecksum(^ic.ComputeChecksum())
		header.IPv4(p).Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), ID: id, TTL: 64, Protocol: header.ProtocolICMP, Src: src, Dst: dst})
		return p
	}
	if os.Getenv("RAW_KIND") == "syn" {
		sendSYNs(t, send, eth, them, src, dst, rounds)
		t.Logf("sent %d SYNs and bad TCP segments", sent)
		return
	}
	if os.Getenv("RAW_KIND") == "ipv6" {
		sendBadIPv6(t, send, eth, them, us, src, dst, rounds)
		t.Logf("sent %d malformed IPv6 datagrams and router advertisements", sent)
		return
	}
	if os.Getenv("RAW_KIND") == "udp" {
		sendBadUDP(t, send, eth, them, src, dst, rounds)
		t.Logf("sent %d malformed UDP datagrams", sent)
		return
	}
	for i := 0; i < rounds; i++ {
		id := uint16(1000 + i)

		p := echo(id, 32) // bad header checksum
		header.IPv4(p).SetChecksum(header.IPv4(p).Checksum() ^ 0x5a5a)
		send(eth(them, header.EtherTypeIPv4, p))

		send(eth(them, header.EtherTypeIPv4, echo(id, 32)[:12])) // truncated header

		p = echo(id, 32) // IHL 3
		p[0] = 0x43
		fixIPChecksum(p)
		send(eth(them, header.EtherTypeIPv4, p))

		p = echo(id, 32) // total length past the frame
		header.IPv4(p).SetTotalLength(1400)
		fixIPChecksum(p)
		send(eth(them, header.EtherTypeIPv4, p))

		p = echo(id, 32) // ping of death: the last fragment ends past 65535
		header.IPv4(p).SetFlagsFragmentOffset(0, 65528)
		fixIPChecksum(p)
		send(eth(them, header.EtherTypeIPv4, p))

		p = echo(id, 32) // version 6 in an IPv4 frame
		p[0] = 0x65
		fixIPChecksum(p)
		send(eth(them, header.EtherTypeIPv4, p))

		p = echo(id, 32) // bad ICMP checksum
		p[22] ^= 0xff
		send(eth(them, header.EtherTypeIPv4, p))

		// Overlapping fragments: [0,24) with MF, then [16,40).
		big := echo(id, 64)
		f1 := append([]byte(nil), big[:20+24]...)
		header.IPv4(f1).SetTotalLength(uint16(len(f1)))
		header.IPv4(f1).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
		fixIPChecksum(f1)
		f2 := append(append([]byte(nil), big[:20]...), big[20+16:20+40]...)
		header.IPv4(f2).SetTotalLength(uint16(len(f2)))
		header.IPv4(f2).SetFlagsFragmentOffset(0, 16)
		fixIPChecksum(f2)
		send(eth(them, header.EtherTypeIPv4, f1))
		send(eth(them, header.EtherTypeIPv4, f2))

		// ARP for somebody else on the link.
		arp := make([]byte, header.ARPSize)
		header.ARP(arp).Encode(&header.ARPFields{Op: header.ARPRequest, SenderMAC: us, SenderIP: src,
			TargetIP: netip.AddrFrom4([4]byte{dst.As4()[0], dst.As4()[1], dst.As4()[2], 200})})
		send(eth(header.BroadcastMAC, header.EtherTypeARP, arp))

		// A valid echo request for another MAC.
		send(eth(header.MAC{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}, header.EtherTypeIPv4, echo(id, 32)))

		// Paced, so that the emulated NIC can keep up: this tests what the
		// stack does with bad frames, not how many a flood loses.
		time.Sleep(4 * time.Millisecond)
	}
	t.Logf("sent %d malformed or foreign frames", sent)
}

func fixIPChecksum(p []byte) {
	h := header.IPv4(p)
	h.SetChecksum(0)
	hl := int(p[0]&0xf) * 4
	if hl < 20 || hl > len(p) {
		hl = 20
	}
	h.SetChecksum(^header.Checksum(p[:hl], 0))
}

// sendBadUDP sends, rounds times each, UDP datagrams to port 7 with a bad
// checksum, with a header cut short, and with a length past the IP payload.
func sendBadUDP(t *testing.T, send func([]byte), eth func(header.MAC, header.EtherType, []byte) []byte, them header.MAC, src, dst netip.Addr, rounds int) {
	udp := func(id uint16, payload []byte) []byte {
		p := make([]byte, 20+8+len(payload))
		u := header.UDP(p[20:])
		u.Encode(&header.UDPFields{SrcPort: 40000, DstPort: 7, Length: uint16(8 + len(payload))})
		copy(p[28:], payload)
		u.SetChecksum(u.ComputeChecksum(src, dst))
		header.IPv4(p).Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), ID: id, TTL: 64, Protocol: header.ProtocolUDP, Src: src, Dst: dst})
		return p
	}
	for i := 0; i < rounds; i++ {
		id := uint16(2000 + i)
		p := udp(id, []byte("bad checksum"))
		p[26] ^= 0x55
		send(eth(them, header.EtherTypeIPv4, p))

		p = udp(id, nil)[:24] // 4 bytes of UDP header
		header.IPv4(p).SetTotalLength(24)
		fixIPChecksum(p)
		send(eth(them, header.EtherTypeIPv4, p))

		p = udp(id, []byte("long"))
		header.UDP(p[20:]).SetLength(200) // past the IP payload
		send(eth(them, header.EtherTypeIPv4, p))
		time.Sleep(2 * time.Millisecond)
	}
}

// sendSYNs sends rounds SYNs to port 80 from addresses of the namespace's
// subnet that nobody holds (their SYN-ACKs go nowhere), then rounds each of
// TCP segments with a bad checksum, a bad data offset and a bogus option.
func sendSYNs(t *testing.T, send func([]byte), eth func(header.MAC, header.EtherType, []byte) []byte, them header.MAC, src, dst netip.Addr, rounds int) {
	seg := func(from netip.Addr, port uint16, opts []byte) []byte {
		p := make([]byte, 20+20+len(opts))
		tcp := header.TCP(p[20:])
		tcp.Encode(&header.TCPFields{SrcPort: port, DstPort: 80, Seq: uint32(port) * 7919, Flags: header.TCPFlagSYN, Window: 65535, Options: opts})
		tcp.SetChecksum(tcp.ComputeChecksum(from, dst))
		header.IPv4(p).Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), ID: port, TTL: 64, Protocol: header.ProtocolTCP, Src: from, Dst: dst})
		return p
	}
	base := src.As4()
	for i := 0; i < rounds; i++ {
		from := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(100 + i%100)})
		send(eth(them, header.EtherTypeIPv4, seg(from, uint16(10000+i%50000), nil)))
		if i%16 == 15 {
			time.Sleep(time.Millisecond) // a flood, but not one the host's tap queue drops
		}
	}
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < rounds/100; i++ {
		p := seg(src, uint16(60000+i%1000), nil)
		p[36] ^= 0x5a // checksum
		send(eth(them, header.EtherTypeIPv4, p))
		p = seg(src, uint16(60000+i%1000), nil)
		p[32] = 0xf0 // data offset 60 bytes, past the segment
		fixTCPChecksum(p, src, dst)
		send(eth(them, header.EtherTypeIPv4, p))
		p = seg(src, uint16(60000+i%1000), []byte{2, 9, 0, 0}) // an MSS option of length 9
		send(eth(them, header.EtherTypeIPv4, p))
		time.Sleep(time.Millisecond)
	}
}

func fixTCPChecksum(p []byte, src, dst netip.Addr) {
	tcp := header.TCP(p[20:])
	tcp.SetChecksum(0)
	tcp.SetChecksum(tcp.ComputeChecksum(src, dst))
}

// sendBadIPv6 sends, each round, IPv6 datagrams RFC 8200, 4443 and 4861
// say to refuse — bad extension chains, tiny and overlapping fragments,
// Neighbor Discovery with bad options or from off the link — and 20
// router advertisements from new routers with new prefixes (a flood that
// must not grow the appliance's state without end).
func sendBadIPv6(t *testing.T, send func([]byte), eth func(header.MAC, header.EtherType, []byte) []byte, them, us header.MAC, src, dst netip.Addr, rounds int) {
	ip6 := func(s, d netip.Addr, next, hops uint8, payload []byte) []byte {
		b := make([]byte, header.IPv6MinimumSize+len(payload))
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)), NextHeader: next, HopLimit: hops, Src: s, Dst: d})
		copy(b[header.IPv6MinimumSize:], payload)
		return b
	}
	echo := func(s, d netip.Addr, id uint16, n int) []byte {
		m := header.ICMPv6(make([]byte, header.ICMPv6MinimumSize+n))
		m.SetType(header.ICMPv6EchoRequest)
		m.SetIdent(id)
		m.SetChecksumFor(s, d)
		return m
	}
	allNodes := netip.MustParseAddr("ff02::1")
	for i := 0; i < rounds; i++ {
		id := uint16(2000 + i)
		e := echo(src, dst, id, 32)
		// Hop-by-Hop after a Destination Options header.
		chain := append([]byte{header.ProtocolIPv6HopByHop, 0, 1, 4, 0, 0, 0, 0, header.ProtocolICMPv6, 0, 1, 4, 0, 0, 0, 0}, e...)
		send(eth(them, header.EtherTypeIPv6, ip6(src, dst, header.ProtocolIPv6DstOpts, 64, chain)))
		// Nine Destination Options headers in a row.
		var nine []byte
		for j := 0; j < 9; j++ {
			next := uint8(header.ProtocolIPv6DstOpts)
			if j == 8 {
				next = header.ProtocolICMPv6
			}
			nine = append(nine, next, 0, 1, 4, 0, 0, 0, 0)
		}
		send(eth(them, header.EtherTypeIPv6, ip6(src, dst, header.ProtocolIPv6DstOpts, 64, append(nine, e...))))
		// An unknown option that asks for a parameter problem.
		send(eth(them, header.EtherTypeIPv6, ip6(src, dst, header.ProtocolIPv6DstOpts, 64,
			append([]byte{header.ProtocolICMPv6, 0, 0x80, 4, 0, 0, 0, 0}, e...))))
		// A routing header of type 0 with segments left.
		send(eth(them, header.EtherTypeIPv6, ip6(src, dst, header.ProtocolIPv6Routing, 64,
			append([]byte{header.ProtocolICMPv6, 2, 0, 1, 0, 0, 0, 0, 23: 0}, e...))))
		// A header running past the payload.
		send(eth(them, header.EtherTypeIPv6, ip6(src, dst, header.ProtocolIPv6DstOpts, 64, []byte{header.ProtocolICMPv6, 9, 1, 4})))
		// A tiny first fragment (8 bytes: no whole ICMPv6 header), never
		// completed; then overlapping fragments of another datagram.
		frag := func(off int, more bool, fid uint32, data []byte) []byte {
			w := uint16(off)
			if more {
				w |= 1
			}
			h := []byte{header.ProtocolICMPv6, 0, byte(w >> 8), byte(w), byte(fid >> 24), byte(fid >> 16), byte(fid >> 8), byte(fid)}
			return ip6(src, dst, header.ProtocolIPv6Fragment, 64, append(h, data...))
		}
		big := echo(src, dst, id, 64)
		send(eth(them, header.EtherTypeIPv6, frag(0, true, uint32(id)<<8, big[:8])))
		send(eth(them, header.EtherTypeIPv6, frag(0, true, uint32(id)<<8|1, big[:24])))
		send(eth(them, header.EtherTypeIPv6, frag(16, false, uint32(id)<<8|1, big[16:])))
		// ND: a solicitation with a zero-length option; one from off the
		// link (hop limit 64); an advertisement from a router not
		// link-local.
		ns := make([]byte, 32)
		n := header.NeighborSolicitation(ns, dst, &us)
		ns[n-7] = 0 // the option's length
		m := header.ICMPv6(ns[:n])
		m.SetChecksumFor(src, header.SolicitedNode(dst))
		send(eth(header.MulticastMAC(header.SolicitedNode(dst)), header.EtherTypeIPv6, ip6(src, header.SolicitedNode(dst), header.ProtocolICMPv6, 255, m)))
		n = header.NeighborSolicitation(ns, dst, &us)
		m = header.ICMPv6(ns[:n])
		m.SetChecksumFor(src, header.SolicitedNode(dst))
		send(eth(header.MulticastMAC(header.SolicitedNode(dst)), header.EtherTypeIPv6, ip6(src, header.SolicitedNode(dst), header.ProtocolICMPv6, 64, m)))
		// The flood: 20 routers a round, each with a prefix of its own.
		for j := 0; j < 20; j++ {
			k := i*20 + j
			router := netip.AddrFrom16([16]byte{0xfe, 0x80, 8: 0x02, 13: byte(k >> 16), 14: byte(k >> 8), 15: byte(k)})
			pi := make([]byte, 32)
			pi[0], pi[1], pi[2], pi[3] = uint8(header.NDPPrefixInfo), 4, 64, 0xc0
			for b := 4; b < 12; b++ {
				pi[b] = 0x0f // lifetimes of about 68 years: never run out in a test
			}
			copy(pi[16:], []byte{0x20, 0x01, 0x0d, 0xb8, byte(k >> 16), byte(k >> 8), byte(k)})
			body := append(make([]byte, 8), pi...)
			ra := header.ICMPv6(make([]byte, header.ICMPv6MinimumSize+len(body)))
			ra.SetType(header.ICMPv6RouterAdvert)
			ra.SetWord(64<<24 | 1800)
			copy(ra.Body(), body)
			ra.SetChecksumFor(router, allNodes)
			send(eth(header.MulticastMAC(allNodes), header.EtherTypeIPv6, ip6(router, allNodes, header.ProtocolICMPv6, 255, ra)))
		}
		time.Sleep(4 * time.Millisecond)
	}
}
