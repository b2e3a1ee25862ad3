package socket

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// The tests here are about the application's pool: many TCP connections
// on a pool of a few buffers must neither tie buffers up while idle nor
// wedge when busy (receives taking every buffer, so that no Write, and no
// reader blocked behind one, ever goes on).

// postedRecvs counts the receives the fake transport holds for c: readiness
// receives (no buffer) and data receives.
func postedRecvs(ap *app, c *TCPConn) (readiness, data int) {
	ap.n.mu.Lock()
	defer ap.n.mu.Unlock()
	ap.st.mu.Lock()
	id := c.c.id
	ap.st.mu.Unlock()
	s := ap.srv.socks[id]
	if s == nil {
		return 0, 0
	}
	for _, m := range s.posted {
		if m.Ref.IsZero() {
			readiness++
		} else {
			data++
		}
	}
	return readiness, data
}

// echoServe accepts on l and echoes each connection as apps/echo does: a
// goroutine per connection reading up to 32 KiB, then writing it back; at
// EOF it half-closes. It returns when l is closed.
func echoServe(l *TCPListener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					c.CloseWrite()
					return
				}
			}
		})
	}
}

// standingBuffers is how many of ap's buffers wait in standing receives on
// idle connections.
func standingBuffers(ap *app) int {
	ap.st.mu.Lock()
	defer ap.st.mu.Unlock()
	return ap.st.standing
}

// TestTCPIdleConnectionsHoldFewBuffers: 20 open connections on an 8-buffer
// pool, none of them with anything to read, lend the transport a quarter
// of the pool: 2 of them wait with a data receive (standing: the bytes come
// in its buffer), the others with a readiness receive and no buffer. Data
// on every one of them is read, and they go back to that state.
func TestTCPIdleConnectionsHoldFewBuffers(t *testing.T) {
	n := newFakeNet()
	srv, cli := newAppPool(t, n, 8, 65536), newApp(t, n)
	l := listenTCP(t, srv.st, ":7")
	var cs, as []*TCPConn
	for range 20 {
		c, a := dialAccept(t, cli.st, l)
		cs, as = append(cs, c), append(as, a)
	}
	const standing = 8 / standingShare
	idle := func() bool {
		data := 0
		for _, a := range as {
			r, d := postedRecvs(srv, a)
			if r+d != 1 {
				return false
			}
			data += d
		}
		return data == standing && standingBuffers(srv) == standing && srv.pool.Available() == srv.pool.Len()-standing
	}
	waitFor(t, "one receive on each of 20 idle connections, a quarter of the pool's buffers in them", idle)

	// Bytes on every connection: each is read; the buffers come back.
	for i, c := range cs {
		msg := fmt.Sprintf("hello %d", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, as[i], len(msg)); string(got) != msg {
			t.Errorf("connection %d read %q, want %q", i, got, msg)
		}
	}
	waitFor(t, "the connections idle again", idle)
}

// TestTCPEchoSmallPool reproduces the wedge of the echo app under load:
// an echo server on an 8-buffer pool and 20 clients each sending 200 kB
// while reading the echo back, all at once. Every byte must come back, in
// order, within the time limit.
func TestTCPEchoSmallPool(t *testing.T) {
	const conns, size = 20, 200_000
	n := newFakeNet()
	srv, cli := newAppPool(t, n, 8, 65536), newApp(t, n)
	l := listenTCP(t, srv.st, ":7")
	go echoServe(l)

	errc := make(chan error, 2*conns)
	var read sync.WaitGroup
	for i := range conns {
		c, err := cli.st.Dial("tcp", "10.0.0.2:7")
		if err != nil {
			t.Fatalf("Dial #%d = %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(i)}).Read(data)
		go func() {
			rng := rand.New(rand.NewPCG(uint64(i), 0))
			for b := data; len(b) > 0; {
				k := min(len(b), 1+rng.IntN(40000))
				if _, err := c.Write(b[:k]); err != nil {
					errc <- fmt.Errorf("connection %d: Write: %w", i, err)
					return
				}
				b = b[k:]
			}
			errc <- c.(*TCPConn).CloseWrite()
		}()
		read.Go(func() {
			got, err := io.ReadAll(c)
			switch {
			case err != nil:
				errc <- fmt.Errorf("connection %d: read %d bytes, then %w", i, len(got), err)
			case !bytes.Equal(got, data):
				errc <- fmt.Errorf("connection %d: echo of %d bytes differs from the %d sent", i, len(got), len(data))
			default:
				errc <- nil
			}
		})
	}
	timeout := time.After(20 * time.Second)
	for range 2 * conns {
		select {
		case err := <-errc:
			if err != nil {
				t.Error(err)
			}
		case <-timeout:
			t.Fatalf("the echoes stalled: server pool %d of %d buffers free, stats %+v", srv.pool.Available(), srv.pool.Len(), srv.st.Stats())
		}
	}
	l.Close()
	waitFor(t, "every server buffer back", func() bool { return srv.pool.Available() == srv.pool.Len() })
}

// TestTCPUnreadDataLeavesBuffersForWrites: bytes arriving on connections
// nobody reads fill the pool only down to the writers' reserve, so a Write
// on another connection still goes through; reading them frees the rest.
func TestTCPUnreadDataLeavesBuffersForWrites(t *testing.T) {
	n := newFakeNet()
	srv, cli := newAppPool(t, n, 8, 65536), newApp(t, n)
	const reserve = 2 // of an 8-buffer pool: max(minReserve, 8/reserveShare)
	l := listenTCP(t, srv.st, ":7")
	var as []*TCPConn
	for i := range 10 { // each write fits the fake's receive buffer
		c, a := dialAccept(t, cli.st, l)
		as = append(as, a)
		if _, err := c.Write(bytes.Repeat([]byte{byte(i)}, 60_000)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "received bytes queued up to the reserve", func() bool {
		return srv.pool.Available() == reserve
	})
	time.Sleep(20 * time.Millisecond)
	if got := srv.pool.Available(); got != reserve {
		t.Errorf("pool has %d buffers free with unread bytes on 10 connections, want the writers' reserve %d", got, reserve)
	}

	c, a := dialAccept(t, srv.st, listenTCP(t, cli.st, ":8"))
	msg := make([]byte, 300_000)
	rand.NewChaCha8([32]byte{9}).Read(msg)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.CloseWrite()
		}
		done <- err
	}()
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(a); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("the peer read %d bytes, %v; want the %d written", len(got), err, len(msg))
	}
	if err := <-done; err != nil {
		t.Fatalf("Write with the pool down to its reserve = %v", err)
	}

	for i, a := range as {
		if got := readN(t, a, 60_000); !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 60_000)) {
			t.Errorf("connection %d: the queued bytes are not what was sent", i)
		}
	}
	waitFor(t, "every buffer free after reading but the standing receives'", func() bool {
		return srv.pool.Available() == srv.pool.Len()-standingBuffers(srv) && standingBuffers(srv) <= srv.pool.Len()/standingShare
	})
}

// TestTCPStalledSendsLeaveBuffersForReceives is the mirror of the test
// above: sends the peer does not take (it reads nothing) fill the pool
// only down to the receives' reserve, so bytes arriving on another
// connection are still read. Sends that took every buffer were the echo
// wedge of TestTCPEchoSmallPool: each side's sends waited for the other's
// receives.
func TestTCPStalledSendsLeaveBuffersForReceives(t *testing.T) {
	n := newFakeNet()
	srv, cli := newAppPool(t, n, 8, 65536), newApp(t, n)
	const reserve = 2 // of an 8-buffer pool: max(minReserve, 8/reserveShare)
	l := listenTCP(t, cli.st, ":7")
	for range 3 { // the peer's queue and the fake's window hold a few MB
		c, _ := dialAccept(t, srv.st, l)
		go c.Write(make([]byte, 16<<20))
	}
	waitFor(t, "stalled sends holding all but the receives' reserve", func() bool {
		return srv.pool.Available() == reserve
	})
	time.Sleep(20 * time.Millisecond)
	if got := srv.pool.Available(); got != reserve {
		t.Errorf("pool has %d buffers free with stalled sends on 3 connections, want the receives' reserve %d", got, reserve)
	}

	c, a := dialAccept(t, cli.st, listenTCP(t, srv.st, ":8"))
	msg := make([]byte, 300_000)
	rand.NewChaCha8([32]byte{7}).Read(msg)
	go func() {
		if _, err := c.Write(msg); err == nil {
			c.CloseWrite()
		}
	}()
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(a); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes with the sends stalled, %v; want the %d written", len(got), err, len(msg))
	}
}

// TestTCPRequestsReachAStandingReceive: requests on a keep-alive connection
// come in the buffer of the receive standing on it, each answered with its
// bytes: the transport answers no readiness receive and no receive with
// "would block", which cost each request a round trip to the transport
// and back before receives stood on idle connections.
func TestTCPRequestsReachAStandingReceive(t *testing.T) {
	n := newFakeNet()
	srv, cli := newApp(t, n), newApp(t, n)
	c, a := dialAccept(t, cli.st, listenTCP(t, srv.st, ":7"))
	waitFor(t, "a standing receive on the idle connection", func() bool {
		r, d := postedRecvs(srv, a)
		return r == 0 && d == 1
	})
	for i := range 10 {
		req := fmt.Sprintf("GET /%d", i)
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, a, len(req)); string(got) != req {
			t.Fatalf("request %d read as %q, want %q", i, got, req)
		}
		if _, err := a.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		readN(t, c, 2)
	}
	n.mu.Lock()
	ft := srv.srv.socks[a.c.id].tcp
	readiness, wouldBlock := ft.readiness, ft.wouldBlock
	n.mu.Unlock()
	if readiness != 0 || wouldBlock != 0 {
		t.Errorf("10 requests: the transport answered %d readiness receives and %d with \"would block\", want none", readiness, wouldBlock)
	}
}
