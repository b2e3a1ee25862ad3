package socket

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/ops"
)

// UDPConn is a UDP socket on keepnet: a net.PacketConn from ListenPacket,
// a connected net.Conn (that is a net.PacketConn too, as Go's resolver
// wants) from Dial. Its methods are safe for concurrent use.
type UDPConn struct {
	s *Stack
	c *sock
	// Write-behind: the sends handed to the transport and not yet
	// answered, oldest first. smu guards it and makes concurrent writes
	// take turns.
	smu     sync.Mutex
	pending []*op
}

// datagramWriteBehind is how many sends a UDP socket keeps with the
// transport before a write waits for the oldest one's reply. A write that
// waited for its own reply (the round trip through SYSCALL and UDP: four
// hops, each a wake-up under load) made an application that answers each
// datagram serve at most one per round trip: apps/echo spent 95% of its
// time in WriteTo and fell behind a 200 datagrams/s stream on a busy guest
// until udp's receive queue overflowed (TestUDPPacedStream). Sixteen, as
// recvDepth: each hop then moves a batch per wake-up rather than four
// datagrams (BenchmarkUDPRate, 32 datagrams in flight to the echo app:
// 2.4 times the rate with four, 2026-12-03), and a socket holds at most
// sixteen pool buffers in sends (receives keep their reserve whatever
// writers hold).
const datagramWriteBehind = 16

var (
	_ net.PacketConn = (*UDPConn)(nil)
	_ net.Conn       = (*UDPConn)(nil)
)

// ListenPacket opens a UDP socket bound to address ("host:port"; an empty
// host or "" binds to any address, port 0 to an ephemeral port). network is
// "udp", "udp4" or "udp6"; hosts are numeric IP addresses.
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	c, err := s.ListenUDP(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListenUDP is ListenPacket with a context bounding the set-up.
func (s *Stack) ListenUDP(ctx context.Context, network, address string) (*UDPConn, error) {
	laddr, err := parseAddr(ops.UDP, network, address, true)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	c, err := s.create(ctx, network, ops.OpBind.WithAddr(0, laddr))
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: udpAddr(laddr), Err: err}
	}
	return c, nil
}

// Dial connects to address; see DialContext.
func (s *Stack) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// DialContext connects to address, a "host:port" whose host is numeric or
// a name (dial.go). For "tcp",
// "tcp4" and "tcp6" it is [Stack.DialTCP]. For the "udp" networks it opens a UDP
// socket connected to address, bound to an ephemeral port: Read and Write
// then talk to that peer only; ctx bounds the set-up (and at most 10 s).
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := s.DialTCP(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	c, err := s.DialUDP(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialUDP is DialContext returning the concrete type.
func (s *Stack) DialUDP(ctx context.Context, network, address string) (*UDPConn, error) {
	return s.DialUDPFrom(ctx, network, "", address)
}

// DialUDPFrom is DialUDP from a given local address (like net.DialUDP's
// laddr; "" is an ephemeral port).
func (s *Stack) DialUDPFrom(ctx context.Context, network, local, address string) (*UDPConn, error) {
	return dialEach(ctx, s, ops.UDP, network, address, func(ctx context.Context, network string, raddr ops.Addr) (*UDPConn, error) {
		return s.dialUDP(ctx, network, local, raddr)
	})
}

// dialUDP connects a UDP socket to one address.
func (s *Stack) dialUDP(ctx context.Context, network, local string, raddr ops.Addr) (*UDPConn, error) {
	laddr, err := parseAddr(ops.UDP, network, local, true)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: udpAddr(raddr), Err: err}
	}
	setup := []channel.Msg{ops.OpConnect.WithAddr(0, raddr)}
	if local != "" {
		setup = slices.Insert(setup, 0, ops.OpBind.WithAddr(0, laddr))
	}
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	c, err := s.create(ctx, network, setup...)
	if err != nil {
		var src net.Addr
		if local != "" {
			src = udpAddr(laddr)
		}
		return nil, &net.OpError{Op: "dial", Net: network, Source: src, Addr: udpAddr(raddr), Err: err}
	}
	return c, nil
}

// create opens a UDP socket and sets it up (see establish).
func (s *Stack) create(ctx context.Context, network string, setup ...channel.Msg) (*UDPConn, error) {
	c, err := s.newSock(ops.UDP, network)
	if err != nil {
		return nil, err
	}
	if err := s.establish(ctx, c, setup...); err != nil {
		return nil, err
	}
	return &UDPConn{s: s, c: c}, nil
}

// ReadFrom reads the next datagram into b and returns its length (at most
// len(b): the rest of a longer datagram is dropped) and its source.
func (u *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, src, err := u.read(b)
	if err != nil {
		return n, nil, u.opErr("read", nil, err)
	}
	return n, udpAddr(src), nil
}

// ReadFromUDPAddrPort is ReadFrom with the source as a netip.AddrPort.
func (u *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, src, err := u.read(b)
	if err != nil {
		return n, netip.AddrPort{}, u.opErr("read", nil, err)
	}
	return n, src.AddrPort(), nil
}

// Read reads the next datagram (from the connected peer, if connected).
func (u *UDPConn) Read(b []byte) (int, error) {
	n, _, err := u.read(b)
	if err != nil {
		return n, u.opErr("read", nil, err)
	}
	return n, nil
}

func (u *UDPConn) read(b []byte) (int, ops.Addr, error) {
	s, c := u.s, u.c
	for {
		changed, expired := c.rd.wait()
		if expired {
			return 0, ops.Addr{}, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
		if c.closed {
			s.mu.Unlock()
			return 0, ops.Addr{}, net.ErrClosed
		}
		if len(c.rq) > 0 {
			d := c.rq[0]
			c.rq[0] = datagram{}
			c.rq = c.rq[1:]
			if d.err != nil {
				s.topUpLocked(c)
				s.mu.Unlock()
				return 0, ops.Addr{}, d.err
			}
			buf, err := s.pool.Bytes(d.ref)
			n := copy(b, buf)
			s.freeLocked(d.ref)
			s.topUpLocked(c)
			s.mu.Unlock()
			return n, d.src, err
		}
		if c.broken != nil {
			s.mu.Unlock()
			return 0, ops.Addr{}, c.broken
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

// WriteTo sends b as one datagram to addr (a *net.UDPAddr, or any net.Addr
// whose String is a numeric "ip:port"). A connected socket refuses it
// (net.ErrWriteToConnected), as Go's does.
func (u *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if addr == nil {
		return 0, u.opErr("write", nil, errMissingAddress)
	}
	dst, err := netAddr(addr)
	if err != nil {
		return 0, u.opErr("write", addr, err)
	}
	return u.writeTo(b, dst, addr)
}

// WriteToUDPAddrPort is WriteTo with a netip.AddrPort.
func (u *UDPConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return u.writeTo(b, ops.FromAddrPort(addr), net.UDPAddrFromAddrPort(addr))
}

func (u *UDPConn) writeTo(b []byte, dst ops.Addr, addr net.Addr) (int, error) {
	u.s.mu.Lock()
	connected := u.c.connected
	u.s.mu.Unlock()
	if connected {
		return 0, u.opErr("write", addr, net.ErrWriteToConnected)
	}
	n, err := u.write(b, dst)
	if err != nil {
		return n, u.opErr("write", addr, err)
	}
	return n, nil
}

// Write sends b as one datagram to the connected peer.
func (u *UDPConn) Write(b []byte) (int, error) {
	u.s.mu.Lock()
	connected := u.c.connected
	u.s.mu.Unlock()
	if !connected {
		return 0, u.opErr("write", nil, errMissingAddress)
	}
	n, err := u.write(b, ops.Addr{})
	if err != nil {
		return n, u.opErr("write", nil, err)
	}
	return n, nil
}

// write copies b into a pool buffer and hands it to the transport for dst
// (0: the connected peer); it returns without waiting for the reply, as
// sendto(2) returns once the kernel has the datagram, unless
// datagramWriteBehind sends are in flight already: then it waits (within
// the write deadline) for the oldest. A send the transport refused fails
// the next write on the socket, once (UDP's sends are independent; Linux
// reports an asynchronous error once, too). A write that times out waiting
// sent nothing; the sends in flight stay lent until their replies come.
func (u *UDPConn) write(b []byte, dst ops.Addr) (int, error) {
	s, c := u.s, u.c
	if len(b) > s.pool.BufSize() {
		return 0, os.NewSyscallError("sendto", syscall.EMSGSIZE)
	}
	u.smu.Lock()
	defer u.smu.Unlock()
	if err := u.settle(datagramWriteBehind - 1); err != nil {
		return 0, err
	}
	o, err := s.submitSend(c, b, dst)
	if err != nil {
		return 0, err
	}
	u.pending = append(u.pending, o)
	return len(b), nil
}

// settle forgets the sends already answered, then waits for the oldest
// until at most keep remain in flight. It returns the error of the first
// refused send among those it forgot (the others' errors are dropped: one
// report per write), or the wait's error. u.smu must be held.
func (u *UDPConn) settle(keep int) error {
	var first error
	note := func(r channel.Msg) {
		if first == nil && ops.StatusOf(r) != ops.StatusOK {
			first = u.refused(ops.StatusOf(r))
		}
	}
	k := 0
	for _, o := range u.pending {
		select {
		case r := <-o.done:
			note(r)
		default:
			u.pending[k] = o
			k++
		}
	}
	clear(u.pending[k:])
	u.pending = u.pending[:k]
	for first == nil && len(u.pending) > keep {
		r, err := u.s.awaitSend(u.c, u.pending[0])
		if err != nil {
			return err // a timeout leaves it in flight: the next write waits again
		}
		u.pending[0] = nil
		u.pending = u.pending[1:]
		note(r)
	}
	return first
}

// refused is the error of a send the transport answered with status: the
// socket's, if it was lost.
func (u *UDPConn) refused(status ops.Status) error {
	u.s.mu.Lock()
	broken := u.c.broken
	u.s.mu.Unlock()
	if broken != nil {
		return broken
	}
	return statusErr("sendto", status)
}

// Close closes the socket: blocked and later operations fail with
// net.ErrClosed. It waits a little for the server to confirm, so that the
// port is free when it returns.
func (u *UDPConn) Close() error {
	if err := u.s.closeSock(u.c); err != nil {
		return u.opErr("close", nil, err)
	}
	return nil
}

// LocalAddr is the address the socket is bound to (*net.UDPAddr).
func (u *UDPConn) LocalAddr() net.Addr {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	return udpAddr(u.c.local)
}

// RemoteAddr is the connected peer (*net.UDPAddr), nil if not connected.
func (u *UDPConn) RemoteAddr() net.Addr {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if !u.c.connected {
		return nil
	}
	return udpAddr(u.c.remote)
}

// SetDeadline sets both deadlines.
func (u *UDPConn) SetDeadline(t time.Time) error {
	u.c.rd.set(t)
	u.c.wd.set(t)
	return nil
}

// SetReadDeadline sets the deadline of reads; a blocked read sees the
// change at once.
func (u *UDPConn) SetReadDeadline(t time.Time) error {
	u.c.rd.set(t)
	return nil
}

// SetWriteDeadline sets the deadline of writes (a write waits for a pool
// buffer, and for the oldest send's reply when four are in flight); a
// blocked write sees the change at once.
func (u *UDPConn) SetWriteDeadline(t time.Time) error {
	u.c.wd.set(t)
	return nil
}

// opErr wraps err as Go's net does for this socket: Source the local
// address, Addr the given one or else the connected peer.
func (u *UDPConn) opErr(op string, addr net.Addr, err error) error {
	u.s.mu.Lock()
	e := &net.OpError{Op: op, Net: u.c.net, Source: udpAddr(u.c.local), Err: err}
	if addr != nil {
		e.Addr = addr
	} else if u.c.connected {
		e.Addr = udpAddr(u.c.remote)
	}
	u.s.mu.Unlock()
	return e
}

// udpAddr converts an address to the net package's type.
func udpAddr(a ops.Addr) *net.UDPAddr { return net.UDPAddrFromAddrPort(a.AddrPort()) }
