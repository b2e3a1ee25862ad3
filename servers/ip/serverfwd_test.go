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

// fwdbed is an IP server with two NICs, whose drivers are links whose
// messages pile up in their queues, forwarding on, and optionally a real
// pf Server over a real channel.
type fwdbed struct {
	t          *testing.T
	s          *server
	drv0, drv1 *peerLink
	pfl        *peerLink
	pf         *pf.Server
}

func newFwdbed(t *testing.T, rules string) *fwdbed {
	mk := func(id uint32, n int) *pool.Pool { return testPool(t, id, n) }
	o := ServerOptions{Name: "ip", Ifaces: []Iface{{Driver: "e1000.0"}, {Driver: "e1000.1"}}, Forward: true, RxPosted: 2}
	b := &fwdbed{t: t, s: &server{o: o, rx: mk(1, 8), tx: mk(2, 8), up: mk(3, 4), links: map[string]*peerLink{},
		in: make([]channel.Msg, 64), announce: func() {}}}
	b.s.addNICs([]Config{testCfg, cfg1})
	if rules != "" {
		b.s.o.Filter = "pf"
		b.pfl = newFilterLink("pf")
		b.s.links["pf"] = b.pfl
		state, keep := make([]byte, pf.MemBytes(64)), make([]byte, pf.RulesBytes)
		if err := pf.WriteRules(keep, rules); err != nil {
			t.Fatal(err)
		}
		srv, err := pf.NewServer(pf.ServerOptions{Name: "pf", IP: "ip", Ifaces: []string{"e1000.0", "e1000.1"}, MaxStates: 64}, state, keep)
		if err != nil {
			t.Fatal(err)
		}
		ipEnd, pfEnd, err := channel.NewLocal(64)
		if err != nil {
			t.Fatal(err)
		}
		srv.Attach(&wiring.Peer{Name: "ip", Generation: 1, Port: pfEnd, Pools: []*pool.Pool{b.s.rx, b.s.tx}})
		b.s.Attach(&wiring.Peer{Name: "pf", Generation: 1, Port: ipEnd})
		b.pf = srv
	}
	b.drv0 = b.attachDriver("e1000.0", ourMAC)
	b.drv1 = b.attachDriver("e1000.1", ourMAC1)
	b.s.start()
	b.pump()              // IPv6's first messages on e1000.0 (solicitations, MLD): pf passes them
	b.transmitted(b.drv0) // the gratuitous ARPs, and those
	b.transmitted(b.drv1)
	b.s.filterPassed, b.s.filterBlocked = 0, 0 // the tests count the forwarded datagrams' verdicts
	return b
}

// attachDriver attaches the driver name (generation 1) and has it answer
// ip's OpInfo with mac.
func (b *fwdbed) attachDriver(name string, mac header.MAC) *peerLink {
	return b.restartDriver(name, 1, mac)
}

// restartDriver attaches generation gen of the driver name, on a channel
// of its own, and has it answer ip's OpInfo with mac.
func (b *fwdbed) restartDriver(name string, gen int, mac header.MAC) *peerLink {
	ipEnd, _, err := channel.NewLocal(64)
	if err != nil {
		b.t.Fatal(err)
	}
	b.s.Attach(&wiring.Peer{Name: name, Generation: gen, Port: ipEnd})
	l := b.s.links[name]
	for i, m := range l.queue {
		if link.OpOf(m) == link.OpInfo {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			m.Arg[0] = link.MACToArg(mac)
			link.SetStatus(&m, link.StatusOK)
			b.s.handle(l, m)
			return l
		}
	}
	b.t.Fatalf("ip asked %s no OpInfo", name)
	return nil
}

// receive has the driver on l fill its first posted receive buffer with
// frame.
func (b *fwdbed) receive(l *peerLink, frame []byte) {
	b.t.Helper()
	for i, m := range l.queue {
		if link.OpOf(m) != link.OpRx {
			continue
		}
		l.queue = append(l.queue[:i], l.queue[i+1:]...)
		buf, _ := b.s.rx.Bytes(m.Ref)
		m.Ref.Len = uint32(copy(buf, frame))
		link.SetStatus(&m, link.StatusOK)
		b.s.handle(l, m)
		return
	}
	b.t.Fatalf("%s has no receive buffer", l.name)
}

// transmitted has the driver on l send every frame it was given, answer
// them, and returns them.
func (b *fwdbed) transmitted(l *peerLink) [][]byte {
	var frames [][]byte
	var rest []channel.Msg
	q := l.queue
	l.queue = nil
	for _, m := range q {
		if link.OpOf(m) != link.OpTx {
			rest = append(rest, m)
			continue
		}
		f, _ := b.s.tx.Bytes(m.Ref)
		frames = append(frames, append([]byte(nil), f...))
		link.SetStatus(&m, link.StatusOK)
		b.s.handle(l, m)
	}
	l.queue = append(rest, l.queue...)
	return frames
}

// pump carries ip's questions to pf and its answers back, if there is pf.
func (b *fwdbed) pump() {
	if b.pf != nil {
		b.s.pollLink(b.pfl)
		b.pf.Poll()
		b.s.pollLink(b.pfl)
	}
}

// udpTo is a UDP datagram to port.
func udpTo(port uint16) []byte {
	u := make([]byte, header.UDPMinimumSize+4)
	header.UDP(u).Encode(&header.UDPFields{SrcPort: 5000, DstPort: port, Length: uint16(len(u))})
	return u
}

// forwardOnce has B ARP for interface 1, the peer send payload to B on
// interface 0, and returns what interface 1's driver was given to send.
func (b *fwdbed) forwardOnce(payload []byte) [][]byte {
	b.receive(b.drv1, arpFrame(header.ARPRequest, bMAC, bIP, header.BroadcastMAC, header.MAC{}, ourIP1))
	b.transmitted(b.drv1) // our ARP reply
	b.receive(b.drv0, peerTo(bIP, 64, 0, payload))
	b.pump() // in, on e1000.0
	b.pump() // out, on e1000.1
	return b.transmitted(b.drv1)
}

// A datagram received from one fake driver leaves by the other's, once
// copied into a transmit buffer, and both drivers keep their receive
// buffers.
func TestServerForwardsBetweenDrivers(t *testing.T) {
	b := newFwdbed(t, "")
	u := udpTo(9)
	frames := b.forwardOnce(u)
	if len(frames) != 1 {
		t.Fatalf("e1000.1 was given %d frames, want the forwarded one", len(frames))
	}
	checkForwarded(t, frames[0], bIP, u)
	for _, n := range b.s.nics {
		if n.posted != b.s.o.RxPosted {
			t.Errorf("%s has %d receive buffers, want %d", n.driver, n.posted, b.s.o.RxPosted)
		}
	}
	if c := b.s.router.Counters(); c.Forwarded != 1 {
		t.Errorf("Forwarded = %d, want 1", c.Forwarded)
	}
}

// With a filter, pf judges a forwarded datagram coming in on the first
// interface and going out on the second, by their names: a rule for the
// wrong interface blocks it.
func TestServerForwardAsksPF(t *testing.T) {
	const rules = "set default block\npass in on e1000.0 proto udp\npass out on e1000.1 proto udp to any port 9\n"
	b := newFwdbed(t, rules)
	if nd := b.pf.Stats().NDPassed; nd == 0 {
		t.Errorf("pf passed no ND: ip's first IPv6 messages on e1000.0 did not wait for it")
	}
	if frames := b.forwardOnce(udpTo(9)); len(frames) != 1 {
		t.Fatalf("port 9: e1000.1 was given %d frames, want the forwarded one", len(frames))
	}
	if b.s.filterPassed != 2 || b.s.filterBlocked != 0 {
		t.Errorf("pf passed %d, blocked %d; want 2 (in and out), 0", b.s.filterPassed, b.s.filterBlocked)
	}
	if frames := b.forwardOnce(udpTo(10)); len(frames) != 0 {
		t.Errorf("port 10: e1000.1 was given %d frames, want none (blocked out)", len(frames))
	}
	if b.s.filterPassed != 3 || b.s.filterBlocked != 1 {
		t.Errorf("pf passed %d, blocked %d; want 3, 1", b.s.filterPassed, b.s.filterBlocked)
	}
	if free := b.s.tx.Available(); free != b.s.tx.Len() {
		t.Errorf("%d transmit buffers free, want all %d", free, b.s.tx.Len())
	}
}

// A restart of e1000.1 while it holds a forwarded frame: ip resubmits the
// frame (and its receive buffers) to the new generation under new ids, the
// old generation's late reply is ignored, and forwarding goes on.
func TestServerForwardAcrossDriverRestart(t *testing.T) {
	b := newFwdbed(t, "")
	b.receive(b.drv1, arpFrame(header.ARPRequest, bMAC, bIP, header.BroadcastMAC, header.MAC{}, ourIP1))
	b.transmitted(b.drv1)
	u := udpTo(9)
	b.receive(b.drv0, peerTo(bIP, 64, 0, u))
	var old channel.Msg // the frame the dying generation holds
	for _, m := range b.drv1.queue {
		if link.OpOf(m) == link.OpTx {
			old = m
		}
	}
	if old.Ref.IsZero() {
		t.Fatal("e1000.1 was given no frame to send")
	}
	b.drv1.queue = nil // in the old generation's ring, never answered

	b.restartDriver("e1000.1", 2, ourMAC1)
	link.SetStatus(&old, link.StatusOK)
	b.s.handle(b.drv1, old) // a late reply of generation 1: ignored
	frames := b.transmitted(b.drv1)
	if len(frames) != 1 {
		t.Fatalf("generation 2 of e1000.1 was given %d frames, want the one resubmitted", len(frames))
	}
	checkForwarded(t, frames[0], bIP, u)
	if n := b.s.nics[1]; n.posted != b.s.o.RxPosted {
		t.Errorf("e1000.1 has %d receive buffers after its restart, want %d", n.posted, b.s.o.RxPosted)
	}
	if frames := b.forwardOnce(u); len(frames) != 1 {
		t.Errorf("after the restart e1000.1 was given %d frames, want the forwarded one", len(frames))
	}
	if free := b.s.tx.Available(); free != b.s.tx.Len() {
		t.Errorf("%d transmit buffers free, want all %d (none freed twice or lost)", free, b.s.tx.Len())
	}
}
