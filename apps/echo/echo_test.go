package echo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// pattern returns n bytes that differ from their neighbours, so a reordered
// or dropped chunk shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// startTCP serves s on a loopback listener until the test ends and returns
// its address and a function that stops it and returns ServeTCP's result.
func startTCP(t *testing.T, s *Server) (addr string, stop func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeTCP(ctx, l) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Error("ServeTCP did not return after cancel")
			return nil
		}
	})
	t.Cleanup(func() { stop() })
	return l.Addr().String(), stop
}

// roundTrip writes data on a fresh connection, half-closes it and returns
// everything read back until EOF.
func roundTrip(addr string, data []byte) ([]byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err := <-werr; err != nil {
		return got, fmt.Errorf("write: %w", err)
	}
	return got, err
}

func TestTCPEchoHalfClose(t *testing.T) {
	var s Server
	addr, stop := startTCP(t, &s)
	var total int64
	for _, n := range []int{0, 1, 1000, 32 << 10, 4<<20 + 5} {
		want := pattern(n)
		got, err := roundTrip(addr, want)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("echo of %d bytes then CloseWrite = %d bytes, %v; want the same %d bytes, then EOF", n, len(got), err, n)
		}
		total += int64(n)
	}
	if err := stop(); err != nil {
		t.Errorf("ServeTCP after cancel = %v, want nil", err)
	}
	if got := s.Stats.TCPBytes.Load(); got != total {
		t.Errorf("Stats.TCPBytes = %d, want %d", got, total)
	}
	if got := s.Stats.TCPAccepted.Load(); got != 5 {
		t.Errorf("Stats.TCPAccepted = %d, want 5", got)
	}
	if got := s.Stats.TCPActive.Load(); got != 0 {
		t.Errorf("Stats.TCPActive = %d, want 0", got)
	}
}

func TestTCPEchoConcurrent(t *testing.T) {
	var s Server
	addr, _ := startTCP(t, &s)
	const conns = 20
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			want := pattern(100000 + i)
			got, err := roundTrip(addr, want)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("connection %d: got %d bytes back, want the %d sent", i, len(got), len(want))
			}
			errs <- err
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestTCPCancelClosesConnections: cancelling ends open connections too, and
// ServeTCP waits for them.
func TestTCPCancelClosesConnections(t *testing.T) {
	var s Server
	addr, stop := startTCP(t, &s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo of ping = %q, %v", buf, err)
	}
	if err := stop(); err != nil {
		t.Errorf("ServeTCP after cancel = %v, want nil", err)
	}
	if got := s.Stats.TCPActive.Load(); got != 0 {
		t.Errorf("Stats.TCPActive after ServeTCP returned = %d, want 0", got)
	}
	if n, err := c.Read(buf); err == nil {
		t.Errorf("Read on a connection after cancel = %d, nil; want EOF or reset", n)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("Dial after cancel succeeded, want the listener closed")
	}
}

func TestTCPMaxConns(t *testing.T) {
	s := Server{MaxConns: 1}
	addr, _ := startTCP(t, &s)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	first.SetDeadline(time.Now().Add(5 * time.Second))
	first.Write([]byte("a"))
	if _, err := io.ReadFull(first, make([]byte, 1)); err != nil {
		t.Fatalf("first connection: %v", err)
	}

	second, err := net.Dial("tcp", addr) // completes in the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.Write([]byte("b"))
	second.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := second.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("second connection over MaxConns=1: Read = %d, %v; want a timeout", n, err)
	}

	first.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(second, buf); err != nil || buf[0] != 'b' {
		t.Errorf("second connection after the first closed: echo = %q, %v; want \"b\"", buf, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestTCPIdleTimeout(t *testing.T) {
	s := Server{IdleTimeout: 50 * time.Millisecond}
	addr, _ := startTCP(t, &s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("Read on an idle connection = %d, nil; want it closed by the server", n)
	}
}

func TestUDPEcho(t *testing.T) {
	var s Server
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeUDP(ctx, pc) }()

	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	sizes := []int{0, 1, 512, 1472, 9000, 65507} // 65507: the largest IPv4 UDP payload
	var total int64
	buf := make([]byte, 70000)
	for _, n := range sizes {
		want := pattern(n)
		if _, err := c.Write(want); err != nil {
			t.Fatalf("send %d bytes: %v", n, err)
		}
		got, err := c.Read(buf)
		if err != nil || !bytes.Equal(buf[:got], want) {
			t.Errorf("echo of a %d-byte datagram = %d bytes, %v; want the same %d bytes", n, got, err, n)
		}
		total += int64(n)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeUDP after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeUDP did not return after cancel")
	}
	if got, want := s.Stats.UDPPackets.Load(), int64(len(sizes)); got != want {
		t.Errorf("Stats.UDPPackets = %d, want %d", got, want)
	}
	if got := s.Stats.UDPBytes.Load(); got != total {
		t.Errorf("Stats.UDPBytes = %d, want %d", got, total)
	}
}

func TestServeTCPListenerError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := new(Server).ServeTCP(context.Background(), l); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServeTCP on a closed listener = %v, want %v", err, net.ErrClosed)
	}
}

// failingPC is a PacketConn that reads n datagrams, fails every send, then
// reports the end of input.
type failingPC struct {
	net.PacketConn
	n int
}

var errSend = errors.New("no buffers")

func (f *failingPC) ReadFrom(p []byte) (int, net.Addr, error) {
	if f.n == 0 {
		return 0, nil, io.EOF
	}
	f.n--
	return copy(p, "x"), &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9}, nil
}
func (f *failingPC) WriteTo([]byte, net.Addr) (int, error) { return 0, errSend }
func (f *failingPC) Close() error                          { return nil }

func TestUDPDroppedEchoesLogged(t *testing.T) {
	var logged []string
	s := Server{Logf: func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) }}
	if err := s.ServeUDP(context.Background(), &failingPC{n: 250}); !errors.Is(err, io.EOF) {
		t.Fatalf("ServeUDP = %v, want the read error %v", err, io.EOF)
	}
	if got := s.Stats.UDPDropped.Load(); got != 250 {
		t.Errorf("Stats.UDPDropped = %d, want 250", got)
	}
	// The first drop, then every hundredth: 1, 100, 200.
	if len(logged) != 3 || !strings.Contains(logged[0], "(1 so far): no buffers") || !strings.Contains(logged[2], "(200 so far)") {
		t.Errorf("logged %q; want the 1st, 100th and 200th drops with the error", logged)
	}
}

// kaConn is a connection whose reads fail with err once its keep-alive
// is configured, as a keepnet or Linux connection whose peer vanished.
type kaConn struct {
	net.Conn
	mu  sync.Mutex
	got net.KeepAliveConfig
	err error
}

func (c *kaConn) SetKeepAliveConfig(k net.KeepAliveConfig) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = k
	return nil
}

func (c *kaConn) Read([]byte) (int, error) { return 0, c.err }

// oneConnListener accepts c once, then blocks until closed.
type oneConnListener struct {
	c      chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestTCPKeepAliveFailureReported: a server with KeepAlive sets it on each
// connection, and a connection that fails (keep-alive gave up: ETIMEDOUT)
// is counted and logged, where an end of stream is not.
func TestTCPKeepAliveFailureReported(t *testing.T) {
	cfg := net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 3}
	var logged []string
	var mu sync.Mutex
	s := Server{KeepAlive: cfg, Logf: func(f string, args ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(f, args...))
		mu.Unlock()
	}}
	a, b := net.Pipe()
	defer b.Close()
	timedOut := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection timed out")}
	c := &kaConn{Conn: a, err: timedOut}
	l := &oneConnListener{c: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.c <- c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeTCP(ctx, l) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats.TCPFailed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	c.mu.Lock()
	got := c.got
	c.mu.Unlock()
	if got != cfg {
		t.Errorf("SetKeepAliveConfig(%+v), want %+v", got, cfg)
	}
	mu.Lock()
	defer mu.Unlock()
	if s.Stats.TCPFailed.Load() != 1 || len(logged) != 1 || !strings.Contains(logged[0], "connection failed") || !strings.Contains(logged[0], "timed out") {
		t.Errorf("TCPFailed %d, logged %q; want 1 and the failure", s.Stats.TCPFailed.Load(), logged)
	}
}
