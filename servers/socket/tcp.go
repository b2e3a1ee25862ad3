package socket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/servers/ops"
)

// TCPConn is a TCP connection on keepnet, from Dial or a TCPListener's
// Accept: a net.Conn with half-close. Its methods are safe for concurrent
// use; concurrent Writes do not interleave their bytes.
type TCPConn struct {
	s *Stack
	c *sock
	// wmu makes one Write's chunks go out back to back.
	wmu sync.Mutex
	// Write-behind: the sends submitted and not yet answered, oldest
	// first, and the error one of them came back with (sticky: later
	// writes fail with it). smu guards both; Close takes it, not wmu, so
	// that it can end a Write blocked for a buffer.
	smu  sync.Mutex
	sent []sentChunk
	werr error
}

// sentChunk is a send a Write did not wait for.
type sentChunk struct {
	o *op
	n int
}

// writeBehind is how many sends a connection keeps with the transport
// before a Write waits for the oldest, so that the application produces
// its next chunks while the last ones travel (the round trip through
// SYSCALL to TCP is a few hundred microseconds under TCG). Four: bulk
// download 372 Mbit/s with two, 449-489 with four (make bench); a
// connection whose peer does not read holds at most four pool buffers,
// and receives and sends each keep a reserve whatever the other holds
// (Stack.receiveRoomLocked).
const writeBehind = 4

// TCPListener is a listening TCP socket on keepnet (net.Listener).
type TCPListener struct {
	s *Stack
	c *sock
}

var (
	_ net.Conn     = (*TCPConn)(nil)
	_ net.Listener = (*TCPListener)(nil)
)

// Listen opens a TCP listener on address ("host:port"; an empty host binds
// to any address, port 0 to an ephemeral port). network is "tcp",
// "tcp4" or "tcp6"; hosts are numeric IP addresses.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	l, err := s.ListenTCP(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenTCP is Listen with a context bounding the set-up (OpOpen, OpBind,
// OpListen with a backlog of listenBacklog).
func (s *Stack) ListenTCP(ctx context.Context, network, address string) (*TCPListener, error) {
	laddr, err := parseAddr(ops.TCP, network, address, true)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	c, err := s.newSock(ops.TCP, network)
	if err == nil {
		err = s.establish(ctx, c,
			ops.OpBind.WithAddr(0, laddr),
			ops.OpListen.Msg(0, listenBacklog))
	}
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: tcpAddr(laddr), Err: err}
	}
	return &TCPListener{s: s, c: c}, nil
}

// DialTCP opens a TCP connection to address ("host:port": a numeric IPv4
// or IPv6 host, or a name, dial.go) from an ephemeral port. It returns when
// the connection is established; ctx bounds the wait (and at most 3
// minutes): when it ends first, the socket is closed. A refused connection
// fails with ECONNREFUSED, one that timed out in the transport with
// ETIMEDOUT, one with no route or no source address (IPv6) with
// ENETUNREACH or EADDRNOTAVAIL, all in a *net.OpError.
func (s *Stack) DialTCP(ctx context.Context, network, address string) (*TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return dialEach(ctx, s, ops.TCP, network, address, s.dialTCP)
}

// dialTCP connects to one address.
func (s *Stack) dialTCP(ctx context.Context, network string, raddr ops.Addr) (*TCPConn, error) {
	c, err := s.newSock(ops.TCP, network)
	if err == nil {
		err = s.establish(ctx, c, ops.OpConnect.WithAddr(0, raddr))
	}
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: tcpAddr(raddr), Err: err}
	}
	return &TCPConn{s: s, c: c}, nil
}

// topUpAcceptsLocked keeps acceptDepth accepts posted on listener c, each
// naming a fresh socket id, while its queue of accepted connections has
// room. s.mu must be held.
func (s *Stack) topUpAcceptsLocked(c *sock) {
	for c.posted < acceptDepth && len(c.aq)+c.posted < acceptQueue {
		s.nextSock++
		child := &sock{id: s.nextSock, network: ops.TCP, net: c.net, closedCh: make(chan struct{})}
		c.posted++
		s.submitLocked(&op{sock: c, child: child, msg: ops.OpAccept.Msg(c.id, child.id)})
	}
}

// acceptedLocked queues the connection a completed accept made and posts
// another accept. s.mu must be held.
func (s *Stack) acceptedLocked(o *op, m channel.Msg) {
	c, child := o.sock, o.child
	c.posted--
	switch ops.StatusOf(m) {
	case ops.StatusOK:
		child.opened, child.bound, child.connected, child.live = true, true, true, true
		child.remote, child.local = ops.GetAddr(m, ops.AtArg0), ops.GetAddr(m, ops.AtArg2)
		s.socks[child.id] = child
		if c.closed || c.broken != nil {
			s.closeSockLocked(child)
			return
		}
		c.aq = append(c.aq, child)
		s.topUpLocked(child)
		c.signalLocked()
	case ops.StatusClosed:
		return // the listener is being closed
	case ops.StatusError, ops.StatusReset, ops.StatusTimedOut, ops.StatusRefused:
		// a passing failure, or a connection that died before it was
		// accepted: post again
	default: // the server has no such listener any more
		if c.broken == nil && !c.closed {
			c.broken = fmt.Errorf("%w: %s", ErrLost, ops.StatusOf(m).Text())
			c.signalLocked()
		}
		return
	}
	s.topUpLocked(c)
}

// newBytesLocked is how many bytes of a data receive's reply m, in buffer
// ref, are new to c, moved to the front of the buffer. The reply says
// where its bytes lie in the stream (servers/ops: FlagOffset); after a
// restart of the transport, a receive posted before an earlier one was
// answered may bring some of that one's bytes again, and they are
// dropped here. Bytes that start past what c has mean some were lost: c
// is broken rather than handed a stream with a hole. s.mu must be held.
func (s *Stack) newBytesLocked(c *sock, m channel.Msg, ref pool.Ref) uint32 {
	n := min(m.Ref.Len, ref.Len)
	if m.Flags&ops.FlagOffset == 0 || n == 0 {
		return n
	}
	switch start := m.Arg[1]; {
	case start > c.recvOff:
		c.broken = fmt.Errorf("%w: the transport's bytes start at stream offset %d, past the %d received", ErrLost, start, c.recvOff)
		c.signalLocked()
		return 0
	case start+uint64(n) <= c.recvOff:
		s.stats.Redelivered += uint64(n) // all had before
		return 0
	case start < c.recvOff:
		dup := uint32(c.recvOff - start)
		buf, err := s.pool.Bytes(pool.Ref{Pool: ref.Pool, Off: ref.Off, Len: n})
		if err != nil {
			c.broken = fmt.Errorf("%w: %v", ErrLost, err)
			c.signalLocked()
			return 0
		}
		copy(buf, buf[dup:])
		s.stats.Redelivered += uint64(dup)
		return n - dup
	}
	return n
}

// topUpStreamLocked keeps receives posted on TCP connection c. While the
// transport has not said it is readable, c waits with one receive: a data
// receive with a buffer (a standing receive: the transport answers it with
// the bytes when they come) while the pool can spare one
// (standingBufLocked), else a readiness receive (servers/ops: a zero Ref,
// answered when there is something to read) that ties no buffer to an
// idle connection. Once it is readable, c has up to streamRecvDepth data
// receives posted with ops.FlagNoWait, as its queue and receiveBufLocked
// allow; the transport answers those at once, with bytes (c stays
// readable), the end of the stream or an error, or "would block" (c is not
// readable any more, and waits again once its last data receive is back).
// A readable connection left without a buffer is topped up again when one
// is freed (unstarveLocked). s.mu must be held.
//
// A standing receive saves a request its round trip to the transport and
// back: a readiness answer is followed by the data receives it calls for,
// so a request on a connection that waited that way reaches the
// application only after SYSCALL and TCP have each run twice more (the
// larger part of a keep-alive request's time under TCG).
func (s *Stack) topUpStreamLocked(c *sock) {
	if !c.readable {
		if c.posted > 0 || c.probing {
			return
		}
		if ref, ok := s.standingBufLocked(c); ok {
			c.posted++
			s.submitLocked(&op{sock: c, msg: channel.Msg{Op: uint16(ops.OpRecvFrom), Arg: [4]uint64{c.id}, Ref: ref}})
			return
		}
		c.probing = true
		s.submitLocked(&op{sock: c, msg: ops.OpRecvFrom.Msg(c.id)})
		return
	}
	for c.posted < streamRecvDepth && len(c.rq)+c.posted < s.queueCap {
		ref, ok := s.receiveBufLocked(c)
		if !ok {
			return
		}
		c.posted++
		s.submitLocked(&op{sock: c, msg: channel.Msg{Op: uint16(ops.OpRecvFrom), Flags: ops.FlagNoWait, Arg: [4]uint64{c.id}, Ref: ref}})
	}
}

// standingBufLocked is a buffer for a receive that waits on an idle
// connection (topUpStreamLocked), if the pool can spare it: such receives
// hold at most a quarter of the pool, and with the sends (which may wait
// as long) never the reserve that readable connections' receives need
// (waitingLocked); c's queue must have room. The other idle connections
// wait with a readiness receive. s.mu must be held.
func (s *Stack) standingBufLocked(c *sock) (pool.Ref, bool) {
	if s.standing >= s.pool.Len()/standingShare || s.waitingLocked() >= s.pool.Len()-s.reserve ||
		!s.receiveRoomLocked() || len(c.rq) >= s.queueCap {
		return pool.Ref{}, false
	}
	ref, ok := s.pool.Alloc()
	if ok {
		s.standing++
	}
	return ref, ok
}

// standingDoneLocked counts o's buffer back from the standing receives if
// o was one, answered or dropped. s.mu must be held.
func (s *Stack) standingDoneLocked(o *op) {
	if o.standing() {
		s.standing--
	}
}

// standing says whether o is a standing receive on an idle TCP connection: a
// data receive that waits (no ops.FlagNoWait).
func (o *op) standing() bool {
	return o.sock.network == ops.TCP && ops.OpOf(o.msg) == ops.OpRecvFrom &&
		!o.msg.Ref.IsZero() && o.msg.Flags&ops.FlagNoWait == 0
}

// streamReceivedLocked handles the reply to a receive on a TCP connection:
// a readiness receive's says c is readable; a data receive's brings bytes
// (queued), the end of the stream, "would block" or the connection's
// failure. Then it posts what topUpStreamLocked says. s.mu must be held.
func (s *Stack) streamReceivedLocked(o *op, m channel.Msg) {
	c, ref := o.sock, o.msg.Ref
	probe := ref.IsZero()
	free := func() {
		if !probe {
			s.freeLocked(ref)
		}
	}
	if probe {
		c.probing = false
	} else {
		c.posted--
	}
	data := !probe && ops.StatusOf(m) == ops.StatusOK && m.Ref.Pool == ref.Pool && m.Ref.Off == ref.Off
	// A standing receive answered with less than its buffer: the transport
	// had no more, so c waits again rather than asking with receives that
	// would only be told "would block".
	drained := data && o.standing() && m.Ref.Len < ref.Len
	if data {
		ref.Len = s.newBytesLocked(c, m, ref)
		c.recvOff += uint64(ref.Len) // ours now, read or dropped
	}
	if c.closed || c.broken != nil || c.rdShut {
		free()
		return
	}
	switch {
	case ops.StatusOf(m) == ops.StatusOK && probe:
		c.readable = true
	case data:
		if ref.Len > 0 {
			c.rq = append(c.rq, datagram{ref: ref})
			c.readable = true
			c.signalLocked()
		} else {
			s.freeLocked(ref)
		}
		switch {
		case m.Flags&ops.FlagEOF != 0:
			c.eof = true
			c.signalLocked()
		case ref.Len == 0, drained: // would block, or nothing more to read
			c.readable = false
		}
	case ops.StatusOf(m) == ops.StatusReset || ops.StatusOf(m) == ops.StatusTimedOut:
		free()
		s.connFailedLocked(c, ops.StatusOf(m))
		return
	case ops.StatusOf(m) == ops.StatusOK, ops.StatusOf(m) == ops.StatusError, ops.StatusOf(m) == ops.StatusNoRoute:
		free() // a bad Ref, or a passing failure: post again
	default: // the server has no such socket any more
		free()
		c.broken = fmt.Errorf("%w: %s", ErrLost, ops.StatusOf(m).Text())
		c.signalLocked()
		return
	}
	s.topUpLocked(c)
}

// connFailedLocked records a TCP connection's failure (StatusReset,
// StatusTimedOut) reported on any of its operations; other statuses are
// not the connection's. s.mu must be held.
func (s *Stack) connFailedLocked(c *sock, status ops.Status) {
	if (status == ops.StatusReset || status == ops.StatusTimedOut) && c.connErr == ops.StatusOK {
		c.connErr = status
		c.signalLocked()
	}
}

// resetLocked fails an established TCP connection on a new SYSCALL
// generation, which cannot carry it over: pending ops (taken back from the
// old channel or parked) fail with ECONNRESET, and so do later ones once the
// bytes already queued here are read. The socket is not the new server's:
// its Close is local. s.mu must be held.
func (s *Stack) resetLocked(c *sock, pending []*op) {
	s.stats.Reset++
	c.connErr = ops.StatusReset
	for _, o := range pending {
		s.dropLocked(o, ops.StatusReset)
	}
	c.parked, c.restoring = nil, false
	c.closeSent = true
	delete(s.socks, c.id)
	c.signalLocked()
}

// Accept waits for the next connection. It fails with net.ErrClosed once
// the listener or the Stack is closed.
func (l *TCPListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP is Accept returning the concrete type.
func (l *TCPListener) AcceptTCP() (*TCPConn, error) {
	s, c := l.s, l.c
	for {
		s.mu.Lock()
		if c.closed || s.closed {
			s.mu.Unlock()
			return nil, l.opErr(net.ErrClosed)
		}
		if len(c.aq) > 0 {
			child := c.aq[0]
			c.aq[0] = nil
			c.aq = c.aq[1:]
			s.topUpLocked(c)
			s.mu.Unlock()
			return &TCPConn{s: s, c: child}, nil
		}
		if c.broken != nil {
			err := c.broken
			s.mu.Unlock()
			return nil, l.opErr(err)
		}
		if c.notify == nil {
			c.notify = make(chan struct{})
		}
		notify := c.notify
		s.mu.Unlock()
		select {
		case <-notify:
		case <-c.closedCh:
		case <-l.s.done:
		}
	}
}

// Close stops listening: a blocked Accept fails with net.ErrClosed, and
// connections accepted by the transport but not yet by Accept are closed.
func (l *TCPListener) Close() error {
	if err := l.s.closeSock(l.c); err != nil {
		return l.opErr(err)
	}
	return nil
}

// Addr is the address the listener is bound to (*net.TCPAddr).
func (l *TCPListener) Addr() net.Addr {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	return tcpAddr(l.c.local)
}

func (l *TCPListener) opErr(err error) error {
	return &net.OpError{Op: "accept", Net: l.c.net, Addr: l.Addr(), Err: err}
}

// Read reads what bytes have arrived, up to len(b), waiting for some if
// there are none. At the end of the stream (the peer closed its side, or
// CloseRead) it returns io.EOF, once every byte before it was read.
func (t *TCPConn) Read(b []byte) (int, error) {
	n, err := t.read(b)
	if err != nil && err != io.EOF {
		return n, t.opErr("read", err)
	}
	return n, err
}

func (t *TCPConn) read(b []byte) (int, error) {
	s, c := t.s, t.c
	for {
		changed, expired := c.rd.wait()
		if expired {
			return 0, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
		switch {
		case c.closed:
			s.mu.Unlock()
			return 0, net.ErrClosed
		case c.rdShut:
			s.mu.Unlock()
			return 0, io.EOF
		case len(b) == 0:
			s.mu.Unlock()
			return 0, nil
		}
		if len(c.rq) > 0 {
			n, err := s.takeLocked(c, b)
			s.topUpLocked(c)
			s.mu.Unlock()
			return n, err
		}
		switch {
		case c.eof:
			s.mu.Unlock()
			return 0, io.EOF
		case c.connErr != ops.StatusOK:
			err := statusErr("read", c.connErr)
			s.mu.Unlock()
			return 0, err
		case c.broken != nil:
			err := c.broken
			s.mu.Unlock()
			return 0, err
		}
		if c.notify == nil {
			c.notify = make(chan struct{})
		}
		notify := c.notify
		s.mu.Unlock()
		select {
		case <-notify:
		case <-changed:
		case <-c.closedCh:
		case <-s.done:
		}
	}
}

// takeLocked copies queued bytes into b, freeing the buffers it empties.
// s.mu must be held.
func (s *Stack) takeLocked(c *sock, b []byte) (int, error) {
	n := 0
	for n < len(b) && len(c.rq) > 0 {
		d := c.rq[0]
		buf, err := s.pool.Bytes(d.ref)
		if err != nil {
			return n, err
		}
		k := copy(b[n:], buf[c.rqOff:])
		n += k
		if c.rqOff += k; c.rqOff == len(buf) {
			s.freeLocked(d.ref)
			c.rq[0] = datagram{}
			c.rq, c.rqOff = c.rq[1:], 0
		}
	}
	return n, nil
}

// Write sends b: it copies it into pool buffers, at most a buffer at a time,
// and hands each to the transport, keeping up to writeBehind of them in
// flight: it returns once all of b is handed over, as write(2) returns once
// the kernel has the bytes. A send the transport refuses (the connection
// was reset, say) fails a later Write, CloseWrite or Close — the next
// operation that waits for it. A Write that times out returns the bytes it
// handed over; what was in flight may still go out (as after a timed-out
// write(2), the stream's contents are then uncertain).
func (t *TCPConn) Write(b []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	s, c := t.s, t.c
	if len(b) == 0 {
		s.mu.Lock()
		closed := c.closed
		s.mu.Unlock()
		if closed {
			return 0, t.opErr("write", net.ErrClosed)
		}
		return 0, nil
	}
	n := 0
	for n < len(b) {
		if err := t.settle(writeBehind - 1); err != nil {
			return n, t.opErr("write", err)
		}
		chunk := b[n:min(len(b), n+s.pool.BufSize())]
		o, err := s.submitSend(c, chunk, ops.Addr{})
		if err != nil {
			return n, t.opErr("write", err)
		}
		t.smu.Lock()
		t.sent = append(t.sent, sentChunk{o, len(chunk)})
		t.smu.Unlock()
		n += len(chunk)
	}
	return n, nil
}

// settle waits for the oldest sends until at most keep remain in flight,
// and returns the first error a send came back with (then and from then
// on). The transport answers a send only once all of it is in its send
// buffer (servers/tcp), so an answer for less is an error too.
func (t *TCPConn) settle(keep int) error {
	t.smu.Lock()
	defer t.smu.Unlock()
	for t.werr == nil && len(t.sent) > keep {
		p := t.sent[0]
		t.smu.Unlock()
		r, err := t.s.awaitSend(t.c, p.o)
		t.smu.Lock()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return err // still in flight: the next call waits again
		case err != nil:
			t.werr = err
		case ops.StatusOf(r) != ops.StatusOK:
			t.werr = statusErr("write", ops.StatusOf(r))
		case r.Arg[2] < uint64(p.n):
			t.werr = io.ErrShortWrite
		}
		if len(t.sent) > 0 && t.sent[0] == p {
			t.sent = t.sent[1:]
		}
	}
	return t.werr
}

// CloseWrite shuts down the sending side (a FIN once the bytes written are
// out); reading goes on. Later Writes fail with EPIPE.
func (t *TCPConn) CloseWrite() error {
	s, c := t.s, t.c
	s.mu.Lock()
	switch {
	case c.closed:
		s.mu.Unlock()
		return t.opErr("close", net.ErrClosed)
	case c.wrShut:
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	t.wmu.Lock() // after any Write in progress: the FIN follows its bytes
	err := t.settle(0)
	t.wmu.Unlock()
	if err != nil {
		return t.opErr("close", err)
	}
	s.mu.Lock()
	c.wrShut = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	r, err := s.call(ctx, c, ops.OpShutdown.Msg(c.id))
	if err == nil {
		err = statusErr("shutdown", ops.StatusOf(r))
	}
	if err != nil {
		return t.opErr("close", err)
	}
	return nil
}

// CloseRead ends reading here: Read returns io.EOF from now on and bytes
// that arrive are dropped. The transport is not told (servers/ops has no
// such operation), so it keeps receiving; closing the connection with
// bytes unread may then make it a reset, as on Linux.
func (t *TCPConn) CloseRead() error {
	s, c := t.s, t.c
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return t.opErrLocked("close", net.ErrClosed)
	}
	c.rdShut = true
	for _, d := range c.rq {
		s.freeLocked(d.ref)
	}
	c.rq, c.rqOff = nil, 0
	c.signalLocked()
	return nil
}

// Close closes the connection (an orderly close, or a reset if bytes it
// received were left unread in the transport): blocked and later operations
// fail with net.ErrClosed.
func (t *TCPConn) Close() error {
	// Sends still in flight need no wait: the transport takes what is
	// posted before the close into its send buffer, then sends the FIN.
	if err := t.s.closeSock(t.c); err != nil {
		return t.opErr("close", err)
	}
	return nil
}

// The socket options, with the names and meaning of Go's net.TCPConn
// methods (servers/ops: OpSetOption). They live with the connection in the
// transport, so a restart of tcp or of SYSCALL keeps them; an option set
// while SYSCALL restarts is set on its next generation. Each waits for the
// transport's answer; an error is a *net.OpError with Op "set".
//
// Unlike Go's net, keepnet's Dial and Accept do not turn keep-alive on by
// themselves (Go's default is probes after 15 s idle): a connection has it
// only once the application asks. Durations are rounded up to whole
// seconds, as Go does for Linux's socket options.

// Go's defaults for the zero values of KeepAliveConfig and
// SetKeepAlivePeriod, and the longest linger the transport keeps
// (servers/tcp cuts longer ones to it).
const (
	defaultKeepAliveIdle     = 15 * time.Second
	defaultKeepAliveInterval = 15 * time.Second
	defaultKeepAliveCount    = 9
	maxLinger                = 3600
)

// SetNoDelay turns Nagle's algorithm off (true, the default: a short
// write goes out at once) or on (short writes wait for the ACK of what is
// in flight, to go out together).
func (t *TCPConn) SetNoDelay(noDelay bool) error {
	return t.setOptions(option{ops.OptNoDelay, boolValue(noDelay)})
}

// SetKeepAlive turns keep-alive probes on or off.
func (t *TCPConn) SetKeepAlive(keepalive bool) error {
	return t.setOptions(option{ops.OptKeepAlive, boolValue(keepalive)})
}

// SetKeepAlivePeriod sets how long the connection must be idle before the
// first keep-alive probe: 0 is 15 s, a negative period changes nothing.
func (t *TCPConn) SetKeepAlivePeriod(d time.Duration) error {
	return t.setOptions(keepAliveDuration(ops.OptKeepAliveIdle, d, defaultKeepAliveIdle)...)
}

// SetKeepAliveConfig configures keep-alive as net.TCPConn's does: Enable
// turns it on or off; Idle is the idle time before the first probe,
// Interval the time between probes and Count the probes that may go
// unanswered before the connection fails with ETIMEDOUT (reads and writes
// return it); a zero Idle or Interval is 15 s, a zero Count 9, a negative
// value leaves that setting alone.
func (t *TCPConn) SetKeepAliveConfig(config net.KeepAliveConfig) error {
	opts := append(keepAliveDuration(ops.OptKeepAliveIdle, config.Idle, defaultKeepAliveIdle),
		keepAliveDuration(ops.OptKeepAliveInterval, config.Interval, defaultKeepAliveInterval)...)
	switch {
	case config.Count == 0:
		opts = append(opts, option{ops.OptKeepAliveCount, defaultKeepAliveCount})
	case config.Count > 0:
		opts = append(opts, option{ops.OptKeepAliveCount, uint64(config.Count)})
	}
	// Enable last: the first probe is timed from settings all in place.
	return t.setOptions(append(opts, option{ops.OptKeepAlive, boolValue(config.Enable)})...)
}

// SetLinger sets what Close does with data not yet sent or acknowledged:
// sec < 0 (the default) sends it in the background; sec == 0 discards it
// and resets the connection (an RST); sec > 0 sends it in the background
// too, and Close waits until the peer has acknowledged all of it, at most
// sec seconds (up to an hour).
func (t *TCPConn) SetLinger(sec int) error {
	if err := t.setOptions(option{ops.OptLinger, uint64(int64(max(sec, -1)))}); err != nil {
		return err
	}
	t.s.mu.Lock()
	t.c.linger = max(sec, -1)
	t.s.mu.Unlock()
	return nil
}

// SetReadBuffer sets the size of the transport's receive buffer for the
// connection, which bounds the window it offers (servers/tcp keeps it
// between 4 KiB and its configured size, 1 MiB, as Linux bounds SO_RCVBUF
// by rmem_max).
func (t *TCPConn) SetReadBuffer(bytes int) error {
	return t.setOptions(option{ops.OptRecvBuffer, uint64(max(bytes, 1))})
}

// SetWriteBuffer sets the size of the transport's send buffer for the
// connection (servers/tcp keeps it between 4 KiB and its configured
// size, 1 MiB).
func (t *TCPConn) SetWriteBuffer(bytes int) error {
	return t.setOptions(option{ops.OptSendBuffer, uint64(max(bytes, 1))})
}

// option is one OpSetOption.
type option struct {
	o ops.Option
	v uint64
}

func boolValue(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// keepAliveDuration is the option setting o to d rounded up to a second,
// def for 0; none for a negative d.
func keepAliveDuration(o ops.Option, d, def time.Duration) []option {
	switch {
	case d < 0:
		return nil
	case d == 0:
		d = def
	}
	secs := (d + time.Second - 1) / time.Second
	return []option{{o, uint64(secs * time.Second)}}
}

// setOptions sets each option in turn, each waiting for its answer
// within ctlTimeout; the first failure stops it.
func (t *TCPConn) setOptions(opts ...option) error {
	s, c := t.s, t.c
	for _, o := range opts {
		s.mu.Lock()
		closed := c.closed
		s.mu.Unlock()
		if closed {
			return t.opErr("set", net.ErrClosed)
		}
		ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
		r, err := s.call(ctx, c, ops.SetOptionMsg(c.id, o.o, o.v))
		cancel()
		if err == nil {
			err = statusErr("setsockopt", ops.StatusOf(r))
		}
		if err != nil {
			return t.opErr("set", err)
		}
	}
	return nil
}

// LocalAddr is the connection's local address (*net.TCPAddr).
func (t *TCPConn) LocalAddr() net.Addr {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	return tcpAddr(t.c.local)
}

// RemoteAddr is the peer's address (*net.TCPAddr).
func (t *TCPConn) RemoteAddr() net.Addr {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	return tcpAddr(t.c.remote)
}

// SetDeadline sets both deadlines.
func (t *TCPConn) SetDeadline(d time.Time) error {
	t.c.rd.set(d)
	t.c.wd.set(d)
	return nil
}

// SetReadDeadline sets the deadline of reads; a blocked Read sees the change
// at once.
func (t *TCPConn) SetReadDeadline(d time.Time) error {
	t.c.rd.set(d)
	return nil
}

// SetWriteDeadline sets the deadline of writes (including the waits for the
// transport to take the bytes); a blocked Write sees the change at once.
func (t *TCPConn) SetWriteDeadline(d time.Time) error {
	t.c.wd.set(d)
	return nil
}

// opErr wraps err as Go's net does for a connection: Source the local
// address, Addr the peer.
func (t *TCPConn) opErr(op string, err error) error {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	return t.opErrLocked(op, err)
}

func (t *TCPConn) opErrLocked(op string, err error) error {
	return &net.OpError{Op: op, Net: t.c.net, Source: tcpAddr(t.c.local), Addr: tcpAddr(t.c.remote), Err: err}
}

// tcpAddr converts a packed address.
func tcpAddr(a ops.Addr) *net.TCPAddr { return net.TCPAddrFromAddrPort(a.AddrPort()) }
