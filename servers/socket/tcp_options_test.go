package socket

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"keepnet/servers/ops"
)

// The socket options of TCPConn (issue 19): what each of Go's net.TCPConn
// methods asks of the transport (OpSetOption), as the fake transport
// records it.

// Both ends are *TCPConn with every method of Go's net.TCPConn that sets
// an option.
var _ interface {
	SetNoDelay(bool) error
	SetKeepAlive(bool) error
	SetKeepAlivePeriod(time.Duration) error
	SetKeepAliveConfig(net.KeepAliveConfig) error
	SetLinger(int) error
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	CloseRead() error
	CloseWrite() error
} = (*TCPConn)(nil)

func TestTCPSocketOptions(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":3000")
	c, a := dialAccept(t, cli.st, l)
	sec := uint64(time.Second)
	for _, tc := range []struct {
		name string
		set  func() error
		want map[ops.Option]uint64
	}{
		{"SetNoDelay(false)", func() error { return a.SetNoDelay(false) }, map[ops.Option]uint64{ops.OptNoDelay: 0}},
		{"SetNoDelay(true)", func() error { return a.SetNoDelay(true) }, map[ops.Option]uint64{ops.OptNoDelay: 1}},
		{"SetKeepAlive(true)", func() error { return a.SetKeepAlive(true) }, map[ops.Option]uint64{ops.OptKeepAlive: 1}},
		{"SetKeepAlivePeriod(1500ms)", func() error { return a.SetKeepAlivePeriod(1500 * time.Millisecond) },
			map[ops.Option]uint64{ops.OptKeepAliveIdle: 2 * sec}}, // rounded up to seconds, as Go does
		{"SetKeepAlivePeriod(0)", func() error { return a.SetKeepAlivePeriod(0) },
			map[ops.Option]uint64{ops.OptKeepAliveIdle: 15 * sec}},
		{"SetKeepAliveConfig", func() error {
			return a.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 3})
		}, map[ops.Option]uint64{ops.OptKeepAlive: 1, ops.OptKeepAliveIdle: 2 * sec, ops.OptKeepAliveInterval: sec, ops.OptKeepAliveCount: 3}},
		{"SetKeepAliveConfig negatives unchanged", func() error {
			return a.SetKeepAliveConfig(net.KeepAliveConfig{Enable: false, Idle: -1, Interval: -1, Count: -1})
		}, map[ops.Option]uint64{ops.OptKeepAlive: 0, ops.OptKeepAliveIdle: 2 * sec, ops.OptKeepAliveInterval: sec, ops.OptKeepAliveCount: 3}},
		{"SetKeepAliveConfig zeros are Go's defaults", func() error { return a.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true}) },
			map[ops.Option]uint64{ops.OptKeepAlive: 1, ops.OptKeepAliveIdle: 15 * sec, ops.OptKeepAliveInterval: 15 * sec, ops.OptKeepAliveCount: 9}},
		{"SetLinger(0)", func() error { return a.SetLinger(0) }, map[ops.Option]uint64{ops.OptLinger: 0}},
		{"SetLinger(-5)", func() error { return a.SetLinger(-5) }, map[ops.Option]uint64{ops.OptLinger: ^uint64(0)}},
		{"SetReadBuffer", func() error { return a.SetReadBuffer(1 << 20) }, map[ops.Option]uint64{ops.OptRecvBuffer: 1 << 20}},
		{"SetWriteBuffer", func() error { return a.SetWriteBuffer(256 << 10) }, map[ops.Option]uint64{ops.OptSendBuffer: 256 << 10}},
	} {
		if err := tc.set(); err != nil {
			t.Fatalf("%s = %v", tc.name, err)
		}
		for o, want := range tc.want {
			if got, ok := n.option(srv.srv, a.c.id, o); !ok || got != want {
				t.Errorf("%s: %v = %d (set %v), want %d", tc.name, o, got, ok, want)
			}
		}
	}
	if _, ok := n.option(cli.srv, c.c.id, ops.OptNoDelay); ok {
		t.Error("the other end's options changed")
	}

	// The transport refuses: EINVAL in a *net.OpError, Op "set".
	n.mu.Lock()
	delete(srv.srv.socks[a.c.id].tcp.opts, ops.OptNoDelay)
	peer := srv.srv.socks[a.c.id].tcp.peer
	srv.srv.socks[a.c.id].tcp.peer = nil // not a connection, to the fake
	n.mu.Unlock()
	err := a.SetNoDelay(true)
	n.mu.Lock()
	srv.srv.socks[a.c.id].tcp.peer = peer
	n.mu.Unlock()
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "set" || !errors.Is(err, syscall.EINVAL) {
		t.Errorf("SetNoDelay refused = %v, want a *net.OpError set with EINVAL", err)
	}
	a.Close()
	if err := a.SetKeepAlive(true); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetKeepAlive after Close = %v, want net.ErrClosed", err)
	}
}

// TestTCPOptionAcrossSyscallRestart: an option whose answer died with the
// SYSCALL server is set again on the next generation (the request is
// reissued); options set before stay in the transport.
func TestTCPOptionAcrossSyscallRestart(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":3001")
	_, a := dialAccept(t, cli.st, l)
	if err := a.SetKeepAlivePeriod(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	srv.srv.loseReplies = true
	n.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- a.SetKeepAlive(true) }()
	waitFor(t, "the option reached the transport", func() bool {
		_, ok := n.option(srv.srv, a.c.id, ops.OptKeepAlive)
		return ok
	})
	srv.restart(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SetKeepAlive across the restart = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetKeepAlive never returned across the restart")
	}
	if got := srv.srv.count(ops.OpSetOption); got != 1 {
		t.Errorf("the new generation got %d OpSetOption, want the reissued 1", got)
	}
	if v, _ := n.option(srv.srv, a.c.id, ops.OptKeepAliveIdle); v != uint64(2*time.Second) {
		t.Errorf("keep-alive idle %d after the restart, want 2 s", v)
	}
}

// TestTCPLingerCloseWaits: with a linger, Close waits for the transport's
// answer (which comes once the peer acknowledged everything) past the
// second a close otherwise waits at most.
func TestTCPLingerCloseWaits(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":3002")
	_, a := dialAccept(t, cli.st, l)
	if err := a.SetLinger(3); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	srv.srv.holdCloses = true
	n.mu.Unlock()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- a.Close() }()
	select {
	case err := <-done:
		t.Fatalf("Close returned after %v (%v), before the lingering close was answered", time.Since(start), err)
	case <-time.After(closeWait + 300*time.Millisecond):
	}
	srv.srv.releaseCloses()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return once answered")
	}
}

// TestTCPCloseRead: after CloseRead, Read returns io.EOF at once and bytes
// that arrive are dropped, while writing goes on (shutdown(SHUT_RD), which
// the transport is not told of).
func TestTCPCloseRead(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":3003")
	c, a := dialAccept(t, cli.st, l)
	if err := a.CloseRead(); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("dropped"))
	if n, err := a.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read after CloseRead = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := a.Write([]byte("still")); err != nil {
		t.Fatalf("Write after CloseRead = %v", err)
	}
	if got := readN(t, c, 5); string(got) != "still" {
		t.Errorf("the peer read %q, want still", got)
	}
}
