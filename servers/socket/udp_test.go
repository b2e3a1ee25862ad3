package socket

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"keepnet/servers/ops"
)

// listen opens a socket or fails the test.
func listen(t *testing.T, st *Stack, address string) *UDPConn {
	t.Helper()
	pc, err := st.ListenPacket("udp", address)
	if err != nil {
		t.Fatalf("ListenPacket(udp, %q) = %v", address, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*UDPConn)
}

// to is the address of a socket as a peer on the fake network sees it.
func to(pc net.PacketConn) *net.UDPAddr {
	return &net.UDPAddr{IP: net.IP(hostIP.AsSlice()), Port: pc.LocalAddr().(*net.UDPAddr).Port}
}

// hangWait bounds the waits for what the fakes do in microseconds: only a
// hang takes this long, however loaded the host.
const hangWait = time.Minute

// recv reads one datagram within hangWait.
func recv(t *testing.T, pc net.PacketConn, size int) ([]byte, net.Addr) {
	t.Helper()
	pc.SetReadDeadline(time.Now().Add(hangWait))
	defer pc.SetReadDeadline(time.Time{})
	buf := make([]byte, size)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("ReadFrom = %v", err)
	}
	return buf[:n], from
}

func TestWriteToReadFrom(t *testing.T) {
	n := newFakeNet()
	ap := newApp(t, n)
	a := listen(t, ap.st, "10.0.0.2:7000")
	b := listen(t, ap.st, ":0")
	for i, msg := range []string{"ping", "", "third"} {
		if k, err := b.WriteTo([]byte(msg), to(a)); err != nil || k != len(msg) {
			t.Fatalf("#%d WriteTo = %d, %v, want %d, nil", i, k, err, len(msg))
		}
		got, from := recv(t, a, 100)
		if string(got) != msg {
			t.Errorf("#%d ReadFrom = %q, want %q", i, got, msg)
		}
		if from.String() != to(b).String() {
			t.Errorf("#%d ReadFrom source = %v, want %v", i, from, to(b))
		}
	}
	if got, want := a.LocalAddr().String(), "10.0.0.2:7000"; got != want {
		t.Errorf("LocalAddr = %s, want %s", got, want)
	}
	if a.RemoteAddr() != nil {
		t.Errorf("RemoteAddr of an unconnected socket = %v, want nil", a.RemoteAddr())
	}
}

func TestDialWriteRead(t *testing.T) {
	n := newFakeNet()
	ap := newApp(t, n)
	srv := listen(t, ap.st, ":5300")
	conn, err := ap.st.Dial("udp", "10.0.0.2:5300")
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("question")); err != nil {
		t.Fatalf("Write = %v", err)
	}
	got, from := recv(t, srv, 100)
	if string(got) != "question" || from.String() != conn.LocalAddr().String() {
		t.Errorf("server got %q from %v, want %q from %v", got, from, "question", conn.LocalAddr())
	}
	// Only the connected peer gets through.
	other := listen(t, ap.st, ":0")
	other.WriteTo([]byte("intruder"), conn.LocalAddr())
	srv.WriteTo([]byte("answer"), from)
	conn.SetReadDeadline(time.Now().Add(hangWait))
	buf := make([]byte, 100)
	k, err := conn.Read(buf)
	if err != nil || string(buf[:k]) != "answer" {
		t.Errorf("Read = %q, %v, want %q", buf[:k], err, "answer")
	}
	if got, want := conn.RemoteAddr().String(), "10.0.0.2:5300"; got != want {
		t.Errorf("RemoteAddr = %s, want %s", got, want)
	}
	_, err = conn.(*UDPConn).WriteTo([]byte("x"), to(srv))
	if !errors.Is(err, net.ErrWriteToConnected) {
		t.Errorf("WriteTo on a connected socket = %v, want ErrWriteToConnected", err)
	}
}

func TestEphemeralPorts(t *testing.T) {
	n := newFakeNet()
	ap := newApp(t, n)
	seen := map[int]bool{}
	for range 3 {
		port := listen(t, ap.st, "").LocalAddr().(*net.UDPAddr).Port
		if port < 49152 || seen[port] {
			t.Errorf("ephemeral port %d: want a fresh one >= 49152 (seen %v)", port, seen)
		}
		seen[port] = true
	}
	_, err := ap.st.ListenPacket("udp", "0.0.0.0:7000")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ap.st.ListenPacket("udp", "0.0.0.0:7000")
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second ListenPacket on :7000 = %v, want EADDRINUSE", err)
	}
}

func TestReadDeadline(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a := listen(t, ap.st, ":0")
	deadline := time.Now().Add(30 * time.Millisecond)
	a.SetReadDeadline(deadline)
	_, _, err := a.ReadFrom(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom after the deadline = %v, want a timeout wrapping os.ErrDeadlineExceeded", err)
	}
	if early := time.Until(deadline); early > 0 {
		t.Errorf("ReadFrom timed out %v before its deadline", early)
	}
	// A past deadline fails at once; clearing it lets reads block again.
	a.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := a.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadFrom with a past deadline = %v", err)
	}
}

func TestDeadlineChangeWakesRead(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a := listen(t, ap.st, ":0")
	a.SetReadDeadline(time.Now().Add(time.Hour))
	errc := make(chan error, 1)
	go func() {
		_, _, err := a.ReadFrom(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block
	a.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("blocked ReadFrom = %v, want a timeout", err)
		}
	case <-time.After(time.Minute): // the old deadline is an hour away: only a missed wake-up takes this long
		t.Fatal("setting a past deadline did not wake ReadFrom")
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a := listen(t, ap.st, ":0")
	errc := make(chan error, 1)
	go func() {
		_, _, err := a.ReadFrom(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadFrom on a closed socket = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not wake ReadFrom")
	}
	if _, err := a.WriteTo([]byte("x"), to(a)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close = %v, want net.ErrClosed", err)
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	// The port is free again, and the posted receives came back.
	if _, err := ap.st.ListenPacket("udp", a.LocalAddr().String()); err != nil {
		t.Errorf("ListenPacket on the closed socket's port = %v", err)
	}
	waitFor(t, "buffers back after Close", func() bool { return ap.pool.Available() == ap.pool.Len()-recvDepth })
}

func TestStackCloseUnblocks(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a := listen(t, ap.st, ":0")
	errc := make(chan error, 1)
	go func() {
		_, _, err := a.ReadFrom(make([]byte, 10))
		errc <- err
	}()
	ap.st.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Stack.Close = %v, want net.ErrClosed", err)
	}
	if _, err := ap.st.ListenPacket("udp", ":0"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ListenPacket after Stack.Close = %v, want net.ErrClosed", err)
	}
}

func TestLateDatagramAfterTimeoutIsKept(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a, b := listen(t, ap.st, ":0"), listen(t, ap.st, ":0")
	a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, _, err := a.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom = %v, want a timeout", err)
	}
	b.WriteTo([]byte("late"), to(a))
	if got, _ := recv(t, a, 10); string(got) != "late" {
		t.Errorf("ReadFrom after the timeout = %q, want %q", got, "late")
	}
}

// A write hands its datagram over and returns, without waiting for the
// transport's reply (as sendto(2) does): an application that answers each
// datagram must not pay a round trip through SYSCALL and UDP per datagram,
// or it falls behind a stream (qemu/itest TestUDPPacedStream). Up to
// datagramWriteBehind sends are in flight; the next write waits for the
// oldest, within its deadline, and the buffers stay lent until the replies.
func TestWriteDoesNotWaitForReply(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a, b := listen(t, ap.st, ":0"), listen(t, ap.st, ":0")
	free := ap.pool.Available()
	ap.srv.setHoldSends(true)
	b.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for i := range datagramWriteBehind {
		if _, err := b.WriteTo([]byte(fmt.Sprint(i)), to(a)); err != nil {
			t.Fatalf("WriteTo #%d to a server that has not answered yet = %v, want it handed over", i, err)
		}
	}
	b.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := b.WriteTo([]byte("one too many"), to(a)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteTo with %d sends unanswered = %v, want a timeout", datagramWriteBehind, err)
	}
	if got := ap.pool.Available(); got != free-datagramWriteBehind {
		t.Errorf("with %d sends unanswered %d buffers free, want %d (theirs still lent)", datagramWriteBehind, got, free-datagramWriteBehind)
	}
	ap.srv.releaseSends()
	for i := range datagramWriteBehind {
		if got, _ := recv(t, a, 10); string(got) != fmt.Sprint(i) {
			t.Errorf("ReadFrom #%d = %q, want %q", i, got, fmt.Sprint(i))
		}
	}
	waitFor(t, "every buffer back", func() bool { return ap.pool.Available() == free })
	b.SetWriteDeadline(time.Time{})
	if _, err := b.WriteTo([]byte("again"), to(a)); err != nil {
		t.Errorf("WriteTo once the replies came = %v", err)
	}
	if got, _ := recv(t, a, 10); string(got) != "again" {
		t.Errorf("ReadFrom = %q, want %q", got, "again")
	}
}

// A send the transport refuses fails the next write on the socket, once.
func TestRefusedSendFailsNextWrite(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a, b := listen(t, ap.st, ":0"), listen(t, ap.st, ":0")
	free := ap.pool.Available()
	ap.srv.setSendStatus(ops.StatusNoRoute)
	if _, err := b.WriteTo([]byte("lost"), to(a)); err != nil {
		t.Fatalf("WriteTo = %v, want it handed over", err)
	}
	waitFor(t, "the refusal", func() bool { return ap.pool.Available() == free })
	ap.srv.setSendStatus(ops.StatusOK)
	if _, err := b.WriteTo([]byte("x"), to(a)); !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("WriteTo after a send refused with StatusNoRoute = %v, want EHOSTUNREACH", err)
	}
	if _, err := b.WriteTo([]byte("delivered"), to(a)); err != nil {
		t.Errorf("the next WriteTo = %v, want nil (an error is reported once)", err)
	}
	if got, _ := recv(t, a, 20); string(got) != "delivered" {
		t.Errorf("ReadFrom = %q, want %q", got, "delivered")
	}
}

func TestLargeDatagramsAndTruncation(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a, b := listen(t, ap.st, ":0"), listen(t, ap.st, ":0")
	for _, size := range []int{1, 1472, 1473, 8000, 9000, 65000} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		for i := range msg {
			msg[i] ^= byte(i)
		}
		if _, err := b.WriteTo(msg, to(a)); err != nil {
			t.Fatalf("WriteTo(%d bytes) = %v", size, err)
		}
		if got, _ := recv(t, a, 65536); !bytes.Equal(got, msg) {
			t.Errorf("ReadFrom of a %d-byte datagram gave %d bytes, differing", size, len(got))
		}
	}
	// A short buffer gets what fits.
	b.WriteTo(bytes.Repeat([]byte("x"), 8000), to(a))
	if got, _ := recv(t, a, 100); len(got) != 100 {
		t.Errorf("ReadFrom into 100 bytes of an 8000-byte datagram = %d bytes, want 100", len(got))
	}
	// Larger than a pool buffer: EMSGSIZE, as Go's net says "message too long".
	_, err := b.WriteTo(make([]byte, 65537), to(a))
	if !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("WriteTo(65537 bytes) = %v, want EMSGSIZE", err)
	}
}

func TestSmallPoolBoundsQueue(t *testing.T) {
	// A 2048-byte pool: datagrams are truncated to it, the queue is
	// bounded, nobody reading leaves buffers for the writer.
	ap := newAppPool(t, newFakeNet(), 32, 2048)
	a, b := listen(t, ap.st, ":0"), listen(t, ap.st, ":0")
	for i := range 100 {
		if _, err := b.WriteTo([]byte(fmt.Sprint(i)), to(a)); err != nil {
			t.Fatalf("WriteTo #%d = %v", i, err)
		}
	}
	if got, _ := recv(t, a, 10); string(got) != "0" {
		t.Errorf("first datagram = %q, want %q", got, "0")
	}
	if _, err := b.WriteTo(make([]byte, 4000), to(a)); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("WriteTo(4000) on a 2048-byte pool = %v, want EMSGSIZE", err)
	}
}

func TestOpErrorShapes(t *testing.T) {
	ap := newApp(t, newFakeNet())
	a := listen(t, ap.st, "10.0.0.2:4000")
	a.SetReadDeadline(time.Now().Add(-time.Second))
	_, _, rerr := a.ReadFrom(nil)
	a.Close()
	_, werr := a.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 53})
	_, lerr := ap.st.ListenPacket("udp", "10.0.0.2:4000x")
	_, uerr := ap.st.ListenPacket("udp4", "[::1]:0")
	_, terr := ap.st.Listen("udp", ":80")
	_, derr := ap.st.Dial("tcp", "10.0.0.2:80")
	for _, tc := range []struct {
		err                   error
		op, net, source, addr string
		is                    error
		timeout               bool
	}{
		{rerr, "read", "udp", "10.0.0.2:4000", "<nil>", os.ErrDeadlineExceeded, true},
		{werr, "write", "udp", "10.0.0.2:4000", "10.0.0.9:53", net.ErrClosed, false},
		{lerr, "listen", "udp", "<nil>", "<nil>", nil, false},
		{uerr, "listen", "udp4", "<nil>", "<nil>", syscall.EAFNOSUPPORT, false},
		{terr, "listen", "udp", "<nil>", "<nil>", nil, false},
		{derr, "dial", "tcp", "<nil>", "10.0.0.2:80", syscall.ECONNREFUSED, false},
	} {
		var oe *net.OpError
		if !errors.As(tc.err, &oe) {
			t.Errorf("%v: not a *net.OpError", tc.err)
			continue
		}
		got := fmt.Sprintf("%s %s %v %v", oe.Op, oe.Net, str(oe.Source), str(oe.Addr))
		want := fmt.Sprintf("%s %s %s %s", tc.op, tc.net, tc.source, tc.addr)
		if got != want {
			t.Errorf("%v: OpError{Op Net Source Addr} = %s, want %s", tc.err, got, want)
		}
		if tc.is != nil && !errors.Is(tc.err, tc.is) {
			t.Errorf("%v: errors.Is(%v) = false", tc.err, tc.is)
		}
		if oe.Timeout() != tc.timeout {
			t.Errorf("%v: Timeout() = %v, want %v", tc.err, oe.Timeout(), tc.timeout)
		}
	}
}

func str(a net.Addr) string {
	if a == nil {
		return "<nil>"
	}
	return a.String()
}

func TestSyscallRestart(t *testing.T) {
	n := newFakeNet()
	ap := newApp(t, n)
	peer := newApp(t, n) // another application, its SYSCALL server unharmed
	a := listen(t, ap.st, ":0")
	conn, err := ap.st.Dial("udp", "10.0.0.2:5353")
	if err != nil {
		t.Fatal(err)
	}
	dns := listen(t, peer.st, ":5353")
	aPort, connLocal := a.LocalAddr().String(), conn.LocalAddr().String()

	// A send the server never answers, and a read blocked on a.
	ap.srv.setHoldSends(true)
	sendc := make(chan error, 1)
	go func() {
		_, err := conn.Write([]byte("in flight"))
		sendc <- err
	}()
	readc := make(chan string, 1)
	go func() {
		buf := make([]byte, 100)
		a.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := a.ReadFrom(buf)
		if err != nil {
			readc <- err.Error()
			return
		}
		readc <- string(buf[:k])
	}()
	waitFor(t, "the send to reach the server", func() bool { return ap.srv.count(ops.OpSendTo) == 1 })

	old := ap.restart(t)
	waitFor(t, "sockets restored", func() bool { return ap.st.Stats().Restored == 2 })
	if a.LocalAddr().String() != aPort || conn.LocalAddr().String() != connLocal {
		t.Errorf("after the restart bound to %v and %v, want %s and %s", a.LocalAddr(), conn.LocalAddr(), aPort, connLocal)
	}
	if err := <-sendc; err != nil {
		t.Errorf("the send in flight across the restart = %v", err)
	}
	if got, _ := recv(t, dns, 100); string(got) != "in flight" {
		t.Errorf("the peer got %q, want the re-sent datagram", got)
	}
	if len(old.held) != 1 {
		t.Errorf("the old server held %d sends, want 1", len(old.held))
	}
	// The blocked read gets a datagram sent after the switch, to the same port.
	dns.WriteTo([]byte("after the restart"), a.LocalAddr())
	select {
	case got := <-readc:
		if got != "after the restart" {
			t.Errorf("blocked ReadFrom = %q, want the datagram sent after the restart", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("blocked ReadFrom never returned")
	}
	// The connected socket still talks to its peer.
	if _, err := conn.Write([]byte("again")); err != nil {
		t.Errorf("Write after the restart = %v", err)
	}
	if got, from := recv(t, dns, 100); string(got) != "again" || from.String() != connLocal {
		t.Errorf("peer got %q from %v, want %q from %s", got, from, "again", connLocal)
	}
	st := ap.st.Stats()
	if st.Restarts != 1 || st.Generation != 2 || st.Resent != 1 || st.Reposted != 2*recvDepth || st.Lost != 0 {
		t.Errorf("Stats = %+v, want 1 restart to generation 2, 1 resent, %d reposted, 0 lost", st, 2*recvDepth)
	}
}

func TestSyscallRestartLostPort(t *testing.T) {
	n := newFakeNet()
	ap, thief := newApp(t, n), newApp(t, n)
	a := listen(t, ap.st, ":6000")
	old := ap.srv
	old.crash()
	n.mu.Lock() // the transport loses the socket while syscall is down
	for _, s := range old.orphans {
		n.unbind(s)
	}
	old.orphans = nil
	n.mu.Unlock()
	listen(t, thief.st, ":6000") // and another takes the port
	a2, b := channelPair(t)
	ap.srv = n.serveAfter(old, b)
	ap.st.PeerRestarted(a2)
	waitFor(t, "the socket to be lost", func() bool { return ap.st.Stats().Lost == 1 })
	_, _, err := a.ReadFrom(make([]byte, 10))
	if !errors.Is(err, ErrLost) {
		t.Errorf("ReadFrom on a lost socket = %v, want ErrLost", err)
	}
	if _, err := a.WriteTo([]byte("x"), to(a)); !errors.Is(err, ErrLost) {
		t.Errorf("WriteTo on a lost socket = %v, want ErrLost", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close of a lost socket = %v", err)
	}
}

func TestRestartDuringRestore(t *testing.T) {
	n := newFakeNet()
	ap, peer := newApp(t, n), newApp(t, n)
	a := listen(t, ap.st, ":0")
	ap.restart(t)
	ap.restart(t)
	ap.restart(t)
	waitFor(t, "restored", func() bool { return ap.st.Stats().Generation == 4 && ap.st.Stats().Pending > 0 })
	// A datagram that reaches the network before the socket is bound
	// again is lost, as UDP allows: send until one arrives, on the same
	// port as before the restarts.
	p := listen(t, peer.st, ":0")
	buf := make([]byte, 10)
	for deadline := time.Now().Add(hangWait); ; {
		p.WriteTo([]byte("hi"), a.LocalAddr())
		a.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := a.ReadFrom(buf)
		if err == nil {
			if string(buf[:n]) != "hi" {
				t.Errorf("after three restarts ReadFrom = %q, want hi", buf[:n])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after three restarts no datagram arrived on %v within %v: %v", a.LocalAddr(), hangWait, err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(hangWait); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAddressFamilies: an address of the other family than a "4" or "6"
// network names is EAFNOSUPPORT and reaches no server; IPv6 addresses on
// the other networks go to the transports as they are.
func TestAddressFamilies(t *testing.T) {
	ap := newApp(t, newFakeNet())
	pc := listen(t, ap.st, ":0")
	opens, sends := ap.srv.count(ops.OpOpen), ap.srv.count(ops.OpSendTo)
	attempt := map[string]func() error{
		"ListenPacket(udp4, [::]:7)":   func() error { _, err := ap.st.ListenPacket("udp4", "[::]:7"); return err },
		"Listen(tcp6, 10.0.0.2:80)":    func() error { _, err := ap.st.Listen("tcp6", "10.0.0.2:80"); return err },
		"Dial(udp4, [::1]:53)":         func() error { _, err := ap.st.Dial("udp4", "[::1]:53"); return err },
		"Dial(tcp4, [2001:db8::1]:80)": func() error { _, err := ap.st.Dial("tcp4", "[2001:db8::1]:80"); return err },
		"Dial(tcp6, 10.0.0.9:80)":      func() error { _, err := ap.st.Dial("tcp6", "10.0.0.9:80"); return err },
	}
	for name, f := range attempt {
		err := f()
		var oe *net.OpError
		if !errors.As(err, &oe) || !errors.Is(err, syscall.EAFNOSUPPORT) {
			t.Errorf("%s = %v, want a *net.OpError with EAFNOSUPPORT", name, err)
		}
	}
	if got := ap.srv.count(ops.OpOpen); got != opens {
		t.Errorf("%d sockets opened on the server for the wrong family, want none", got-opens)
	}
	v6 := netip.MustParseAddrPort("[2001:db8::1]:53")
	if _, err := pc.WriteToUDPAddrPort([]byte("x"), v6); err != nil {
		t.Errorf("WriteToUDPAddrPort(%v) = %v, want it sent", v6, err)
	}
	deadline := time.Now().Add(10 * time.Second) // writes are write-behind
	for ap.srv.count(ops.OpSendTo) == sends && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := ap.srv.count(ops.OpSendTo); got != sends+1 {
		t.Errorf("%d datagrams sent to %v, want 1", got-sends, v6)
	}
}

// TestServerAFNoSupport: a server's StatusAFNoSupport (an IPv6 address it
// cannot carry) is EAFNOSUPPORT to Go users.
func TestServerAFNoSupport(t *testing.T) {
	if err := statusErr("bind", ops.StatusAFNoSupport); !errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Errorf("statusErr(bind, StatusAFNoSupport) = %v, want EAFNOSUPPORT", err)
	}
}

// TestHungrySocketsServedInTurn: sockets that could not post a receive
// for want of a buffer get the buffers freed later in the order they
// went without, one each in turn, rather than whichever a walk over every
// socket finds first (that walk, once per freed buffer, cost httpd a third
// of its CPU with 400 connections). On an 8-buffer pool (receives may take
// 6) one socket takes every buffer; ten more go without; when the first
// closes, its 6 buffers go to the next six, one each.
func TestHungrySocketsServedInTurn(t *testing.T) {
	ap := newAppPool(t, newFakeNet(), 8, 2048)
	posted := func(c *UDPConn) int {
		ap.st.mu.Lock()
		defer ap.st.mu.Unlock()
		return c.c.posted
	}
	first := listen(t, ap.st, ":7100")
	waitFor(t, "the first socket's receives take every buffer receives may", func() bool { return posted(first) == 6 })
	var later []*UDPConn
	for i := range 10 {
		later = append(later, listen(t, ap.st, fmt.Sprintf(":%d", 7101+i)))
	}
	for i, c := range later {
		if p := posted(c); p != 0 {
			t.Fatalf("socket %d of the later ten has %d receives posted on a pool with none to spare", i, p)
		}
	}
	first.Close()
	total := func() int {
		n := 0
		for _, c := range later {
			n += posted(c)
		}
		return n
	}
	waitFor(t, "the first socket's 6 buffers posted on the others", func() bool { return total() == 6 })
	for i, c := range later {
		want := 0
		if i < 6 {
			want = 1
		}
		if p := posted(c); p != want {
			t.Errorf("socket %d of the later ten has %d receives posted, want %d (one each, in the order they went without)", i, p, want)
		}
	}
}
