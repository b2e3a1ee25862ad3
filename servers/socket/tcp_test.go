package socket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/ops"
)

// listenTCP opens a listener or fails the test.
func listenTCP(t *testing.T, st *Stack, address string) *TCPListener {
	t.Helper()
	l, err := st.Listen("tcp", address)
	if err != nil {
		t.Fatalf("Listen(tcp, %q) = %v", address, err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*TCPListener)
}

// dialAccept dials l from cli and accepts on l: the client's and the
// server's ends of one connection.
func dialAccept(t *testing.T, cli *Stack, l *TCPListener) (client, server *TCPConn) {
	t.Helper()
	port := l.Addr().(*net.TCPAddr).Port
	c, err := cli.DialTCP(context.Background(), "tcp", net.JoinHostPort(hostIP.String(), itoa(port)))
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	acc := make(chan *TCPConn, 1)
	go func() {
		a, err := l.AcceptTCP()
		if err != nil {
			t.Errorf("Accept = %v", err)
		}
		acc <- a
	}()
	select {
	case a := <-acc:
		if a == nil {
			t.FailNow()
		}
		t.Cleanup(func() { a.Close() })
		return c, a
	case <-time.After(3 * time.Second):
		t.Fatal("Accept did not return")
	}
	return nil, nil
}

func itoa(i int) string { return (&net.TCPAddr{Port: i}).String()[1:] }

// readN reads exactly n bytes within a few seconds.
func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if k, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("ReadFull(%d) = %d, %v", n, k, err)
	}
	return b
}

func TestTCPDialAccept(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":8080")
	if got, want := l.Addr().String(), "0.0.0.0:8080"; got != want {
		t.Errorf("Addr = %s, want %s", got, want)
	}
	c, a := dialAccept(t, cli.st, l)
	if got, want := c.RemoteAddr().String(), "10.0.0.2:8080"; got != want {
		t.Errorf("client RemoteAddr = %s, want %s", got, want)
	}
	if a.RemoteAddr().String() != c.LocalAddr().String() || a.LocalAddr().String() != "10.0.0.2:8080" {
		t.Errorf("server end %v <- %v, want 10.0.0.2:8080 <- %v", a.LocalAddr(), a.RemoteAddr(), c.LocalAddr())
	}
	for _, tc := range []struct {
		from, to *TCPConn
		msg      string
	}{{c, a, "GET / HTTP/1.0\r\n\r\n"}, {a, c, "HTTP/1.0 200 OK\r\n"}, {c, a, "x"}} {
		if k, err := tc.from.Write([]byte(tc.msg)); k != len(tc.msg) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", tc.msg, k, err)
		}
		if got := readN(t, tc.to, len(tc.msg)); string(got) != tc.msg {
			t.Errorf("Read = %q, want %q", got, tc.msg)
		}
	}
	// The same Stack dials itself too.
	c2, a2 := dialAccept(t, srv.st, l)
	c2.Write([]byte("loop"))
	if got := readN(t, a2, 4); string(got) != "loop" {
		t.Errorf("Read on a connection within one Stack = %q", got)
	}
}

func TestTCPBulkBothWays(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":9000")
	c, a := dialAccept(t, cli.st, l)
	const size = 1 << 20
	up, down := make([]byte, size), make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(up)
	rng.Read(down)
	type result struct {
		sum [32]byte
		err error
	}
	sink := func(conn *TCPConn, res chan<- result) {
		h := sha256.New()
		_, err := io.Copy(h, conn)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.err = err
		res <- r
	}
	upc, downc := make(chan result, 1), make(chan result, 1)
	go sink(a, upc)
	go sink(c, downc)
	errc := make(chan error, 2)
	send := func(conn *TCPConn, b []byte) {
		// Odd write sizes, some larger than a pool buffer.
		for len(b) > 0 {
			k := min(len(b), 1+rand.IntN(100000))
			if _, err := conn.Write(b[:k]); err != nil {
				errc <- err
				return
			}
			b = b[k:]
		}
		errc <- conn.CloseWrite()
	}
	go send(c, up)
	go send(a, down)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("sender: %v", err)
		}
	}
	for _, tc := range []struct {
		name string
		res  chan result
		want []byte
	}{{"client to server", upc, up}, {"server to client", downc, down}} {
		select {
		case r := <-tc.res:
			if r.err != nil || r.sum != sha256.Sum256(tc.want) {
				t.Errorf("%s: SHA-256 %x, %v; want %x, nil", tc.name, r.sum, r.err, sha256.Sum256(tc.want))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: reader never reached EOF", tc.name)
		}
	}
}

func TestTCPPartialTakes(t *testing.T) {
	n := newFakeNet()
	n.takeMax, n.rcvBuf = 1000, 4000 // every send is taken in pieces
	ap := newApp(t, n)
	l := listenTCP(t, ap.st, ":9001")
	c, a := dialAccept(t, ap.st, l)
	msg := make([]byte, 150000) // three pool buffers' worth
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(a)
		got <- b
	}()
	if k, err := c.Write(msg); k != len(msg) || err != nil {
		t.Fatalf("Write = %d, %v, want %d, nil", k, err, len(msg))
	}
	c.CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, msg) {
			t.Errorf("the server read %d bytes, differing from the %d written", len(b), len(msg))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EOF")
	}
	// One send per pool buffer: the transport takes each in pieces and
	// answers when it has all of it.
	if sends, want := ap.srv.count(ops.OpSendTo), (len(msg)+ap.st.pool.BufSize()-1)/ap.st.pool.BufSize(); sends != want {
		t.Errorf("%d OpSendTo for %d bytes, want %d (one per buffer)", sends, len(msg), want)
	}
}

func TestTCPHalfClose(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":7")
	c, a := dialAccept(t, cli.st, l)
	if _, err := c.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite = %v", err)
	}
	if _, err := c.Write([]byte("more")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write after CloseWrite = %v, want EPIPE", err)
	}
	a.SetReadDeadline(time.Now().Add(3 * time.Second))
	req, err := io.ReadAll(a)
	if err != nil || string(req) != "question" {
		t.Fatalf("server ReadAll = %q, %v, want %q, nil (EOF)", req, err, "question")
	}
	if k, err := a.Read(make([]byte, 10)); k != 0 || err != io.EOF {
		t.Errorf("Read after EOF = %d, %v, want 0, io.EOF", k, err)
	}
	if _, err := a.Write([]byte("answer")); err != nil {
		t.Fatalf("server Write after the client's CloseWrite = %v", err)
	}
	a.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := io.ReadAll(c)
	if err != nil || string(resp) != "answer" {
		t.Errorf("client ReadAll = %q, %v, want %q, nil", resp, err, "answer")
	}
}

func TestTCPReadDeadline(t *testing.T) {
	ap := newApp(t, newFakeNet())
	c, a := dialAccept(t, ap.st, listenTCP(t, ap.st, ":0"))
	deadline := time.Now().Add(30 * time.Millisecond)
	c.SetReadDeadline(deadline)
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after the deadline = %v, want a timeout wrapping os.ErrDeadlineExceeded", err)
	}
	if early := time.Until(deadline); early > 0 {
		t.Errorf("Read timed out %v before its deadline", early)
	}
	// Bytes that come after a timeout are still there.
	c.SetReadDeadline(time.Time{})
	a.Write([]byte("late"))
	if got := readN(t, c, 4); string(got) != "late" {
		t.Errorf("Read after a timeout = %q, want %q", got, "late")
	}
	// A blocked Read wakes when the deadline moves into the past.
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("blocked Read = %v, want a timeout", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("setting a past deadline did not wake Read")
	}
}

func TestTCPWriteDeadline(t *testing.T) {
	n := newFakeNet()
	n.rcvBuf = 10000
	ap := newApp(t, n)
	c, _ := dialAccept(t, ap.st, listenTCP(t, ap.st, ":0"))
	// Nobody reads: the receiver's queue and the transport's buffer fill,
	// then the Write waits for the transport, until its deadline.
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	k, err := c.Write(make([]byte, 4<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || k >= 4<<20 {
		t.Fatalf("Write to a peer that does not read = %d, %v, want fewer bytes and a timeout", k, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Write error %v: not a net.Error timeout", err)
	}
}

func TestTCPCloseUnblocks(t *testing.T) {
	ap := newApp(t, newFakeNet())
	l := listenTCP(t, ap.st, ":0")
	c, _ := dialAccept(t, ap.st, l)
	readc, acceptc := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readc <- err
	}()
	go func() {
		_, err := l.Accept()
		acceptc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	l.Close()
	for what, ch := range map[string]chan error{"Read": readc, "Accept": acceptc} {
		select {
		case err := <-ch:
			var oe *net.OpError
			if !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) {
				t.Errorf("%s after Close = %v, want a *net.OpError wrapping net.ErrClosed", what, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("Close did not wake %s", what)
		}
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	// The port is free again.
	if _, err := ap.st.Listen("tcp", l.Addr().String()); err != nil {
		t.Errorf("Listen on the closed listener's port = %v", err)
	}
}

func TestTCPStackCloseUnblocksAccept(t *testing.T) {
	ap := newApp(t, newFakeNet())
	l := listenTCP(t, ap.st, ":0")
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ap.st.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Stack.Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Stack.Close did not wake Accept")
	}
}

func TestTCPDialErrors(t *testing.T) {
	ap := newApp(t, newFakeNet())
	_, err := ap.st.Dial("tcp", "10.0.0.2:4444")
	var oe *net.OpError
	if !errors.As(err, &oe) || !errors.Is(err, syscall.ECONNREFUSED) || oe.Op != "dial" || str(oe.Addr) != "10.0.0.2:4444" {
		t.Errorf("Dial to a port nobody listens on = %v, want a dial *net.OpError wrapping ECONNREFUSED", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ap.st.DialContext(ctx, "tcp", "10.0.0.2:4444"); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial with a cancelled context = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err = ap.st.DialContext(ctx, "tcp", "10.0.0.2:4444")
	if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Dial with a passed deadline = %v, want a timeout", err)
	}
	waitFor(t, "the failed sockets closed", func() bool { return ap.st.Stats().Sockets == 0 })
	if _, err := ap.st.Listen("tcp", "10.0.0.2:80x"); err == nil {
		t.Error("Listen on a bad port succeeded")
	}
}

func TestTCPReset(t *testing.T) {
	n := newFakeNet()
	ap := newApp(t, n)
	c, _ := dialAccept(t, ap.st, listenTCP(t, ap.st, ":0"))
	readc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	n.rst(uint16(c.LocalAddr().(*net.TCPAddr).Port))
	select {
	case err := <-readc:
		var oe *net.OpError
		if !errors.As(err, &oe) || !errors.Is(err, syscall.ECONNRESET) || oe.Op != "read" {
			t.Errorf("Read on a reset connection = %v, want a read *net.OpError wrapping ECONNRESET", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the reset did not wake Read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Write on a reset connection = %v, want ECONNRESET", err)
	}
}

func TestTCPSyscallRestart(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":2222")
	c, a := dialAccept(t, cli.st, l)
	a.Write([]byte("before"))
	readN(t, c, 6)
	c.Write([]byte("queued")) // read by the library, not yet by the app
	waitFor(t, "bytes queued", func() bool {
		srv.st.mu.Lock()
		defer srv.st.mu.Unlock()
		return len(a.c.rq) > 0
	})
	readc := make(chan error, 1)
	go func() { // reads the queued bytes, then blocks
		b := make([]byte, 6)
		if _, err := io.ReadFull(a, b); err != nil || string(b) != "queued" {
			readc <- fmt.Errorf("reading the queued bytes: %q, %w", b, err)
			return
		}
		b = make([]byte, 5)
		if _, err := io.ReadFull(a, b); err != nil || string(b) != "after" {
			readc <- fmt.Errorf("reading across the restart: %q, %w", b, err)
			return
		}
		readc <- nil
	}()
	acceptc := make(chan *TCPConn, 1)
	go func() {
		a2, _ := l.AcceptTCP()
		acceptc <- a2
	}()
	time.Sleep(20 * time.Millisecond)

	srv.restart(t)
	// The listener and the connection are adopted, not reset: the blocked
	// Read gets what the peer writes after the restart.
	waitFor(t, "the listener and connection adopted", func() bool { st := srv.st.Stats(); return st.Restored == 2 && st.Reset == 0 })
	if got := l.Addr().String(); got != "0.0.0.0:2222" {
		t.Errorf("listener Addr after the restart = %s", got)
	}
	c.Write([]byte("after"))
	select {
	case err := <-readc:
		if err != nil {
			t.Errorf("blocked Read on the established connection across the restart: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the blocked Read got nothing after the restart")
	}
	if _, err := a.Write([]byte("x")); err != nil {
		t.Errorf("Write after the restart = %v", err)
	}
	if got := readN(t, c, 1); string(got) != "x" {
		t.Errorf("peer Read = %q, want x", got)
	}
	// The blocked Accept gets a connection made after the restart.
	c2, err := cli.st.Dial("tcp", "10.0.0.2:2222")
	if err != nil {
		t.Fatalf("Dial after the restart = %v", err)
	}
	defer c2.Close()
	select {
	case a2 := <-acceptc:
		if a2 == nil {
			t.Fatal("Accept failed")
		}
		defer a2.Close()
		c2.Write([]byte("hello again"))
		if got := readN(t, a2, 11); string(got) != "hello again" {
			t.Errorf("Read on the new connection = %q", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Accept blocked across the restart never returned")
	}
}

// A SYSCALL restart after the transport acted on requests whose replies
// died with it: the reissued sends and receives carry stream offsets, so no
// byte goes twice and none is lost.
func TestTCPSyscallRestartRepliesLost(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	l := listenTCP(t, srv.st, ":2223")
	c, a := dialAccept(t, cli.st, l)
	n.mu.Lock()
	srv.srv.loseReplies = true
	n.mu.Unlock()
	a.Write([]byte("abc")) // taken by the transport, the reply lost
	c.Write([]byte("xyz")) // handed to a's receive, the reply lost
	readN(t, c, 3)         // "abc" went out once
	time.Sleep(50 * time.Millisecond)
	srv.restart(t)
	waitFor(t, "adopted", func() bool { return srv.st.Stats().Restored == 2 })
	if got := readN(t, a, 3); string(got) != "xyz" {
		t.Errorf("a read %q after the restart, want xyz", got)
	}
	a.Write([]byte("!"))
	if got := readN(t, c, 1); string(got) != "!" {
		t.Errorf("c read %q after the restart, want ! (abc not sent twice)", got)
	}
}

// After a restart of the transport, a receive posted before an earlier one
// was answered may bring that one's bytes again: the reply says where its
// bytes lie in the stream, and the library keeps only what is new to it.
// Bytes past what it has mean some were lost: the connection is broken,
// never handed a stream with a hole.
func TestTCPReceiveDropsBytesHadBefore(t *testing.T) {
	ap := newApp(t, newFakeNet())
	s := ap.st
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tc := range []struct {
		name      string
		recvOff   uint64 // what the connection has
		start     uint64 // the reply's offset
		bytes     string
		want      string
		wantBreak bool
	}{
		{"in order", 3, 3, "defgh", "defgh", false},
		{"partly had", 3, 0, "abcdef", "def", false},
		{"all had", 6, 0, "abcdef", "", false},
		{"past what it has", 3, 5, "fgh", "", true},
	} {
		c := &sock{id: 1, network: ops.TCP}
		c.recvOff = tc.recvOff
		ref, ok := s.pool.Alloc()
		if !ok {
			t.Fatal("no buffer")
		}
		buf, _ := s.pool.Bytes(ref)
		copy(buf, tc.bytes)
		m := channel.Msg{Op: uint16(ops.OpRecvFrom), Flags: ops.FlagOffset, Arg: [4]uint64{0, tc.start}, Ref: ref}
		m.Ref.Len = uint32(len(tc.bytes))
		n := s.newBytesLocked(c, m, ref)
		if got := string(buf[:n]); got != tc.want || (c.broken != nil) != tc.wantBreak {
			t.Errorf("%s: bytes %q at offset %d, having %d: kept %q, broken %v; want %q, broken %v",
				tc.name, tc.bytes, tc.start, tc.recvOff, got, c.broken, tc.want, tc.wantBreak)
		}
		s.pool.Free(ref)
	}
	if got := s.stats.Redelivered; got != 3+6 {
		t.Errorf("Stats.Redelivered = %d, want 9 (the bytes dropped)", got)
	}
}
