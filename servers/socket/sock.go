package socket

import (
	"context"
	"net"
	"os"
	"syscall"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/servers/ops"
)

// sock is the library's record of one socket, UDP or TCP: what every
// socket has — its ids, deadlines, what the server confirmed, its restore
// chain, its receive queue — and, embedded, the state only a TCP socket
// uses (stream; zero and unused on a UDP socket). UDPConn, TCPConn and
// TCPListener are views of one sock; the paths they share (establish,
// call, submitSend and awaitSend, closeSock) live in this file, those of
// one protocol in udp.go and tcp.go.
type sock struct {
	id      uint64
	network ops.Network
	net     string // as the application named it: "udp", "udp4", "udp6", "tcp", "tcp4", "tcp6"

	rd, wd deadline // their own locks

	closedCh chan struct{} // closed by Close

	// Guarded by Stack.mu.
	opened, bound, connected bool // as the server has confirmed
	local, remote            ops.Addr
	live                     bool // created: receives may be posted
	restoring                bool // the restore chain runs; new requests park
	parked                   []*op
	attempts                 int // restore steps retried
	closed, closeSent        bool
	broken                   error         // set when the socket is lost
	posted                   int           // receives with buffers (accepts, on a listener) posted
	hungry                   bool          // waits in Stack.hungry for a buffer to post a receive with
	rq                       []datagram    // received datagrams (UDP) or chunks of the stream (TCP)
	notify                   chan struct{} // closed when rq or aq grows, or eof, connErr or broken is set; made by a waiting reader

	stream // TCP only
}

// stream is the state only a TCP socket (a connection or a listener) has;
// guarded by Stack.mu. The shared paths read two of its fields, which stay
// zero on a UDP socket: connErr (a broken connection fails its sends and its
// set-up) and wrShut (no sends after CloseWrite).
type stream struct {
	readable       bool       // the transport said there is something to read (see topUpStreamLocked)
	probing        bool       // a readiness receive (no buffer) is posted
	listening      bool       // OpListen confirmed
	backlog        int        // as given to OpListen, for a restore
	aq             []*sock    // a listener's accepted connections, not yet taken by Accept
	rqOff          int        // bytes of rq[0] already read
	eof            bool       // the peer's FIN came (FlagEOF)
	rdShut, wrShut bool       // CloseRead, CloseWrite
	connErr        ops.Status // StatusReset or StatusTimedOut once the connection is broken
	// linger is the connection's SetLinger, for how long Close waits for
	// the transport's answer (servers/ops: OpClose lingers); < 0: none.
	linger int
	// The connection's stream offsets (servers/ops): bytes handed to
	// sends so far, bytes received so far. Every OpSendTo carries the
	// offset of its first byte and every OpRecvFrom the received one, so
	// that a transport that sees a request twice (reissued after a SYSCALL
	// restart) neither duplicates nor loses a byte.
	sendOff, recvOff uint64
}

// datagram is one received datagram, its bytes still in the pool, or an
// error the transport reported in its place (ICMP port unreachable).
type datagram struct {
	ref pool.Ref
	src ops.Addr
	err error
}

// newSock registers a socket record.
func (s *Stack) newSock(network ops.Network, name string) (*sock, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, net.ErrClosed
	}
	s.nextSock++
	c := &sock{id: s.nextSock, network: network, net: name, closedCh: make(chan struct{})}
	c.linger = -1
	s.socks[c.id] = c
	return c, nil
}

// closeSockLocked closes c locally — its waiters fail with net.ErrClosed,
// its queued datagrams are freed — and sends OpClose; it returns that
// request, nil if there was none to send. s.mu must be held.
func (s *Stack) closeSockLocked(c *sock) *op {
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.closedCh)
	for _, d := range c.rq {
		if d.err == nil {
			s.freeLocked(d.ref)
		}
	}
	c.rq, c.rqOff = nil, 0
	for _, a := range c.aq {
		s.closeSockLocked(a)
	}
	c.aq = nil
	if c.closeSent || s.closed {
		return nil
	}
	c.closeSent = true
	o := &op{sock: c, msg: ops.OpClose.Msg(c.id), done: make(chan channel.Msg, 1)}
	s.submitLocked(o)
	return o
}

// establish opens c on the server and binds, listens and/or connects it
// with setup (Arg[0] filled in here), one request after the other, then
// starts receiving (accepting, on a listener). On failure, a cancelled ctx
// included, c is closed.
func (s *Stack) establish(ctx context.Context, c *sock, setup ...channel.Msg) error {
	r, err := s.call(ctx, c, ops.OpOpen.Msg(c.id, uint64(c.network)))
	if err == nil {
		err = statusErr("socket", ops.StatusOf(r))
	}
	for _, m := range setup {
		if err != nil {
			break
		}
		call := "bind"
		switch ops.OpOf(m) {
		case ops.OpConnect:
			call = "connect"
		case ops.OpListen:
			call = "listen"
			c.backlog = int(m.Arg[1])
		}
		m.Arg[0] = c.id
		if r, err = s.call(ctx, c, m); err == nil {
			err = statusErr(call, ops.StatusOf(r))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && c.broken != nil {
		err = c.broken
	}
	if err == nil && c.connErr != ops.StatusOK { // reset by a restart while connecting
		err = statusErr("connect", c.connErr)
	}
	if err != nil {
		s.closeSockLocked(c)
		return err
	}
	c.live = true
	s.topUpLocked(c)
	return nil
}

// call sends a control request for c and waits for its reply.
func (s *Stack) call(ctx context.Context, c *sock, m channel.Msg) (channel.Msg, error) {
	o := &op{sock: c, msg: m, done: make(chan channel.Msg, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return channel.Msg{}, net.ErrClosed
	}
	s.submitLocked(o)
	s.mu.Unlock()
	select {
	case r := <-o.done:
		return r, nil
	case <-ctx.Done():
		return channel.Msg{}, ctxErr(ctx.Err())
	case <-s.done:
		return channel.Msg{}, net.ErrClosed
	}
}

// submitSend copies b (at most a pool buffer) into a pool buffer and sends
// it on c to dst (0: the connected peer). An exhausted pool makes it wait
// for a buffer, within c's write deadline; while it waits, receives leave
// it one (receiveBufLocked), so it is not starved by them.
func (s *Stack) submitSend(c *sock, b []byte, dst ops.Addr) (*op, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	waiting := false // counted in s.writers
	defer func() {
		if waiting {
			s.writers--
			s.unstarveLocked() // receives may have what this writer leaves
		}
	}()
	for {
		switch {
		case c.closed || s.closed:
			return nil, net.ErrClosed
		case c.broken != nil:
			return nil, c.broken
		case c.connErr != ops.StatusOK:
			return nil, statusErr("write", c.connErr)
		case c.wrShut:
			return nil, os.NewSyscallError("write", syscall.EPIPE)
		}
		changed, expired := c.wd.wait()
		if expired {
			return nil, os.ErrDeadlineExceeded
		}
		if ref, ok := s.allocSendLocked(); ok {
			ref.Len = uint32(len(b))
			buf, err := s.pool.Bytes(ref)
			if err != nil {
				s.freeSendLocked(ref)
				return nil, err
			}
			copy(buf, b)
			m := ops.OpSendTo.WithAddr(c.id, dst)
			if c.network == ops.TCP {
				m.Arg[1], m.Arg[2] = c.sendOff, 0
				m.Flags |= ops.FlagOffset
				c.sendOff += uint64(len(b))
			}
			m.Ref = ref
			o := &op{sock: c, msg: m, done: make(chan channel.Msg, 1)}
			s.submitLocked(o)
			return o, nil
		}
		// No buffer for a send: wait for one to come back.
		if s.bufFreed == nil {
			s.bufFreed = make(chan struct{})
		}
		freed := s.bufFreed
		if !waiting {
			waiting = true
			s.writers++
		}
		s.mu.Unlock()
		select {
		case <-freed:
		case <-changed:
		case <-c.closedCh:
		case <-s.done:
		}
		s.mu.Lock()
	}
}

// awaitSend waits for the reply to a send, within c's write deadline. On a
// timeout the buffer stays lent until the reply comes (the dispatcher frees
// it then).
func (s *Stack) awaitSend(c *sock, o *op) (channel.Msg, error) {
	for {
		changed, expired := c.wd.wait()
		select {
		case r := <-o.done: // a reply that beat the deadline still counts
			return r, nil
		default:
		}
		if expired {
			return channel.Msg{}, os.ErrDeadlineExceeded
		}
		select {
		case r := <-o.done:
			return r, nil
		case <-changed:
		case <-c.closedCh:
			return channel.Msg{}, net.ErrClosed
		case <-s.done:
			return channel.Msg{}, net.ErrClosed
		}
	}
}

// closeSock closes c and waits a little for the server to confirm (a
// connection with a linger, SetLinger, that much longer: the transport
// answers when its bytes are acknowledged); it fails with net.ErrClosed
// if c was closed already.
func (s *Stack) closeSock(c *sock) error {
	s.mu.Lock()
	if c.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	o := s.closeSockLocked(c)
	wait := closeWait
	if c.linger > 0 {
		wait += time.Duration(min(c.linger, maxLinger)) * time.Second
	}
	s.mu.Unlock()
	if o != nil {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-o.done:
		case <-t.C:
		case <-s.done:
		}
	}
	return nil
}
