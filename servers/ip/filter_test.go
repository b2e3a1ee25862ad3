package ip

import (
	"testing"

	"keepnet/drivers/link"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/pf"
)

// filterbed is a holdbed whose IP filters: a udp transport that records
// what it gets, a link to pf, and pf generations played by real pf
// Servers over real channels, on kept memory that outlives them.
type filterbed struct {
	*holdbed
	udp         *fakeTransport
	pfl         *peerLink
	state, keep []byte // pf's kept memory: states, rules
	pf          *pf.Server
	gen         int
}

const udpRules = "set default block\npass in proto udp to any port 9\npass out proto udp to any port 9\n"

func newFilterbed(t *testing.T, rules string, pfl *peerLink) *filterbed {
	b := &filterbed{holdbed: newHoldbed(t), udp: &fakeTransport{}, pfl: pfl,
		state: make([]byte, pf.MemBytes(64)), keep: make([]byte, pf.RulesBytes)}
	if err := pf.WriteRules(b.keep, rules); err != nil {
		t.Fatal(err)
	}
	b.setStack(map[uint8]Transport{header.ProtocolUDP: b.udp})
	b.s.stack.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
	b.transmitted(1)
	b.s.o.Filter, b.s.o.RxPosted = "pf", 1
	b.s.links["pf"] = pfl
	b.s.postRX(b.drv)
	b.s.in = make([]channel.Msg, 64)
	return b
}

// startPF starts a pf generation on the kept memory and attaches it.
func (b *filterbed) startPF() {
	b.t.Helper()
	srv, err := pf.NewServer(pf.ServerOptions{Name: "pf", IP: "ip", Ifaces: []string{"e1000.0"}, MaxStates: 64}, b.state, b.keep)
	if err != nil {
		b.t.Fatal(err)
	}
	ipEnd, pfEnd, err := channel.NewLocal(64)
	if err != nil {
		b.t.Fatal(err)
	}
	b.gen++
	srv.Attach(&wiring.Peer{Name: "ip", Generation: 1, Port: pfEnd, Pools: []*pool.Pool{b.s.rx, b.s.tx}})
	b.s.Attach(&wiring.Peer{Name: "pf", Generation: b.gen, Port: ipEnd})
	b.pf = srv
}

// receive has the driver fill its first posted receive buffer with frame.
func (b *filterbed) receive(frame []byte) {
	b.t.Helper()
	for i, m := range b.drv.queue {
		if link.OpOf(m) != link.OpRx {
			continue
		}
		b.drv.queue = append(b.drv.queue[:i], b.drv.queue[i+1:]...)
		buf, _ := b.s.rx.Bytes(m.Ref)
		m.Ref.Len = uint32(copy(buf, frame))
		link.SetStatus(&m, link.StatusOK)
		b.s.handle(b.drv, m)
		return
	}
	b.t.Fatal("the driver has no receive buffer")
}

// pump carries ip's questions to pf, has pf answer, and ip take the
// answers (alive: pf runs; else it died and answers nothing).
func (b *filterbed) pump(alive bool) {
	b.s.pollLink(b.pfl)
	if alive {
		b.pf.Poll()
	}
	b.s.pollLink(b.pfl)
}

// udpFromPeer is a frame from the peer to our port.
func udpFromPeer(port uint16) []byte {
	u := make([]byte, header.UDPMinimumSize+4)
	header.UDP(u).Encode(&header.UDPFields{SrcPort: 5000, DstPort: port, Length: uint16(len(u))})
	return fromPeer(header.ProtocolUDP, port, u)
}

func (b *filterbed) check(delivered, waiting int, passed, blocked, dropped uint64) {
	b.t.Helper()
	s := b.s
	if len(b.udp.got) != delivered || b.pfl.out.Len() != waiting || s.filterPassed != passed || s.filterBlocked != blocked || s.filterDrops != dropped {
		b.t.Errorf("%d delivered, %d waiting, %d passed, %d blocked, %d dropped; want %d, %d, %d, %d, %d",
			len(b.udp.got), b.pfl.out.Len(), s.filterPassed, s.filterBlocked, s.filterDrops, delivered, waiting, passed, blocked, dropped)
	}
	if got := s.nics[0].posted; got != s.o.RxPosted {
		b.t.Errorf("the driver has %d receive buffers, want %d", got, s.o.RxPosted)
	}
}

// A received datagram and one to send each wait for pf's verdict over
// the channel, and go on or are dropped by it.
func TestFilterVerdictRoundTrip(t *testing.T) {
	b := newFilterbed(t, udpRules, newFilterLink("pf"))
	b.startPF()
	b.receive(udpFromPeer(9))
	b.receive(udpFromPeer(10))
	b.check(0, 2, 0, 0, 0) // asked, not yet answered
	b.pump(true)
	b.check(1, 0, 1, 1, 0)
	if got := b.udp.got; len(got) != 1 || got[0].src != peerIP {
		t.Errorf("delivered %+v, want the datagram to port 9", got)
	}
	if atPF := b.s.rx.Len() - b.s.rx.Available() - b.s.nics[0].posted; atPF != 0 {
		t.Errorf("%d receive buffers still at pf", atPF)
	}

	free := b.s.tx.Available()
	for _, port := range []uint16{9, 10} {
		u := make([]byte, header.UDPMinimumSize)
		header.UDP(u).Encode(&header.UDPFields{SrcPort: 5000, DstPort: port, Length: uint16(len(u))})
		if err := b.s.stack.Output(header.ProtocolUDP, peerIP, u); err != nil {
			t.Fatalf("Output to port %d: %v", port, err)
		}
	}
	if n := b.pendingTx(); n != 0 {
		t.Fatalf("%d frames went to the driver before pf's verdict", n)
	}
	b.pump(true)
	if n := b.pendingTx(); n != 1 || b.s.tx.Available() != free-1 {
		t.Errorf("%d frames with the driver, %d transmit buffers free; want 1 (to port 9), %d", n, b.s.tx.Available(), free-1)
	}
}

// While pf is absent — before its first generation, and after one died
// with questions unanswered — datagrams wait, and the next generation
// gets them again: each is judged and delivered once, none unfiltered.
func TestFilterHoldsDatagramsWhilePFIsAbsent(t *testing.T) {
	b := newFilterbed(t, udpRules, newFilterLink("pf"))
	b.receive(udpFromPeer(9))
	b.pump(false)
	b.check(0, 1, 0, 0, 0)

	b.startPF()
	b.receive(udpFromPeer(9))
	b.receive(udpFromPeer(10))
	b.pump(false) // sent to generation 1, which dies without answering
	b.check(0, 3, 0, 0, 0)

	b.startPF() // generation 2, on the same kept memory
	b.pump(true)
	b.check(2, 0, 2, 1, 0)
}

// Beyond the bound, a datagram waiting for pf is dropped and counted, not
// passed; its receive buffer goes back to the driver's use.
func TestFilterWaitIsBounded(t *testing.T) {
	b := newFilterbed(t, udpRules, &peerLink{name: "pf", out: channel.NewOutstanding(2, 1)})
	for range 3 {
		b.receive(udpFromPeer(9))
	}
	b.check(0, 2, 0, 0, 1)
	b.startPF()
	b.pump(true)
	b.check(2, 0, 2, 0, 1)
}

// Without a filter, nothing waits: a datagram is delivered as it is
// received, and no question is asked.
func TestNoFilterNoQuestions(t *testing.T) {
	b := newFilterbed(t, udpRules, newFilterLink("pf"))
	b.s.o.Filter = ""
	b.receive(udpFromPeer(10))
	if len(b.udp.got) != 1 || b.pfl.out.Len() != 0 || len(b.pfl.queue) != 0 {
		t.Errorf("%d delivered, %d questions; want 1, 0", len(b.udp.got), b.pfl.out.Len())
	}
}

// A transport's segment finds the filter's queue full: it waits among
// the held outputs, as for a transmit buffer, and is asked about (and
// answered ok) once pf answered the one before it.
func TestFilterFullHoldsOutputs(t *testing.T) {
	b := newFilterbed(t, "pass all\n", &peerLink{name: "pf", out: channel.NewOutstanding(1, 1)})
	b.startPF()
	b.output(1)
	b.output(2)
	if got := b.answers(); len(got) != 1 || got[0] != 1 || len(b.s.held) != 1 {
		t.Fatalf("answered %v with room for one question, %d held; want [1], 1", got, len(b.s.held))
	}
	b.pump(true) // segment 1 passes; segment 2 is asked about
	b.pump(true)
	// (The segments are not TCP that pf could parse: it blocks both.)
	if got, judged := b.answers(), b.s.filterPassed+b.s.filterBlocked; len(got) != 1 || got[0] != 2 || judged != 2 || b.s.filterDrops != 0 {
		t.Errorf("answered %v, %d judged by pf, %d dropped; want [2], 2, 0", got, judged, b.s.filterDrops)
	}
}
