package socket

import (
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
)

// TestOpenFollowsAnnouncedGeneration drives Open as init would: the
// Setup's syscall peer, then a new generation announced on the wiring
// socket (shared-memory channel and all); the socket survives the switch
// and the old generation's pool is released to init.
func TestOpenFollowsAnnouncedGeneration(t *testing.T) {
	n := newFakeNet()
	initEnd, compFile, err := wiring.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer initEnd.Close()
	conn, err := wiring.FromFile(compFile)
	compFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	io, err := pool.Create(2000+poolIDs.Add(1), 64, 65536)
	if err != nil {
		t.Fatal(err)
	}
	defer io.Close()
	oldSyscallPool, err := pool.Create(3000+poolIDs.Add(1), 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer oldSyscallPool.Close()
	a, b := channelPair(t)
	srv1 := n.serve(b, io)
	peerPool, err := pool.Open(oldSyscallPool.ID(), oldSyscallPool.Fd(), 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	setup := &wiring.Setup{Name: "app", Generation: 1, Pools: map[string]*pool.Pool{"app.io": io},
		Peers: []*wiring.Peer{{Name: "syscall", Generation: 1, Port: a, Pools: []*pool.Pool{peerPool}}}}
	st, err := Open(conn, setup)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other := newApp(t, n)
	pc := listen(t, st, ":0")
	port := pc.LocalAddr().String()

	// syscall restarts: init announces generation 2.
	srv1.crash()
	ch, err := channel.New(256)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	end, err := ch.Open(channel.B)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := n.serveAfter(srv1, end)
	defer srv2.crash()
	if err := initEnd.Send(wiring.Message{Type: wiring.TypeChannel, Peer: "syscall", Generation: 2, Side: 0}, ch.Files(channel.A)...); err != nil {
		t.Fatal(err)
	}
	m, _, err := initEnd.Recv(3 * time.Second)
	if err != nil || m.Type != wiring.TypeRelease || m.Pool == nil || m.Pool.ID != oldSyscallPool.ID() {
		t.Errorf("init got %+v, %v; want a release of pool %d", m, err, oldSyscallPool.ID())
	}
	waitFor(t, "generation 2 restored", func() bool { s := st.Stats(); return s.Generation == 2 && s.Restored == 1 })
	if pc.LocalAddr().String() != port {
		t.Errorf("LocalAddr after the restart = %v, want %s", pc.LocalAddr(), port)
	}
	listen(t, other.st, ":0").WriteTo([]byte("over shared memory"), pc.LocalAddr())
	if got, _ := recv(t, pc, 100); string(got) != "over shared memory" {
		t.Errorf("ReadFrom = %q", got)
	}
}
