package tcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	impair "keepnet/qemu/relay"
	"keepnet/servers/transport"
)

// Crash tests of keep.go: a Table at us (the appliance) keeps its
// connections in a byte slice standing for init's kept memory, and is
// thrown away and made again from it, over and over, while its connections
// carry data both ways to a Table at peer through an impaired link. As in
// the server, what the Table sends leaves only after a Commit (gate), and
// its "application" resumes from the stream offsets the restored
// connection holds (owner): sends from owner.sent, receives skipping to
// what it has.

// gate holds the appliance's segments until its next Commit.
type gate struct {
	l       *relayLink
	pending []inflight
}

func (g *gate) Buffer(int) []byte { return nil }

func (g *gate) Send(seg []byte, src, dst netip.Addr, _ transport.Offload) error {
	g.pending = append(g.pending, inflight{b: append([]byte(nil), seg...), src: src, dst: dst})
	return nil
}

// release sends what the last commit allowed out.
func (g *gate) release() {
	for _, f := range g.pending {
		relayOut{g.l}.Send(f.b, f.src, f.dst, transport.Offload{})
	}
	g.pending = g.pending[:0]
}

// keptConn is one connection of the test: the appliance's end (a, held by
// socket sock) and the peer's (b), with what each application sent and got.
type keptConn struct {
	sock         uint64
	a, b         *Endpoint
	aSent, aGot  int // the appliance's application: what the send buffer took, what it has
	bSent, bGot  int
	aEOF, bEOF   bool
	aShut, bShut bool
}

type crashRig struct {
	t       *testing.T
	clock   *fakeClock
	link    *relayLink
	gate    *gate
	mem     []byte
	cfg     Config
	a, b    *Table
	lnA     *Listener
	lnB     *Listener
	conns   []*keptConn
	size    int // bytes each way on each connection
	seed    uint64
	crashes int
	victim  uint64 // the socket whose records HookPoison broke; 0: none
	// us and peer are the appliance's address and its peer's (of one
	// family).
	us, peer netip.Addr
}

const keptListenPort = 80

func keptConfig() Config {
	return Config{MaxConns: 8, MaxTimeWait: 8, SendBuffer: 64 << 10, RecvBuffer: 64 << 10, BufferBudget: 1 << 20}
}

func newCrashRig(t *testing.T, imp impair.Impairment, seed uint64, size int) *crashRig {
	return newCrashRigAt(t, imp, seed, size, us, peer)
}

// newCrashRigAt is newCrashRig with the appliance at us and its peer at
// peer.
func newCrashRigAt(t *testing.T, imp impair.Impairment, seed uint64, size int, us, peer netip.Addr) *crashRig {
	clock := &fakeClock{time.Unix(1_700_000_000, 0)}
	l := &relayLink{clock: clock, dir: map[netip.Addr]*impair.Impairer[inflight]{}, tables: map[netip.Addr]*Table{}}
	l.dir[us] = impair.NewImpairer[inflight](imp, rand.New(rand.NewPCG(seed, 1)))
	l.dir[peer] = impair.NewImpairer[inflight](imp, rand.New(rand.NewPCG(seed, 2)))
	l.order = []netip.Addr{us, peer}
	r := &crashRig{t: t, clock: clock, link: l, gate: &gate{l: l}, size: size, seed: seed, us: us, peer: peer}
	r.cfg = keptConfig()
	r.cfg.Clock, r.cfg.Output, r.cfg.Seed, r.cfg.ISNKey = clock, r.gate, seed, [32]byte{1}
	geo, _ := geometryFor(NewTable(r.cfg).cfg, 0)
	r.mem = make([]byte, geo.dataOff+16*(64<<10))
	r.a = NewTable(r.cfg)
	if _, err := r.a.Keep(r.mem); err != nil {
		t.Fatal(err)
	}
	l.tables[us] = r.a
	bcfg := keptConfig()
	bcfg.Clock, bcfg.Output, bcfg.Seed, bcfg.ISNKey = clock, relayOut{l}, seed+100, [32]byte{2}
	r.b = NewTable(bcfg)
	l.tables[peer] = r.b
	var err error
	if r.lnA, err = r.a.Listen(netip.Addr{}, keptListenPort, 4); err != nil {
		t.Fatal(err)
	}
	if r.lnB, err = r.b.Listen(netip.Addr{}, 7, 4); err != nil {
		t.Fatal(err)
	}
	return r
}

// dial opens a connection from the peer to the appliance (accepted there
// on socket sock) and one from the appliance to the peer (socket sock+1).
func (r *crashRig) dial(sock uint64) {
	eb, err := r.b.Connect(r.peer, netip.AddrPortFrom(r.us, keptListenPort))
	if err != nil {
		r.t.Fatal(err)
	}
	r.conns = append(r.conns, &keptConn{sock: sock, b: eb})
	ea, err := r.a.Connect(r.us, netip.AddrPortFrom(r.peer, 7))
	if err != nil {
		r.t.Fatal(err)
	}
	ea.own(owner{sock: sock + 1})
	r.conns = append(r.conns, &keptConn{sock: sock + 1, a: ea})
}

// pattern is the byte at offset i of the stream from side (0: the
// appliance) on connection sock.
func pattern(sock uint64, side, i int) byte { return byte(uint64(i)*7 + sock*13 + uint64(side)*101) }

// commit is the end of the appliance's loop pass: commit, audit, send.
func (r *crashRig) commit() {
	r.a.Commit()
	r.audit()
	r.gate.release()
}

// audit checks that every connection's newest record says what the
// connection is: a change that no touch marked would leave it stale.
func (r *crashRig) audit() {
	k := r.a.keep
	check := func(e *Endpoint) {
		if e.slot == 0 || e.poisoned {
			return
		}
		i := e.slot - 1
		_, rec, _, _, ok := k.newestCopy(i)
		w := enc{b: make([]byte, maxRecord)}
		encodeEndpoint(&w, e)
		if !ok || !bytes.Equal(rec, w.bytes()) {
			r.t.Fatalf("connection %v (%v): its record is stale", e.id, e.state)
		}
	}
	for _, e := range r.a.conns {
		check(e)
	}
	for _, c := range r.conns {
		if c.a != nil && c.a.needsRecord() {
			check(c.a)
		}
	}
}

// crash throws the appliance's Table away, with what it had not committed
// and the segments of its last pass, and makes it again from the kept
// memory.
func (r *crashRig) crash() {
	r.crashes++
	r.gate.pending = r.gate.pending[:0]
	cfg := r.cfg
	cfg.Seed, cfg.ISNKey = r.seed+uint64(r.crashes)*1000, [32]byte{byte(r.crashes)} // the header's key wins
	a := NewTable(cfg)
	ln, err := a.Listen(netip.Addr{}, keptListenPort, 4) // as the store restores it
	if err != nil {
		r.t.Fatal(err)
	}
	owned, err := a.Keep(r.mem)
	if err != nil {
		r.t.Fatal(err)
	}
	r.a, r.lnA = a, ln
	r.link.tables[r.us] = a
	bySock := map[uint64]*Endpoint{}
	for _, e := range owned {
		bySock[e.owner.sock] = e
	}
	for _, c := range r.conns {
		if c.a == nil {
			continue
		}
		c.a = bySock[c.sock]
		if c.a == nil {
			if c.sock == r.victim {
				continue
			}
			r.t.Fatalf("crash %d: connection %d did not come back (%+v)", r.crashes, c.sock, r.a.c)
		}
		// The application resumes: sends from what the buffer took,
		// receives past what it has (servers/ops stream offsets).
		c.aSent = int(c.a.owner.sent)
		if skip := c.aGot - int(c.a.owner.rbase); skip > 0 {
			c.a.Consume(skip)
			c.a.owner.rbase += uint64(skip)
		}
	}
	if r.a.c.KeptLost > 0 && r.victim == 0 {
		r.t.Fatalf("crash %d: %d records lost", r.crashes, r.a.c.KeptLost)
	}
}

// tear is a crash in the middle of a commit: the pass's records written
// but one of them torn (its newest copy broken), and nothing of the pass
// sent. The restart must adopt that record's older copy, which is still
// consistent with what the world saw.
func (r *crashRig) tear(rnd *rand.Rand) {
	unaccepted := map[*keptConn]bool{}
	for _, c := range r.conns {
		unaccepted[c] = c.a == nil
	}
	r.apps()
	k := r.a.keep
	before := k.stamp
	r.a.Commit()
	// A slot this commit wrote, whose other copy holds an older record: a
	// torn first record would lose its connection, rightly. So would a
	// torn first record of its socket, accepted in this pass: its older
	// copy is the connection in the accept queue, which the rig does not
	// expect back (it would accept it again).
	var slots []int
	for _, c := range r.conns {
		if c.a == nil || c.a.slot == 0 || unaccepted[c] {
			continue
		}
		i := c.a.slot - 1
		newest, older := k.copyOf(i, int(k.next[i]^1)), k.copyOf(i, int(k.next[i]))
		if _, _, _, _, ok := k.read(older); ok && binary.LittleEndian.Uint64(newest) > before {
			slots = append(slots, i)
		}
	}
	if len(slots) == 0 {
		return
	}
	i := slots[rnd.IntN(len(slots))]
	c := k.copyOf(i, int(k.next[i]^1))
	c[copyHeader+rnd.IntN(int(c[12])+1)] ^= 0x5a // a torn byte: the CRC fails
}

// apps runs both sides' applications once: accept, write, read.
func (r *crashRig) apps() {
	for _, c := range r.conns {
		if c.a == nil && c.b != nil && c.b.State() >= Established {
			if e, err := r.lnA.Accept(); err == nil {
				e.own(owner{sock: c.sock})
				c.a = e
			}
		}
		if c.b == nil {
			if e, err := r.lnB.Accept(); err == nil {
				c.b = e
			}
		}
	}
	buf := make([]byte, 32<<10)
	for _, c := range r.conns {
		if c.sock == r.victim {
			continue
		}
		if c.a != nil {
			c.aSent, c.aShut = r.write(c.a, c.sock, 0, c.aSent, c.aShut, func(n int) { c.a.owner.sent += uint64(n) })
			c.aGot, c.aEOF = r.read(c.a, c.sock, 1, c.aGot, buf, true)
		}
		if c.b != nil {
			c.bSent, c.bShut = r.write(c.b, c.sock, 1, c.bSent, c.bShut, func(int) {})
			c.bGot, c.bEOF = r.read(c.b, c.sock, 0, c.bGot, buf, false)
		}
	}
}

func (r *crashRig) write(e *Endpoint, sock uint64, side, sent int, shut bool, took func(int)) (int, bool) {
	src := make([]byte, 16<<10)
	for sent < r.size {
		n := min(len(src), r.size-sent)
		for i := range n {
			src[i] = pattern(sock, side, sent+i)
		}
		n, err := e.Write(src[:n])
		took(n)
		sent += n
		if errors.Is(err, ErrWouldBlock) || n == 0 {
			break
		}
		if err != nil {
			r.t.Fatalf("connection %d side %d: Write: %v", sock, side, err)
		}
	}
	if sent == r.size && !shut {
		if err := e.CloseWrite(); err != nil {
			r.t.Fatalf("connection %d side %d: CloseWrite: %v", sock, side, err)
		}
		shut = true
	}
	return sent, shut
}

func (r *crashRig) read(e *Endpoint, sock uint64, from, got int, buf []byte, kept bool) (int, bool) {
	for {
		var n int
		var err error
		if kept {
			n, err = e.ReadKept(buf)
			e.Consume(n)
			e.owner.rbase += uint64(n)
		} else {
			n, err = e.Read(buf)
		}
		for i := range n {
			if buf[i] != pattern(sock, from, got+i) {
				r.t.Fatalf("connection %d: byte %d from side %d differs", sock, got+i, from)
			}
		}
		got += n
		switch {
		case errors.Is(err, io.EOF):
			if got != r.size {
				r.t.Fatalf("connection %d: EOF from side %d after %d bytes, want %d", sock, from, got, r.size)
			}
			return got, true
		case errors.Is(err, ErrWouldBlock):
			return got, false
		case err != nil:
			r.t.Fatalf("connection %d: Read from side %d: %v (crashes %d, state %v, una %d nxt %d snd %d rcvNxt %d, retries %d, %v virtual; %+v)", sock, from, err, r.crashes, e.state, e.sndUna, e.sndNxt, e.snd.Len(), e.rcvNxt, e.retries, r.clock.now.Sub(time.Unix(1_700_000_000, 0)), e.t.c)
		}
	}
}

func (r *crashRig) done() bool {
	for _, c := range r.conns {
		if c.sock != r.victim && (!c.aEOF || !c.bEOF) {
			return false
		}
	}
	return true
}

// run moves everything until every stream ended, crashing the appliance
// every crashEvery steps or so (0: never).
func (r *crashRig) run(crashEvery int) {
	rnd := rand.New(rand.NewPCG(r.seed, 99))
	start := r.clock.now
	nextCrash := -1
	if crashEvery > 0 {
		nextCrash = 1 + rnd.IntN(2*crashEvery)
	}
	for step := 0; !r.done(); step++ {
		if step > 2_000_000 || r.clock.now.Sub(start) > time.Hour {
			r.t.Fatalf("no end after %d steps, %v, %d crashes", step, r.clock.now.Sub(start), r.crashes)
		}
		r.link.deliver()
		if step%3 == 0 { // not every pass: the audit must see changes only segments made
			r.apps()
		}
		r.commit()
		if step == nextCrash {
			if rnd.IntN(2) == 0 {
				r.tear(rnd)
			}
			r.crash()
			nextCrash = step + 1 + rnd.IntN(2*crashEvery)
		}
		r.link.deliver()
		next := r.link.next()
		if next.IsZero() {
			r.t.Fatalf("deadlock at step %d after %d crashes: nothing in flight, no timer", step, r.crashes)
		}
		if next.After(r.clock.now) {
			r.clock.now = next
		}
		r.a.Tick(r.clock.now)
		r.commit()
		r.b.Tick(r.clock.now)
	}
}

// TestKeptConnectionsSurviveCrashes: two connections each way carry 1 MiB
// in both directions over a lossy, reordering link while the appliance's
// Table is made again from the kept memory every few steps; every byte
// arrives, in order, and every stream ends.
func TestKeptConnectionsSurviveCrashes(t *testing.T) {
	for _, tc := range []struct {
		name string
		imp  impair.Impairment
		seed uint64
	}{
		{"clean", impair.Impairment{Delay: 100 * time.Microsecond, Rate: 100_000_000, Limit: 1000}, 1},
		{"lossy", relayImpairment, 2},
		{"lossy2", relayImpairment, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCrashRig(t, tc.imp, tc.seed, 1<<20)
			r.dial(10)
			r.dial(20)
			r.run(40)
			if r.crashes < 10 {
				t.Fatalf("only %d crashes", r.crashes)
			}
			t.Logf("%d crashes; kept %d records at the last; %v virtual", r.crashes, r.a.c.KeptConns, r.clock.now.Sub(time.Unix(1_700_000_000, 0)))
		})
	}
}

// TestKeptConnectionsSurviveCrashesIPv6: the same over IPv6, the
// appliance opening one of the connections (its 16-byte 4-tuple kept and
// restored, its MSS IPv6's).
func TestKeptConnectionsSurviveCrashesIPv6(t *testing.T) {
	us6, peer6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	r := newCrashRigAt(t, relayImpairment, 4, 256<<10, us6, peer6)
	r.dial(10)
	r.run(40)
	if r.crashes < 10 {
		t.Fatalf("only %d crashes", r.crashes)
	}
	for _, c := range r.conns {
		if c.a != nil && (c.a.LocalAddr().Addr() != us6 || c.a.RemoteAddr().Addr() != peer6 || c.a.smss > 1440-12) {
			t.Errorf("connection %d restored as %v -> %v, send MSS %d; want %v -> %v, at most 1428", c.sock, c.a.LocalAddr(), c.a.RemoteAddr(), c.a.smss, us6, peer6)
		}
	}
	t.Logf("%d crashes", r.crashes)
}

// TestKeptConnectionPoisoned: a connection whose records a fault broke
// (HookPoison) is reset after the crash — its peer gets an RST, its socket
// is not restored — and every other connection carries on.
func TestKeptConnectionPoisoned(t *testing.T) {
	r := newCrashRig(t, impair.Impairment{Delay: 100 * time.Microsecond, Rate: 100_000_000, Limit: 1000}, 5, 256<<10)
	r.dial(10)
	r.dial(20)
	for step := 0; ; step++ {
		if step > 10_000 {
			t.Fatal("the connections did not get going")
		}
		r.link.deliver()
		r.apps()
		r.commit()
		going := true
		for _, c := range r.conns {
			going = going && c.a != nil && c.b != nil && c.aGot > 0 && c.bGot > 0
		}
		if going {
			break
		}
		r.link.deliver()
		if next := r.link.next(); next.After(r.clock.now) {
			r.clock.now = next
		}
		r.a.Tick(r.clock.now)
		r.b.Tick(r.clock.now)
	}
	victim := r.a.keep.newest
	r.victim = victim.owner.sock
	var peerEnd *Endpoint
	for _, c := range r.conns {
		if c.sock == r.victim {
			peerEnd = c.b
		}
	}
	r.a.Poison()
	for range 3 { // commits after the poisoning keep the records broken
		r.commit()
	}
	r.crash()
	if r.a.c.KeptLost != 1 {
		t.Fatalf("%d records lost, want 1 (the poisoned one)", r.a.c.KeptLost)
	}
	r.run(0)
	if peerEnd.State() != Closed || !errors.Is(peerEnd.Err(), ErrReset) {
		t.Fatalf("the poisoned connection's peer: %v, %v; want reset", peerEnd.State(), peerEnd.Err())
	}
}

// until moves the link and the Tables (no applications) until cond holds.
func (r *crashRig) until(cond func() bool) {
	for step := 0; !cond(); step++ {
		if step > 10_000 {
			r.t.Fatal("no progress")
		}
		r.commit()
		r.link.deliver()
		if next := r.link.next(); next.After(r.clock.now) {
			r.clock.now = next
		}
		r.a.Tick(r.clock.now)
		r.b.Tick(r.clock.now)
	}
	r.commit() // the end of the pass that made cond true
}

// TestKeptListenerQueues: connections a listener holds — established and
// not yet accepted, and half-open — come back into its queues.
func TestKeptListenerQueues(t *testing.T) {
	r := newCrashRig(t, impair.Impairment{Delay: 100 * time.Microsecond, Rate: 100_000_000, Limit: 1000}, 6, 64<<10)
	// Three connections from the peer; none accepted.
	for i := range 3 {
		eb, err := r.b.Connect(r.peer, netip.AddrPortFrom(r.us, keptListenPort))
		if err != nil {
			t.Fatal(err)
		}
		r.conns = append(r.conns, &keptConn{sock: uint64(100 + i), b: eb})
	}
	r.until(func() bool { return len(r.a.listeners[keptListenPort].synQ) == 3 })
	r.crash() // half-open
	if n := len(r.lnA.synQ); n != 3 {
		t.Fatalf("after the crash, %d half-open, want 3; %+v high %d", n, r.a.c, r.a.keep.high)
	}
	r.until(func() bool { return len(r.lnA.acceptQ) == 3 })
	r.crash() // established, not accepted
	if n := len(r.lnA.acceptQ); n != 3 {
		t.Fatalf("after the crash, %d to accept, want 3", n)
	}
	r.run(20)
}
