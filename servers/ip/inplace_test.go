package ip

import (
	"bytes"
	"testing"

	"keepnet/drivers/link"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// newInPlacebed is a holdbed with an "ip.up.small" pool of n buffers and
// tcp and udp behind the Stack.
func newInPlacebed(t *testing.T, n int) *holdbed {
	b := newHoldbed(t)
	b.s.upSmall = testPool(t, 5, n)
	b.s.links["udp"] = &peerLink{name: "udp", peer: &wiring.Peer{Name: "udp"}, out: channel.NewOutstanding(64, 1)}
	b.setStack(map[uint8]Transport{
		header.ProtocolTCP: &transportLink{s: b.s, name: "tcp"},
		header.ProtocolUDP: &transportLink{s: b.s, name: "udp"},
	})
	b.s.stack.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
	b.transmitted(1) // the peer resolved, as newHoldbed's Stack had it
	return b
}

// frameIn has the driver answer a receive request of IP's with frame.
func (b *holdbed) frameIn(frame []byte) {
	b.t.Helper()
	ref, ok := b.s.rx.Alloc()
	if !ok {
		b.t.Fatal("no receive buffer")
	}
	buf, _ := b.s.rx.Bytes(ref)
	copy(buf, frame)
	if !b.s.request(b.drv, link.OpRx.Msg(ref)) {
		b.t.Fatal("IP could not post a receive buffer")
	}
	m := b.drv.queue[len(b.drv.queue)-1]
	b.drv.queue = b.drv.queue[:len(b.drv.queue)-1]
	link.SetStatus(&m, link.StatusOK)
	m.Ref.Len = uint32(len(frame))
	b.s.handle(b.drv, m)
}

// delivered takes the one OpDeliver IP queued for l, and the segment it
// names (from its transport header on) in pool p.
func (b *holdbed) delivered(l *peerLink, p *pool.Pool) (channel.Msg, []byte) {
	b.t.Helper()
	if len(l.queue) != 1 || ops.OpOf(l.queue[0]) != ops.OpDeliver {
		b.t.Fatalf("IP queued %+v for %s, want one OpDeliver", l.queue, l.name)
	}
	m := l.queue[0]
	l.queue = nil
	buf, err := p.Bytes(m.Ref)
	if err != nil {
		b.t.Fatalf("OpDeliver's %+v: %v, want a buffer of pool %d", m.Ref, err, p.ID())
	}
	_, _, off := ops.Delivered(m)
	return m, buf[off:]
}

// answer has l's transport answer the delivery m with status st.
func (b *holdbed) answer(l *peerLink, m channel.Msg, st ops.Status) {
	ops.SetStatus(&m, st)
	b.s.handle(l, m)
}

// A TCP segment that came whole in a frame goes to tcp in the buffer IP
// parsed the frame in: no copy, its transport header at the link header
// plus the IP header, the buffer back in the pool with tcp's reply, and
// the next frame parsed in another.
func TestDeliverInPlace(t *testing.T) {
	b := newInPlacebed(t, 4)
	seg := bytes.Repeat([]byte{0xab}, 100)
	b.frameIn(fromPeer(header.ProtocolTCP, 1, seg))
	m, got := b.delivered(b.tcp, b.s.upSmall)
	dgram := header.IPv4MinimumSize + len(seg)
	if _, _, off := ops.Delivered(m); off != header.EthernetMinimumSize+header.IPv4MinimumSize || !bytes.Equal(got, seg) || m.Ref.Len != uint32(header.EthernetMinimumSize+dgram) {
		t.Errorf("OpDeliver offset %d, Len %d, segment % x; want %d, %d, the segment sent", off, m.Ref.Len, got[:min(len(got), 8)],
			header.EthernetMinimumSize+header.IPv4MinimumSize, header.EthernetMinimumSize+dgram)
	}
	if b.s.deliveredInPlace != uint64(dgram) || b.s.deliveredCopied != 0 {
		t.Errorf("delivered in place %d bytes, copied %d; want %d, 0", b.s.deliveredInPlace, b.s.deliveredCopied, dgram)
	}
	if got := b.s.upSmall.Available(); got != 3 {
		t.Errorf("%d free buffers with tcp holding the segment, want 3", got)
	}
	b.frameIn(fromPeer(header.ProtocolTCP, 2, seg))
	m2, _ := b.delivered(b.tcp, b.s.upSmall)
	if m2.Ref == m.Ref {
		t.Fatalf("the next segment went in the buffer tcp holds (%+v)", m.Ref)
	}
	b.answer(b.tcp, m, ops.StatusOK)
	b.answer(b.tcp, m2, ops.StatusOK)
	if got := b.s.upSmall.Available(); got != 4 {
		t.Errorf("%d free buffers after tcp's replies, want 4", got)
	}
}

// Where the datagram is not the frame's, or there is no buffer to parse
// the frame in, IP copies it into a delivery buffer as before, and counts
// the copy: a reassembled datagram goes in "ip.up.small" after room for a
// link header, one copied into "ip.up" at its start.
func TestDeliverCopiesWhenItMust(t *testing.T) {
	payload := bytes.Repeat([]byte{0xcd}, 64)
	udp := make([]byte, header.UDPMinimumSize+len(payload))
	copy(udp[header.UDPMinimumSize:], payload)
	for _, tc := range []struct {
		name    string
		frames  [][]byte
		exhaust bool // every "ip.up.small" buffer taken
		pool    func(*server) *pool.Pool
		off     int
	}{
		{"reassembled", fragmentsFromPeer(header.ProtocolUDP, 9, udp, 48), false,
			func(s *server) *pool.Pool { return s.upSmall }, header.EthernetMinimumSize + header.IPv4MinimumSize},
		{"no buffer to parse in", [][]byte{fromPeer(header.ProtocolUDP, 9, udp)}, true,
			func(s *server) *pool.Pool { return s.up }, header.IPv4MinimumSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newInPlacebed(t, 4)
			for tc.exhaust {
				if _, ok := b.s.upSmall.Alloc(); !ok {
					break
				}
			}
			for _, f := range tc.frames {
				b.frameIn(f)
			}
			m, got := b.delivered(b.s.links["udp"], tc.pool(b.s))
			if _, _, off := ops.Delivered(m); off != tc.off || !bytes.Equal(got, udp) {
				t.Errorf("OpDeliver offset %d, segment % x; want %d, % x", off, got, tc.off, udp)
			}
			if want := uint64(header.IPv4MinimumSize + len(udp)); b.s.deliveredCopied != want || b.s.deliveredInPlace != 0 {
				t.Errorf("delivered copied %d bytes, in place %d; want %d, 0", b.s.deliveredCopied, b.s.deliveredInPlace, want)
			}
		})
	}
}

// A transport that has no socket for a datagram handed over in place
// answers StatusNoPort: IP quotes the datagram, not its link header, in
// the ICMP port unreachable it sends.
func TestDeliveredInPlaceUnreachable(t *testing.T) {
	b := newInPlacebed(t, 4)
	udp := make([]byte, header.UDPMinimumSize+8)
	frame := fromPeer(header.ProtocolUDP, 3, udp)
	b.frameIn(frame)
	l := b.s.links["udp"]
	m, _ := b.delivered(l, b.s.upSmall)
	b.answer(l, m, ops.StatusNoPort)
	var icmp []sent
	for _, q := range b.drv.queue {
		if link.OpOf(q) == link.OpTx {
			if f, _ := b.s.tx.Bytes(q.Ref); header.Ethernet(f).Type() == header.EtherTypeIPv4 {
				icmp = append(icmp, parseIP(t, f))
			}
		}
	}
	if len(icmp) != 1 || icmp[0].ip.Protocol() != header.ProtocolICMP {
		t.Fatalf("IP sent %d datagrams, want one ICMP port unreachable", len(icmp))
	}
	quote := header.ICMPv4(icmp[0].ip.Payload()).Payload()
	if want := frame[header.EthernetMinimumSize:]; !bytes.HasPrefix(want, quote[:header.IPv4MinimumSize+header.UDPMinimumSize]) {
		t.Errorf("port unreachable quotes % x, want the datagram % x", quote, want)
	}
	if got := b.s.upSmall.Available(); got != 4 {
		t.Errorf("%d free buffers after udp's reply, want 4", got)
	}
}

// A segment handed over in place and not answered when tcp restarts goes
// to its next generation in the same buffer; the late reply of the old
// generation is ignored, and the buffer is freed once, with the new one's.
func TestDeliveredInPlaceAcrossTCPRestart(t *testing.T) {
	b := newInPlacebed(t, 4)
	b.frameIn(fromPeer(header.ProtocolTCP, 1, make([]byte, 40)))
	old, _ := b.delivered(b.tcp, b.s.upSmall)
	oldPort, _, err := channel.NewLocal(8)
	if err != nil {
		t.Fatal(err)
	}
	b.tcp.peer.Port = oldPort
	port, _, err := channel.NewLocal(8)
	if err != nil {
		t.Fatal(err)
	}
	b.s.Attach(&wiring.Peer{Name: "tcp", Generation: 2, Port: port})
	again, _ := b.delivered(b.tcp, b.s.upSmall)
	if again.Ref != old.Ref || again.ID <= old.ID {
		t.Fatalf("resubmitted %+v, want the same buffer under a new id (old %+v)", again, old)
	}
	b.answer(b.tcp, old, ops.StatusOK) // stale: must not free it
	if got := b.s.upSmall.Available(); got != 3 {
		t.Fatalf("%d free buffers after the old generation's late reply, want 3: the new one holds it", got)
	}
	b.answer(b.tcp, again, ops.StatusOK)
	if got := b.s.upSmall.Available(); got != 4 {
		t.Errorf("%d free buffers after the new generation's reply, want 4", got)
	}
}
