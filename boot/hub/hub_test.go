package hub

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keepnet/kernel/wiring"
)

type fakePool struct {
	id     uint32
	f      *os.File
	mu     *sync.Mutex
	closed map[uint32]bool
}

func (p *fakePool) Fd() *os.File { return p.f }
func (p *fakePool) Huge() bool   { return true }
func (p *fakePool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed[p.id] = true
	return p.f.Close()
}

type fixture struct {
	t      *testing.T
	hub    *Hub
	mu     sync.Mutex
	closed map[uint32]bool
}

func newFixture(t *testing.T) *fixture {
	return newFixtureOf(t, []Node{
		{Name: "ip", Peers: []string{"e1000.0"}, Pools: []PoolSpec{{Name: "ip.rx", Bufs: 8, BufSize: 2048}}},
		{Name: "e1000.0", Peers: []string{"ip"}, Regions: []RegionSpec{{Name: "e1000.0.rings", Bufs: 2, BufSize: 4096}}},
	})
}

// newFixtureOf is a fixture wiring nodes.
func newFixtureOf(t *testing.T, nodes []Node) *fixture {
	fx := &fixture{t: t, closed: map[uint32]bool{}}
	devnull := func() *os.File {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := Factory{
		Channel: func() ([]*os.File, error) { return []*os.File{devnull(), devnull(), devnull()}, nil },
		Pool: func(name string, id uint32, bufs, bufSize int) (Pool, error) {
			return &fakePool{id: id, f: devnull(), mu: &fx.mu, closed: fx.closed}, nil
		},
	}
	h, err := New(nodes, f, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	fx.hub = h
	return fx
}

func (fx *fixture) isClosed(id uint32) bool {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.closed[id]
}

// start begins a generation of name and says hello, like a component.
func (fx *fixture) start(name string) *wiring.Conn {
	c, _ := fx.startCounting(name)
	return c
}

// startCounting is start, also returning how many times the hub called the
// generation's ready function.
func (fx *fixture) startCounting(name string) (*wiring.Conn, *atomic.Int32) {
	ready := new(atomic.Int32)
	files, err := fx.hub.ExtraFiles(name)(func() { ready.Add(1) })
	if err != nil || len(files) != 1 {
		fx.t.Fatalf("ExtraFiles(%s) = %v, %v", name, files, err)
	}
	c, err := wiring.FromFile(files[0])
	if err != nil {
		fx.t.Fatal(err)
	}
	files[0].Close()
	fx.t.Cleanup(func() { c.Close() })
	if err := c.Send(wiring.Message{Type: wiring.TypeHello}); err != nil {
		fx.t.Fatal(err)
	}
	return c, ready
}

// expect reads the next message and checks its type and descriptor count.
func (fx *fixture) expect(c *wiring.Conn, typ string, nfiles int) wiring.Message {
	fx.t.Helper()
	m, files, err := c.Recv(2 * time.Second)
	for err == nil && m.Type == wiring.TypePing && typ != wiring.TypePing {
		m, files, err = c.Recv(2 * time.Second) // pings come at any time
	}
	if err != nil {
		fx.t.Fatalf("waiting for %s: %v", typ, err)
	}
	for _, f := range files {
		f.Close()
	}
	if m.Type != typ || len(files) != nfiles {
		fx.t.Fatalf("got %+v with %d fds, want %s with %d", m, len(files), typ, nfiles)
	}
	return m
}

func TestHubWiringAndRestarts(t *testing.T) {
	fx := newFixture(t)

	ip := fx.start("ip")
	if m := fx.expect(ip, wiring.TypeWelcome, 0); m.Name != "ip" || m.Generation != 1 {
		t.Errorf("welcome = %+v, want ip generation 1", m)
	}
	pool1 := fx.expect(ip, wiring.TypePool, 1).Pool
	fx.expect(ip, wiring.TypeReady, 0) // the driver is not there yet: no channel

	drv := fx.start("e1000.0")
	fx.expect(drv, wiring.TypeWelcome, 0)
	if m := fx.expect(drv, wiring.TypeRegion, 1); m.Name != "e1000.0.rings" || m.Pool == nil || m.Pool.Bufs != 2 {
		t.Errorf("region = %+v, want e1000.0.rings", m)
	}
	if m := fx.expect(drv, wiring.TypeChannel, 4); m.Peer != "ip" || m.Generation != 1 || m.Side != 0 || len(m.Pools) != 1 || m.Pools[0].ID != pool1.ID {
		t.Errorf("driver's channel = %+v, want ip generation 1 side 0 with pool %d", m, pool1.ID)
	}
	fx.expect(drv, wiring.TypeReady, 0)
	if m := fx.expect(ip, wiring.TypeChannel, 3); m.Peer != "e1000.0" || m.Generation != 1 || m.Side != 1 {
		t.Errorf("ip's channel = %+v, want e1000.0 generation 1 side 1", m)
	}

	// ip crashes and restarts: a new pool; the old one stays while the
	// driver may DMA into it.
	ip2 := fx.start("ip")
	fx.expect(ip2, wiring.TypeWelcome, 0)
	pool2 := fx.expect(ip2, wiring.TypePool, 1).Pool
	if pool2.ID == pool1.ID {
		t.Fatalf("restarted ip got pool %d again, want a new pool", pool1.ID)
	}
	fx.expect(ip2, wiring.TypeChannel, 3)
	fx.expect(ip2, wiring.TypeReady, 0)
	if m := fx.expect(drv, wiring.TypeChannel, 4); m.Generation != 2 || m.Pools[0].ID != pool2.ID {
		t.Errorf("driver told of ip restart with %+v, want generation 2 and pool %d", m, pool2.ID)
	}
	if fx.isClosed(pool1.ID) || fx.hub.OldPools() != 1 {
		t.Fatalf("old pool closed=%v, held=%d before the driver released it; want kept", fx.isClosed(pool1.ID), fx.hub.OldPools())
	}
	// The driver resets its device and releases the old pool.
	drv.Send(wiring.Message{Type: wiring.TypeRelease, Pool: pool1})
	waitFor(t, func() bool { return fx.isClosed(pool1.ID) }, "the released pool to be closed")

	// ip restarts again, and the driver crashes before releasing: its next
	// generation's hello (after a device reset) frees the old pool.
	ip3 := fx.start("ip")
	fx.expect(ip3, wiring.TypeWelcome, 0)
	fx.expect(ip3, wiring.TypePool, 1)
	fx.expect(ip3, wiring.TypeChannel, 3)
	fx.expect(ip3, wiring.TypeReady, 0)
	fx.expect(drv, wiring.TypeChannel, 4)
	if fx.isClosed(pool2.ID) {
		t.Fatal("pool 2 closed while the driver still held it")
	}
	drv2 := fx.start("e1000.0")
	fx.expect(drv2, wiring.TypeWelcome, 0)
	waitFor(t, func() bool { return fx.isClosed(pool2.ID) }, "the new driver generation's hello to free pool 2")
	fx.expect(drv2, wiring.TypeRegion, 1)
	fx.expect(drv2, wiring.TypeChannel, 4)
	fx.expect(drv2, wiring.TypeReady, 0)
	if m := fx.expect(ip3, wiring.TypeChannel, 3); m.Generation != 2 {
		t.Errorf("ip told of the driver restart with %+v, want generation 2", m)
	}
}

func TestNewRejectsBadTopology(t *testing.T) {
	for _, nodes := range [][]Node{
		{{Name: "a", Peers: []string{"b"}}},
		{{Name: "a", Peers: []string{"b"}}, {Name: "b"}},
		{{Name: "a"}, {Name: "a"}},
	} {
		if _, err := New(nodes, Factory{}, t.Logf); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", nodes)
		}
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // only a hang takes this long
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A generation's up on its wiring socket is passed to the supervisor as that
// generation's readiness, and only that generation's: an up from a process
// already superseded counts for nobody.
func TestUpIsThatGenerationsReadiness(t *testing.T) {
	fx := newFixture(t)
	ip1, ready1 := fx.startCounting("ip")
	fx.expect(ip1, wiring.TypeWelcome, 0)
	ip2, ready2 := fx.startCounting("ip") // ip restarted before generation 1 said up
	fx.expect(ip2, wiring.TypeWelcome, 0)

	ip1.Send(wiring.Message{Type: wiring.TypeUp})
	ip2.Send(wiring.Message{Type: wiring.TypeUp})
	waitFor(t, func() bool { return ready2.Load() == 1 }, "generation 2's ready called once")
	if got := ready1.Load(); got != 0 {
		t.Errorf("superseded generation 1 said up: its ready called %d times, want 0", got)
	}
}

// Once a generation has said hello the hub pings it, and passes its pongs to
// the supervisor as that generation's sign of life, and only that
// generation's.
func TestPongIsThatGenerationsLiveness(t *testing.T) {
	fx := newFixture(t)
	var alive1, alive2 atomic.Int32
	ip1 := fx.start("ip")
	fx.hub.Liveness("ip")(func() { alive1.Add(1) })
	fx.expect(ip1, wiring.TypeWelcome, 0)
	ping := fx.awaitPing(ip1)
	ip1.Send(wiring.Message{Type: wiring.TypePong, Seq: ping.Seq})
	waitFor(t, func() bool { return alive1.Load() == 1 }, "generation 1's alive called")

	ip2 := fx.start("ip")
	fx.hub.Liveness("ip")(func() { alive2.Add(1) })
	fx.expect(ip2, wiring.TypeWelcome, 0)
	ping = fx.awaitPing(ip2)
	before := alive1.Load() // its pings have stopped
	ip1.Send(wiring.Message{Type: wiring.TypePong, Seq: ping.Seq + 1})
	ip2.Send(wiring.Message{Type: wiring.TypePong, Seq: ping.Seq})
	waitFor(t, func() bool { return alive2.Load() >= 1 }, "generation 2's alive called")
	if got := alive1.Load(); got != before {
		t.Errorf("superseded generation 1's pong counted: its alive called %d times, want %d", got, before)
	}
	if err := fx.hub.Hook("ip", wiring.HookSpin); err != nil {
		t.Fatal(err)
	}
	if m := fx.expect(ip2, wiring.TypeHook, 0); m.Name != wiring.HookSpin {
		t.Errorf("Hook sent %+v, want hook %s", m, wiring.HookSpin)
	}
}

// awaitPing reads c until a ping comes (within a few PingEvery).
func (fx *fixture) awaitPing(c *wiring.Conn) wiring.Message {
	fx.t.Helper()
	for {
		m, files, err := c.Recv(10 * PingEvery)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			fx.t.Fatalf("waiting for a ping: %v", err)
		}
		if m.Type == wiring.TypePing {
			return m
		}
	}
}

// A ping sent after the last one was answered counts as a sign of life (a
// pause of the whole machine sends none, so it leaves none unanswered); a
// ping sent while one is unanswered does not.
func TestPingAfterAnswerIsLife(t *testing.T) {
	fx := newFixture(t)
	var alive atomic.Int32
	ip := fx.start("ip")
	fx.hub.Liveness("ip")(func() { alive.Add(1) })
	p := fx.awaitPing(ip)
	ip.Send(wiring.Message{Type: wiring.TypePong, Seq: p.Seq})
	waitFor(t, func() bool { return alive.Load() == 1 }, "the pong counted")
	fx.awaitPing(ip) // sent after an answer: life
	if got := alive.Load(); got != 2 {
		t.Fatalf("after a ping that follows an answer, alive called %d times, want 2", got)
	}
	fx.awaitPing(ip) // the previous one is unanswered
	fx.awaitPing(ip)
	if got := alive.Load(); got != 2 {
		t.Errorf("pings unanswered, yet alive called %d times, want still 2", got)
	}
}

// Arm reaches the current generation, and only it, as a TypeArm with the
// site and its trigger, and says which generation that is; a component
// that is not wired or not up cannot be armed.
func TestArmReachesCurrentGeneration(t *testing.T) {
	fx := newFixture(t)
	ip1 := fx.start("ip")
	fx.expect(ip1, wiring.TypeWelcome, 0)
	ip2 := fx.start("ip")
	fx.expect(ip2, wiring.TypeWelcome, 0)

	want := wiring.FaultArm{Site: 1234, After: 3, Prob: 0.25, Seed: 99}
	gen, err := fx.hub.Arm("ip", want)
	if err != nil || gen != 2 {
		t.Fatalf("Arm(ip) = generation %d, %v; want generation 2", gen, err)
	}
	fx.expect(ip2, wiring.TypePool, 1)
	fx.expect(ip2, wiring.TypeReady, 0)
	if m := fx.expect(ip2, wiring.TypeArm, 0); m.Fault == nil || *m.Fault != want {
		t.Errorf("generation 2 received arm %+v, want %+v", m.Fault, want)
	}
	if gen, err := fx.hub.Arm("ip", wiring.FaultArm{}); err != nil || gen != 2 {
		t.Errorf("disarm: Arm(ip, site 0) = %d, %v", gen, err)
	}
	if m := fx.expect(ip2, wiring.TypeArm, 0); m.Fault == nil || m.Fault.Site != 0 {
		t.Errorf("disarm sent %+v, want site 0", m.Fault)
	}
	for _, name := range []string{"pf", "e1000.0"} {
		if _, err := fx.hub.Arm(name, want); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Arm(%s) = %v, want an error naming it (not wired, not up)", name, err)
		}
	}
}
