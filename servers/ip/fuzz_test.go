package ip

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"keepnet/servers/header"
)

// script encodes a fuzz input: frames as (u16 length, bytes); a length of
// 0xffff means "advance the clock by the next byte's seconds and Tick";
// 0xfffe means "Output the next byte's count of bytes, as UDP, to 10.0.2.x,
// x from the byte after".
func script(steps ...[]byte) []byte {
	var b []byte
	for _, s := range steps {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b
}

var tick = []byte{0xff, 0xff, 31}

func FuzzHandleFrame(f *testing.F) {
	ping := echo(header.ICMPv4Echo, 1, 1, make([]byte, 3000))
	arpReq := arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP)
	f.Add(script(arpReq, fromPeer(header.ProtocolICMP, 1, echo(header.ICMPv4Echo, 1, 1, []byte("hi")))))
	f.Add(script(append([][]byte{arpReq}, fragmentsFromPeer(header.ProtocolICMP, 2, ping, 1480)...)...))
	f.Add(script(fragmentsFromPeer(header.ProtocolUDP, 3, make([]byte, 100), 8)...))
	f.Add(append(script(frag(9, 0, true, make([]byte, 16))), tick...))
	f.Add(append([]byte{0xff, 0xfe, 40, 2}, script(arpFrame(header.ARPReply, peerMAC, peerIP, ourMAC, ourMAC, ourIP))...))
	f.Fuzz(func(t *testing.T, in []byte) {
		tb := newTestbed(t)
		l := DefaultLimits()
		l.ReassemblyMemory, l.MaxReassemblies, l.MaxNeighbors, l.ARPQueueMemory = 64<<10, 8, 8, 16<<10
		tb.SetLimits(l)
		for len(in) >= 2 {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			switch {
			case n == 0xffff && len(in) >= 1:
				tb.clock.Advance(time.Duration(in[0]) * time.Second)
				tb.Tick()
				in = in[1:]
			case n == 0xfffe && len(in) >= 2:
				tb.Output(header.ProtocolUDP, netip.AddrFrom4([4]byte{10, 0, 2, in[1]}), make([]byte, int(in[0])*64))
				in = in[2:]
			default:
				n = min(n, len(in))
				tb.HandleFrame(in[:n])
				in = in[n:]
			}
			checkBounds(t, tb)
		}
	})
}

// checkBounds asserts the Stack's memory stays within its limits and that
// it only ever sends frames that parse.
func checkBounds(t *testing.T, tb *testbed) {
	t.Helper()
	l := tb.limits
	held := 0
	for _, r := range tb.reasm {
		held += r.charge
	}
	if held != tb.reasmMem || tb.reasmMem > l.ReassemblyMemory || len(tb.reasm) > l.MaxReassemblies {
		t.Fatalf("reassembly holds %d bytes (accounted %d) in %d datagrams, limits %d, %d",
			held, tb.reasmMem, len(tb.reasm), l.ReassemblyMemory, l.MaxReassemblies)
	}
	queued := 0
	for _, n := range tb.neigh {
		for _, p := range n.queue {
			queued += len(p.payload)
		}
		if len(n.queue) > l.ARPQueueLen {
			t.Fatalf("a neighbour queues %d packets, limit %d", len(n.queue), l.ARPQueueLen)
		}
	}
	if queued != tb.queuedBytes || queued > l.ARPQueueMemory || len(tb.neigh) > l.MaxNeighbors {
		t.Fatalf("ARP queues hold %d bytes (accounted %d) for %d neighbours, limits %d, %d",
			queued, tb.queuedBytes, len(tb.neigh), l.ARPQueueMemory, l.MaxNeighbors)
	}
	for _, f := range tb.link.take() {
		if len(f) > header.EthernetMinimumSize+tb.cfg.MTU || header.ValidateEthernet(f) != nil {
			t.Fatalf("sent a bad frame % x", f)
		}
		eth := header.Ethernet(f)
		switch eth.Type() {
		case header.EtherTypeIPv4:
			if err := header.ValidateIPv4(eth.Payload()); err != nil {
				t.Fatalf("sent an invalid IPv4 datagram (%v): % x", err, f)
			}
		case header.EtherTypeARP:
			if err := header.ValidateARP(eth.Payload()); err != nil {
				t.Fatalf("sent an invalid ARP packet (%v): % x", err, f)
			}
		default:
			t.Fatalf("sent EtherType %#x", eth.Type())
		}
	}
}

// FuzzForward feeds frames to interface 0 of a router whose interface 1
// has a small MTU: whatever comes in, the router sends only valid frames
// that fit each interface, and holds what it may.
func FuzzForward(f *testing.F) {
	lsrr := []byte{0x83, 7, 4, 10, 90, 3, 4, 0x01} // loose source route (copied), then a no-op
	f.Add(script(peerTo(behindB, 64, 0, make([]byte, 1400))))
	f.Add(script(peerTo(behindB, 1, 0, make([]byte, 100)), peerTo(farIP, 9, header.IPv4FlagDontFragment, make([]byte, 1000))))
	f.Add(script(ipFrame(peerMAC, ourMAC, header.IPv4Fields{ID: 5, Flags: header.IPv4FlagMoreFragments, FragmentOffset: 1480,
		Protocol: header.ProtocolUDP, Src: peerIP, Dst: bIP, Options: lsrr}, make([]byte, 1200))))
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg := cfg1
		cfg.MTU = 576
		b := newRouterbed(t, cfg)
		b.knowB()
		for len(in) >= 2 {
			n := min(int(binary.BigEndian.Uint16(in)), len(in)-2)
			b.HandleFrame(in[2 : 2+n])
			in = in[2+n:]
			checkBounds(t, b.testbed)
			for _, fr := range b.link1.take() {
				if len(fr) > header.EthernetMinimumSize+cfg.MTU || header.ValidateEthernet(fr) != nil ||
					header.ValidateIPv4(header.Ethernet(fr).Payload()) != nil {
					t.Fatalf("interface 1 sent a bad frame % x", fr)
				}
			}
		}
	})
}

func FuzzCopiedOptions(f *testing.F) {
	f.Add([]byte{0x83, 7, 4, 10, 90, 3, 4, 0x01})
	f.Add([]byte{0x07, 3, 0, 0x83, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, opts []byte) {
		if len(opts) > 40 {
			return // an IPv4 header carries at most 40 bytes of options
		}
		got := copiedOptions(opts)
		if len(got)%4 != 0 || len(got) > 40 {
			t.Fatalf("copiedOptions(% x) = % x: not a whole header's options", opts, got)
		}
	})
}
