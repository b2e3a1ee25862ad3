package ip

import (
	"net/netip"
	"slices"
	"testing"

	"keepnet/drivers/link"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// holdbed is an IP server without its process around it: a driver link
// and a tcp link whose messages pile up in their queues, and a transmit
// pool of two buffers.
type holdbed struct {
	t        *testing.T
	s        *server
	drv, tcp *peerLink
	segs     *pool.Pool // tcp's output pool
}

func newHoldbed(t *testing.T) *holdbed {
	mk := func(id uint32, n int) *pool.Pool { return testPool(t, id, n) }
	b := &holdbed{t: t, segs: mk(10, 8)}
	b.s = &server{o: ServerOptions{Name: "ip", Ifaces: []Iface{{Driver: "e1000.0"}}}, rx: mk(1, 4), tx: mk(2, 2), up: mk(3, 4), links: map[string]*peerLink{}}
	b.s.addNICs([]Config{testCfg})
	b.drv = &peerLink{name: "e1000.0", nic: b.s.nics[0], peer: &wiring.Peer{Name: "e1000.0"}, out: channel.NewOutstanding(64, 1)}
	b.tcp = &peerLink{name: "tcp", peer: &wiring.Peer{Name: "tcp", Pools: []*pool.Pool{b.segs}}, out: channel.NewOutstanding(64, 1)}
	b.s.links["e1000.0"], b.s.links["tcp"] = b.drv, b.tcp
	b.setStack(nil)
	// The peer asks for us first, so its address is resolved; the driver
	// sends our reply.
	b.s.stack.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
	b.transmitted(1)
	return b
}

// setStack gives the server's interface a Stack with transports.
func (b *holdbed) setStack(transports map[uint8]Transport) {
	n := b.s.nics[0]
	n.stack = New(testCfg, nicLink{b.s, n}, &fakeClock{epoch}, transports)
	b.s.stack = n.stack
}

// output has tcp ask IP to send a 100-byte segment to the peer.
func (b *holdbed) output(seq int) {
	ref, ok := b.segs.Alloc()
	if !ok {
		b.t.Fatal("tcp's pool is empty")
	}
	buf, _ := b.segs.Bytes(ref)
	for i := range 100 {
		buf[i] = byte(seq)
	}
	ref.Len = 100
	m := channel.Msg{Op: uint16(ops.OpOutput), Ref: ref, ID: uint64(seq)}
	ops.PutAddr(&m, ops.AtArg0, ops.MakeAddr(peerIP, 0))
	m.Arg[2] = uint64(header.ProtocolTCP)
	b.s.handle(b.tcp, m)
}

// transmitted has the driver finish the first n frames it was given and
// answer them.
func (b *holdbed) transmitted(n int) {
	b.t.Helper()
	var done int
	var rest []channel.Msg
	q := b.drv.queue
	b.drv.queue = nil // what IP sends meanwhile queues behind
	for _, m := range q {
		if link.OpOf(m) == link.OpTx && done < n {
			link.SetStatus(&m, link.StatusOK)
			b.s.handle(b.drv, m)
			done++
			continue
		}
		rest = append(rest, m)
	}
	b.drv.queue = append(rest, b.drv.queue...)
	if done != n {
		b.t.Fatalf("the driver had %d frames to send, want %d", done, n)
	}
}

// answers returns the IDs of tcp's answered requests and checks each is ok.
func (b *holdbed) answers() []int {
	var ids []int
	for _, m := range b.tcp.queue {
		if ops.StatusOf(m) != ops.StatusOK {
			b.t.Errorf("OpOutput %d answered %s", m.ID, ops.StatusOf(m))
		}
		ids = append(ids, int(m.ID))
	}
	b.tcp.queue = nil
	return ids
}

func (b *holdbed) pendingTx() int {
	n := 0
	for _, m := range b.drv.queue {
		if link.OpOf(m) == link.OpTx {
			n++
		}
	}
	return n
}

// With the driver holding both transmit buffers, a third segment waits for
// one instead of being refused (and lost, and retransmitted after an RTO);
// it goes out, and is answered, when the driver returns a buffer.
func TestOutputWaitsForATransmitBuffer(t *testing.T) {
	b := newHoldbed(t)
	for seq := 1; seq <= 4; seq++ {
		b.output(seq)
	}
	if got := b.answers(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("answered %v with two transmit buffers, want [1 2]", got)
	}
	if n := b.pendingTx(); n != 2 {
		t.Fatalf("%d frames with the driver, want 2", n)
	}
	if len(b.s.held) != 2 || b.s.deferred != 2 {
		t.Fatalf("%d held, %d deferred; want 2 and 2", len(b.s.held), b.s.deferred)
	}
	b.transmitted(1)
	if got := b.answers(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("answered %v after one buffer came back, want [3]: in order", got)
	}
	b.transmitted(2)
	if got := b.answers(); len(got) != 1 || got[0] != 4 {
		t.Fatalf("answered %v after two more, want [4]", got)
	}
	if len(b.s.held) != 0 || b.pendingTx() != 1 {
		t.Errorf("%d held and %d with the driver at the end, want 0 and 1", len(b.s.held), b.pendingTx())
	}
	if d := b.s.drops; d != 0 {
		t.Errorf("%d frames dropped, want none", d)
	}
}

// IP sleeps through transmit completions (the driver sends them lazily)
// only while no segment waits for a buffer and a quarter of the pool is
// free: a held segment must be woken for.
func TestBuffersToSpare(t *testing.T) {
	b := newHoldbed(t)
	if !b.s.buffersToSpare() {
		t.Fatal("with both transmit buffers free, IP does not sleep patiently")
	}
	for seq := 1; seq <= 3; seq++ {
		b.output(seq)
	}
	if len(b.s.held) != 1 || b.s.buffersToSpare() {
		t.Fatalf("%d held, buffersToSpare %v; want one held and completions to wake IP", len(b.s.held), b.s.buffersToSpare())
	}
	b.transmitted(2)
	if !b.s.buffersToSpare() {
		t.Error("with nothing held and a buffer free, IP does not sleep patiently")
	}
	small := &server{tx: testPool(t, 20, 8)}
	var refs []pool.Ref
	for small.buffersToSpare() {
		r, ok := small.tx.Alloc()
		if !ok {
			t.Fatal("buffersToSpare with the pool empty")
		}
		refs = append(refs, r)
	}
	if len(refs) != 7 {
		t.Errorf("IP stopped sleeping patiently after %d of 8 buffers went out, want 7 (fewer than a quarter left)", len(refs))
	}
}

// TestOutputIPv6NeedsASource: a segment for an IPv6 destination with
// neither a source nor a checksum for IP to fill in is refused
// (StatusInvalid: IP could not make its checksum right) and nothing is
// sent.
func TestOutputIPv6NeedsASource(t *testing.T) {
	b := newHoldbed(t)
	ref, _ := b.segs.Alloc()
	ref.Len = 100
	m := ops.Output(ref, netip.Addr{}, netip.MustParseAddr("2001:db8::1"), header.ProtocolTCP, 0)
	m.ID = 7
	b.s.handle(b.tcp, m)
	if len(b.tcp.queue) != 1 || ops.StatusOf(b.tcp.queue[0]) != ops.StatusInvalid {
		t.Fatalf("answers %+v, want one StatusInvalid", b.tcp.queue)
	}
	if n := b.pendingTx(); n != 0 {
		t.Errorf("%d frames with the driver, want none", n)
	}
}

// Beyond maxHeld segments waiting, a new one is refused at once with
// StatusNoBuffers and counted; the held ones still go out.
func TestHeldOutputsAreBounded(t *testing.T) {
	b := newHoldbed(t)
	b.s.maxHeld = 2
	for seq := 1; seq <= 5; seq++ { // 2 sent, 2 held, 1 refused
		b.output(seq)
	}
	var refused []int
	for _, m := range b.tcp.queue {
		if ops.StatusOf(m) == ops.StatusNoBuffers {
			refused = append(refused, int(m.ID))
		}
	}
	if len(refused) != 1 || refused[0] != 5 || len(b.s.held) != 2 || b.s.throttled != 1 {
		t.Fatalf("refused %v, %d held, %d throttled; want [5], 2, 1", refused, len(b.s.held), b.s.throttled)
	}
	b.tcp.queue = nil
	b.transmitted(2)
	if got := b.answers(); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Errorf("answered %v after two buffers came back, want [3 4]", got)
	}
}

// Beyond maxLinkQueue messages waiting for room in the driver's channel, a
// frame is not handed over: SendFrame fails, its buffer goes back to the
// pool, and the drop is counted.
func TestLinkQueueIsBounded(t *testing.T) {
	b := newHoldbed(t)
	b.transmitted(0)
	b.s.maxLinkQueue = len(b.drv.queue) + 1
	free := b.s.tx.Available()
	if err := (nicLink{b.s, b.s.nics[0]}).SendFrame(make([]byte, 60)); err != nil {
		t.Fatalf("SendFrame() with room = %v", err)
	}
	if err := (nicLink{b.s, b.s.nics[0]}).SendFrame(make([]byte, 60)); err == nil {
		t.Fatalf("SendFrame() beyond maxLinkQueue = nil, want an error")
	}
	if got := b.s.tx.Available(); got != free-1 || b.s.linkQueueDrops != 1 {
		t.Errorf("free transmit buffers %d, link queue drops %d; want %d, 1", got, b.s.linkQueueDrops, free-1)
	}
}

// TestNewTransportGenerationReleasesOldPools: when a transport's next
// generation attaches, ip unmaps the old one's pools and tells init, which
// otherwise kept them (huge pages and all) until ip itself restarted —
// the campaign's appliance that died after enough tcp and udp restarts.
func TestNewTransportGenerationReleasesOldPools(t *testing.T) {
	b := newHoldbed(t)
	b.tcp.peer.Port, _ = localPair(t, 8)
	var released []uint32
	b.s.release = func(id uint32) { released = append(released, id) }
	b.output(1) // a segment held in the old generation's pool
	next, _ := localPair(t, 8)
	b.s.Attach(&wiring.Peer{Name: "tcp", Generation: 2, Port: next})
	if !slices.Equal(released, []uint32{b.segs.ID()}) {
		t.Errorf("released %v when tcp generation 2 attached, want generation 1's pool %d", released, b.segs.ID())
	}
	if len(b.s.held) != 0 {
		t.Errorf("%d outputs of the old generation still held, with references into its released pool", len(b.s.held))
	}
}

// A transport's OpSource is answered at once, its key (Arg[3]) kept: the
// address ip sends to the destination from, or why there is none (no
// IPv6 on this stack: no route).
func TestServerAnswersSource(t *testing.T) {
	b := newHoldbed(t)
	b.s.fromTransport(b.tcp, ops.Source(peerIP, 7))
	b.s.fromTransport(b.tcp, ops.Source(netip.MustParseAddr("2001:db8::1"), 8))
	if len(b.tcp.queue) != 2 {
		t.Fatalf("answers %+v, want two", b.tcp.queue)
	}
	if r := b.tcp.queue[0]; ops.OpOf(r) != ops.OpSource || ops.StatusOf(r) != ops.StatusOK || ops.GetAddr(r, ops.AtArg0).IP() != ourIP || r.Arg[3] != 7 {
		t.Errorf("source to %v: %s %v key %d, want ok %v key 7", peerIP, ops.StatusOf(r), ops.GetAddr(r, ops.AtArg0), r.Arg[3], ourIP)
	}
	if r := b.tcp.queue[1]; ops.StatusOf(r) != ops.StatusNetUnreach || r.Arg[3] != 8 {
		t.Errorf("source to 2001:db8::1 without IPv6: %s key %d, want StatusNetUnreach key 8", ops.StatusOf(r), r.Arg[3])
	}
}

// AppendPorts tells each channel how patiently ip sleeps on it: a driver's
// lazy completions do not wake ip while it has transmit buffers to spare,
// unless messages wait for room on that channel (they wait for the
// driver's replies, lazy ones included).
func TestSleepPatience(t *testing.T) {
	b := newHoldbed(t)
	ipEnd, drvEnd := localPair(t, 64)
	b.drv.peer.Port = ipEnd
	b.tcp.peer = nil // not attached: no channel to sleep on
	b.drv.queue = nil
	woke := func() bool {
		t.Helper()
		b.s.AppendPorts(nil)
		if ready, err := ipEnd.Arm(); ready || err != nil {
			t.Fatalf("Arm = %v, %v", ready, err)
		}
		before := drvEnd.Wakeups()
		drvEnd.SendLazy(channel.Msg{ID: 1})
		ipEnd.Disarm()
		ipEnd.Recv(make([]channel.Msg, 4))
		return drvEnd.Wakeups() > before
	}
	if woke() {
		t.Error("a lazy completion woke ip with its transmit buffers to spare")
	}
	b.drv.queue = []channel.Msg{{ID: 9}}
	if !woke() {
		t.Error("a lazy completion did not wake ip with a message waiting for room on the driver's channel")
	}
	b.drv.queue = nil
	b.s.held = []heldOutput{{b.tcp, channel.Msg{}}}
	if !woke() {
		t.Error("a lazy completion did not wake ip with a segment waiting for a transmit buffer")
	}
}

// localPair is an in-process channel's two ends.
func localPair(t *testing.T, slots int) (a, b *channel.Endpoint) {
	t.Helper()
	a, b, err := channel.NewLocal(slots)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}
