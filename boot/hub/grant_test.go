package hub

import (
	"testing"
	"time"

	"keepnet/kernel/wiring"
)

// grantNodes: an application whose pool syscall (its neighbour) and tcp
// (not its neighbour, granted the pool) both fill.
func grantNodes() []Node {
	return []Node{
		{Name: "app", Peers: []string{"syscall"}, Pools: []PoolSpec{{Name: "app.io", Bufs: 4, BufSize: 2048, Writers: []string{"syscall", "tcp"}, Granted: []string{"tcp"}}}},
		{Name: "syscall", Peers: []string{"app", "tcp"}},
		{Name: "tcp", Peers: []string{"syscall"}},
	}
}

// A pool granted to a component that is not its owner's neighbour reaches
// it with every generation of the owner, before the owner's neighbours
// hear of that generation, whichever says hello first; a superseded
// generation's pool is freed only once the grantee released it too (or
// restarted).
func TestGrants(t *testing.T) {
	fx := newFixtureOf(t, grantNodes())
	tcp := fx.start("tcp")
	fx.expect(tcp, wiring.TypeWelcome, 0)
	fx.expect(tcp, wiring.TypeReady, 0) // nobody else yet: no grant, no channel

	sys := fx.start("syscall")
	fx.expect(sys, wiring.TypeWelcome, 0)
	fx.expect(sys, wiring.TypeChannel, 3) // tcp's (tcp has no pools)
	fx.expect(sys, wiring.TypeReady, 0)
	fx.expect(tcp, wiring.TypeChannel, 3)

	// The application starts: tcp is granted its pool before syscall
	// gets the application's channel.
	app := fx.start("app")
	fx.expect(app, wiring.TypeWelcome, 0)
	pool1 := fx.expect(app, wiring.TypePool, 1).Pool
	g := fx.expect(tcp, wiring.TypeGrant, 1)
	if g.Peer != "app" || g.Generation != 1 || len(g.Pools) != 1 || g.Pools[0].ID != pool1.ID {
		t.Errorf("grant %+v, want app generation 1 with pool %d", g, pool1.ID)
	}
	fx.expect(app, wiring.TypeChannel, 3)
	fx.expect(app, wiring.TypeReady, 0)
	if m := fx.expect(sys, wiring.TypeChannel, 4); m.Peer != "app" || m.Pools[0].ID != pool1.ID {
		t.Errorf("syscall's channel %+v, want app's with pool %d", m, pool1.ID)
	}

	// tcp restarts: its new generation is granted the pool at its hello,
	// before its channels.
	tcp2 := fx.start("tcp")
	fx.expect(tcp2, wiring.TypeWelcome, 0)
	if g := fx.expect(tcp2, wiring.TypeGrant, 1); g.Peer != "app" || g.Pools[0].ID != pool1.ID {
		t.Errorf("restarted tcp's grant %+v, want app's pool %d", g, pool1.ID)
	}
	fx.expect(tcp2, wiring.TypeChannel, 3)
	fx.expect(tcp2, wiring.TypeReady, 0)
	fx.expect(sys, wiring.TypeChannel, 3)

	// The application restarts: a new pool granted; the old one is held
	// until both syscall and tcp released it.
	app2 := fx.start("app")
	fx.expect(app2, wiring.TypeWelcome, 0)
	pool2 := fx.expect(app2, wiring.TypePool, 1).Pool
	if g := fx.expect(tcp2, wiring.TypeGrant, 1); g.Generation != 2 || g.Pools[0].ID != pool2.ID {
		t.Errorf("grant %+v, want app generation 2 with pool %d", g, pool2.ID)
	}
	fx.expect(sys, wiring.TypeChannel, 4)
	sys.Send(wiring.Message{Type: wiring.TypeRelease, Pool: pool1})
	time.Sleep(50 * time.Millisecond) // for the hub to take it (a wrong close would show)
	if fx.isClosed(pool1.ID) || fx.hub.OldPools() != 1 {
		t.Fatal("the old pool closed while tcp still mapped it")
	}
	tcp2.Send(wiring.Message{Type: wiring.TypeRelease, Pool: pool1})
	waitFor(t, func() bool { return fx.isClosed(pool1.ID) }, "the old pool to be closed once tcp released it")
}

// A grant must name a component that is not the owner or its neighbour,
// and a writer must be a neighbour or a grantee.
func TestNewRejectsBadGrants(t *testing.T) {
	for _, spec := range []PoolSpec{
		{Name: "p", Granted: []string{"nobody"}},
		{Name: "p", Granted: []string{"syscall"}}, // a neighbour: it gets the pool with its channel
		{Name: "p", Granted: []string{"app"}},     // the owner
		{Name: "p", Writers: []string{"tcp"}},     // neither neighbour nor grantee
	} {
		nodes := grantNodes()
		nodes[0].Pools = []PoolSpec{spec}
		if _, err := New(nodes, Factory{}, t.Logf); err == nil {
			t.Errorf("New with app's pool %+v succeeded, want an error", spec)
		}
	}
}
