package socket

import (
	"cmp"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
)

// PeerName is the component an application's sockets go to.
const PeerName = "syscall"

// PoolSuffix names an application's pool: "<app>.io".
const PoolSuffix = ".io"

const (
	recvDepth         = 16                     // receives kept posted per UDP socket
	streamRecvDepth   = 2                      // data receives in flight per readable TCP connection
	standingShare     = 4                      // standing receives on idle TCP connections hold at most 1/standingShare of the pool
	minReserve        = 2                      // buffers receives and sends each leave to the other, at least...
	reserveShare      = 4                      // ...or 1/reserveShare of the pool
	acceptDepth       = 4                      // accepts kept posted per listener
	acceptQueue       = 16                     // accepted connections queued per listener, at most
	listenBacklog     = 1024                   // OpListen's backlog (Go on Linux listens with somaxconn, 4096)
	connectTimeout    = 3 * time.Minute        // a TCP connect without a caller deadline
	maxQueue          = 64                     // datagrams queued per socket, at most
	pollEvery         = 25 * time.Millisecond  // the dispatcher's longest sleep on a channel it cannot wake
	ctlTimeout        = 10 * time.Second       // open/bind/connect without a caller deadline
	closeWait         = time.Second            // how long Close waits for its reply
	restoreRetryEvery = 100 * time.Millisecond // a restore step refused with StatusError...
	restoreRetries    = 50                     // ...is retried this often
	batch             = 64                     // replies taken per Recv
)

// idleWait is the dispatcher's longest sleep on a channel it can wake
// (a variable for tests): an idle application wakes once a second.
var idleWait = time.Second

// Stack is an application's end of keepnet's sockets: the channel to the
// SYSCALL server, the application's pool, and the sockets opened through
// it. Its methods are safe for concurrent use.
//
// Lock order: Stack.mu, then the pool's own lock (inside Alloc/Free). A
// socket's deadlines have their own locks, never taken with Stack.mu held.
type Stack struct {
	pool     *pool.Pool
	queueCap int // datagrams queued per socket
	reserve  int // buffers receives leave to sends, and sends to receives (see receiveBufLocked)

	switches chan peerPort // new generations of the peer, for the dispatcher
	done     chan struct{} // closed by Close
	exited   chan struct{} // closed when the dispatcher returns

	// names resolves the host names Dial is given (dial.go); nil is
	// Resolver. Set before use only (tests).
	names *net.Resolver

	// Set by Open only.
	conn      *wiring.Conn
	watcher   *wiring.Watcher
	watchDone chan struct{}

	// mu guards everything below and every socket's fields marked so.
	mu        sync.Mutex
	port      channel.Port // the current generation's channel; nil before the first
	closePort func()       // releases port
	gen       int          // the current generation
	out       []channel.Msg
	ops       map[uint64]*op // sent (or queued in out) and unanswered, by request id
	nextID    uint64         // request ids only grow, across generations
	socks     map[uint64]*sock
	nextSock  uint64
	bufFreed  chan struct{} // closed when a buffer is freed; made by a waiting writer
	writers   int           // writers waiting for a buffer; receives leave them one each
	sending   int           // buffers lent to sends not yet answered
	standing  int           // buffers lent to standing receives on idle TCP connections (standingBufLocked)
	// hungry are the sockets a receive could not be posted on for want
	// of a buffer, oldest first, each once (sock.hungry): a freed
	// buffer tops them up, not every socket (unstarveLocked).
	hungry []*sock
	closed bool
	stats  Stats
}

// Stats are a Stack's counters.
type Stats struct {
	Generation int    // of the SYSCALL server now in use
	Restarts   uint64 // generations switched to after the first
	Restored   uint64 // sockets re-created on a new generation
	Lost       uint64 // sockets a new generation could not re-create
	Reset      uint64 // TCP connections a new generation could not carry over
	Resent     uint64 // sends re-issued after a restart
	Reposted   uint64 // receives re-posted after a restart
	Stale      uint64 // replies with no request (dropped)
	// Redelivered counts received TCP bytes dropped because the
	// connection had them already: after a restart of the transport, a
	// receive posted before an earlier one was answered brings its bytes
	// again (servers/ops).
	Redelivered uint64
	Sockets     int
	Pending     int // requests without a reply
}

// peerPort is one generation of the peer.
type peerPort struct {
	port  channel.Port
	gen   int // 0: the one after the current
	close func()
}

// op is one request and what waits for its reply.
type op struct {
	msg     channel.Msg // msg.ID is its id on the current channel
	sock    *sock
	restore bool             // a step of the socket's restore chain
	child   *sock            // OpAccept: the connection it names (not in Stack.socks until accepted)
	done    chan channel.Msg // the reply, for a caller that waits (capacity 1); nil for receives
}

// deliver hands the reply to whoever waits; the one who gave up leaves it.
func (o *op) deliver(m channel.Msg) {
	if o.done != nil {
		select {
		case o.done <- m:
		default:
		}
	}
}

// New returns a Stack over port, a channel to the SYSCALL server, with the
// application's pool p. The Stack owns port: it closes it when a new
// generation replaces it ([Stack.PeerRestarted]) and on Close. Tests hand
// it one end of channel.NewLocal.
func New(port channel.Port, p *pool.Pool) *Stack {
	s := newStack(p)
	s.port, s.closePort, s.gen = port, func() { port.Close() }, 1
	s.stats.Generation = 1
	go s.dispatch()
	return s
}

func newStack(p *pool.Pool) *Stack {
	return &Stack{
		pool:     p,
		queueCap: max(recvDepth, min(maxQueue, p.Len()/4)),
		reserve:  min(max(minReserve, p.Len()/reserveShare), p.Len()-1),
		switches: make(chan peerPort, 4),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
		ops:      map[uint64]*op{},
		socks:    map[uint64]*sock{},
	}
}

// Open makes the Stack of a wired application from what
// wiring.JoinInherited returned: its pool "<name>.io" and its channel to
// "syscall" (which may come later, if syscall is not up yet: requests wait
// for it, within their deadlines). The Stack takes over conn's receiving
// side to watch for new generations of syscall (other announcements are
// closed and logged) and closes conn on Close; the application may still
// Send on it (wiring.TypeUp) until then.
func Open(conn *wiring.Conn, setup *wiring.Setup) (*Stack, error) {
	p := setup.Pools[setup.Name+PoolSuffix]
	if p == nil {
		return nil, fmt.Errorf("socket: %s has no pool %q", setup.Name, setup.Name+PoolSuffix)
	}
	s := newStack(p)
	s.conn = conn
	for _, peer := range setup.Peers {
		if peer.Name == PeerName && peer.Generation > s.gen {
			if s.closePort != nil {
				s.closePort()
			}
			s.port, s.gen, s.closePort = peer.Port, peer.Generation, s.releaser(peer)
		}
	}
	s.stats.Generation = s.gen
	w, err := wiring.Watch(conn)
	if err != nil {
		if s.closePort != nil {
			s.closePort()
		}
		return nil, err
	}
	s.watcher, s.watchDone = w, make(chan struct{})
	go s.forward(w)
	go s.dispatch()
	return s, nil
}

// forward passes new generations of syscall to the dispatcher.
func (s *Stack) forward(w *wiring.Watcher) {
	defer close(s.watchDone)
	for p := range w.C {
		if p.Name != PeerName {
			log.Printf("socket: ignoring a channel to %s", p.Name)
			p.Close()
			continue
		}
		select {
		case s.switches <- peerPort{port: p.Port, gen: p.Generation, close: s.releaser(p)}:
			s.wakeDispatcher()
		case <-s.done:
			p.Close()
		}
	}
}

// releaser closes a peer generation and tells init that its pools are no
// longer mapped here (the library never holds references into them).
func (s *Stack) releaser(p *wiring.Peer) func() {
	return func() { p.Retire(s.conn.Release) }
}

// PeerRestarted switches the Stack to port, a channel to a new generation
// of the SYSCALL server, and restores every socket on it (see the package
// doc). Open does this by itself; it is for Stacks made with New. The Stack
// owns port from now on.
func (s *Stack) PeerRestarted(port channel.Port) {
	select {
	case s.switches <- peerPort{port: port, close: func() { port.Close() }}:
		s.wakeDispatcher()
	case <-s.done:
		port.Close()
	}
}

// waker is a channel whose waiting receiver another goroutine can wake
// (channel.Endpoint.Wake).
type waker interface{ Wake() error }

// wakeDispatcher wakes the dispatcher from its wait on the current
// channel, to look at s.switches and s.done. A channel that cannot be
// woken is waited on for pollEvery at most.
func (s *Stack) wakeDispatcher() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wakeLocked()
}

// wakeLocked is wakeDispatcher with s.mu held.
func (s *Stack) wakeLocked() {
	if w, ok := s.port.(waker); ok {
		w.Wake()
	}
}

// Close closes every socket (their blocked operations fail with
// net.ErrClosed), stops the dispatcher and releases the channel. Buffers
// still lent to the server are not waited for.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	for _, c := range s.sortedSocks() {
		s.closeSockLocked(c)
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	s.wakeDispatcher()
	if s.conn != nil {
		s.conn.Close() // ends the watcher
	}
	<-s.exited
	if s.watcher != nil {
		s.watcher.Close()
		<-s.watchDone
	}
	for {
		select {
		case p := <-s.switches:
			p.close()
			continue
		default:
		}
		break
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closePort != nil {
		s.closePort()
	}
	s.port, s.closePort = nil, nil
	return nil
}

// Stats returns the counters so far.
func (s *Stack) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Sockets, st.Pending = len(s.socks), len(s.ops)
	return st
}

// dispatch is the dispatcher goroutine: it receives the replies and
// switches generations.
func (s *Stack) dispatch() {
	defer close(s.exited)
	in := make([]channel.Msg, batch)
	for {
		select {
		case <-s.done:
			return
		case p := <-s.switches:
			s.adopt(p)
			continue
		default:
		}
		s.mu.Lock()
		port, backlog := s.port, len(s.out) > 0
		s.mu.Unlock()
		if port == nil { // no syscall yet
			select {
			case <-s.done:
				return
			case p := <-s.switches:
				s.adopt(p)
			}
			continue
		}
		// Messages come with a wake-up, and so do new generations and
		// Close (wakeDispatcher); room in the channel for a backlog does
		// not, so with one it looks again within pollEvery.
		wait := pollEvery
		if _, ok := port.(waker); ok && !backlog {
			wait = idleWait
		}
		if err := port.Wait(wait); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// A broken channel: its successor will be announced.
			select {
			case <-s.done:
				return
			case p := <-s.switches:
				s.adopt(p)
			case <-time.After(pollEvery):
			}
			continue
		}
		for {
			n := port.Recv(in)
			if n == 0 {
				break
			}
			s.mu.Lock()
			for _, m := range in[:n] {
				s.replyLocked(m)
			}
			s.flushLocked()
			s.mu.Unlock()
		}
		s.mu.Lock()
		s.flushLocked()
		s.mu.Unlock()
	}
}

// submitLocked records o under a fresh id and sends it, or parks it while
// its socket is being restored. s.mu must be held.
func (s *Stack) submitLocked(o *op) {
	if o.sock != nil && o.sock.restoring && !o.restore {
		o.sock.parked = append(o.sock.parked, o)
		return
	}
	if c := o.sock; c != nil && c.network == ops.TCP && ops.OpOf(o.msg) == ops.OpRecvFrom {
		// What it has received by now, reissued or not.
		o.msg.Flags |= ops.FlagOffset
		o.msg.Arg[1] = c.recvOff
	}
	s.nextID++
	o.msg.ID = s.nextID
	s.ops[o.msg.ID] = o
	s.out = append(s.out, o.msg)
	s.flushLocked()
	if len(s.out) > 0 {
		// The channel is full and the dispatcher may be in a long
		// wait it chose with no backlog: it must look again soon.
		s.wakeLocked()
	}
}

// flushLocked sends what fits of the queued requests. s.mu must be held: it
// makes this goroutine the channel's only sender.
func (s *Stack) flushLocked() {
	if s.port != nil {
		s.out, _ = channel.Flush(s.port, s.out)
	}
}

// replyLocked matches a reply to its request and completes it. s.mu must be
// held.
func (s *Stack) replyLocked(m channel.Msg) {
	o, ok := s.ops[m.ID]
	if !ok {
		s.stats.Stale++ // never ours to use, not even its Ref
		return
	}
	delete(s.ops, m.ID)
	s.standingDoneLocked(o)
	c := o.sock
	ok = ops.StatusOf(m) == ops.StatusOK
	switch ops.OpOf(o.msg) {
	case ops.OpRecvFrom:
		if c.network == ops.TCP {
			s.streamReceivedLocked(o, m)
		} else {
			s.receivedLocked(o, m)
		}
		return
	case ops.OpAccept:
		s.acceptedLocked(o, m)
		return
	case ops.OpListen:
		c.listening = c.listening || ok
	case ops.OpSendTo:
		s.freeSendLocked(o.msg.Ref)
		if c.network == ops.TCP {
			s.connFailedLocked(c, ops.StatusOf(m))
		} else if ok && !c.bound {
			c.local, c.bound = ops.GetAddr(m, ops.AtArg0), true
		}
	case ops.OpOpen:
		c.opened = c.opened || ok
	case ops.OpBind:
		if ok {
			c.local, c.bound = ops.GetAddr(m, ops.AtArg0), true
		}
	case ops.OpConnect:
		if ok {
			c.remote, c.connected = ops.GetAddr(o.msg, ops.AtArg1), true
			c.local, c.bound = ops.GetAddr(m, ops.AtArg0), true
		}
	case ops.OpClose:
		delete(s.socks, c.id)
	}
	if o.restore {
		s.restoreNextLocked(o, m)
		return
	}
	o.deliver(m)
}

// receivedLocked queues a completed receive and posts another. s.mu must be
// held.
func (s *Stack) receivedLocked(o *op, m channel.Msg) {
	c, ref := o.sock, o.msg.Ref
	c.posted--
	if c.closed || c.broken != nil {
		s.freeLocked(ref)
		return
	}
	switch {
	case ops.StatusOf(m) == ops.StatusOK && m.Ref.Pool == ref.Pool && m.Ref.Off == ref.Off:
		ref.Len = min(m.Ref.Len, ref.Len) // a short buffer truncated it (FlagTruncated)
		c.rq = append(c.rq, datagram{ref: ref, src: ops.GetAddr(m, ops.AtArg0)})
		c.signalLocked()
	case ops.StatusOf(m) == ops.StatusRefused || ops.StatusOf(m) == ops.StatusNoPort:
		s.freeLocked(ref)
		c.rq = append(c.rq, datagram{err: statusErr("recvfrom", ops.StatusOf(m))})
		c.signalLocked()
	case ops.StatusOf(m) == ops.StatusOK, ops.StatusOf(m) == ops.StatusError, ops.StatusOf(m) == ops.StatusNoRoute:
		s.freeLocked(ref) // a bad Ref, or a passing failure: post again
	default: // the server has no such socket any more
		s.freeLocked(ref)
		c.broken = fmt.Errorf("%w: %s", ErrLost, ops.StatusOf(m).Text())
		c.signalLocked()
		return
	}
	s.topUpLocked(c)
}

// topUpLocked keeps receives posted on c: on a UDP socket, recvDepth of
// them as long as its queue has room and buffers are to be had
// (receiveBufLocked); on a TCP connection, see topUpStreamLocked; on a
// listener, accepts. s.mu must be held.
func (s *Stack) topUpLocked(c *sock) {
	if !c.live || c.closed || c.broken != nil || s.closed {
		return
	}
	if c.network == ops.TCP {
		switch {
		case c.listening:
			s.topUpAcceptsLocked(c)
		case c.eof || c.rdShut || c.connErr != ops.StatusOK:
		default:
			s.topUpStreamLocked(c)
		}
		return
	}
	for c.posted < recvDepth && len(c.rq)+c.posted < s.queueCap {
		ref, ok := s.receiveBufLocked(c)
		if !ok {
			return
		}
		c.posted++
		s.submitLocked(&op{sock: c, msg: channel.Msg{Op: uint16(ops.OpRecvFrom), Arg: [4]uint64{c.id}, Ref: ref}})
	}
}

// receiveBufLocked takes a buffer for a receive on c if receiveRoomLocked
// allows it. When it says no, c waits in s.hungry, and the next buffer
// freed (or writer done waiting) tops it up again. s.mu must be held.
func (s *Stack) receiveBufLocked(c *sock) (pool.Ref, bool) {
	if s.receiveRoomLocked() {
		if ref, ok := s.pool.Alloc(); ok {
			return ref, true
		}
	}
	if !c.hungry {
		c.hungry = true
		s.hungry = append(s.hungry, c)
	}
	return pool.Ref{}, false
}

// The pool is shared by the two directions of every socket, and each
// direction can wait on the other: a send is answered only once the peer's
// window takes it, and the peer may be waiting for this application to
// receive. So each keeps a reserve of the other's (s.reserve buffers):
//
//   - a receive gets a buffer if that still leaves the reserve free, and
//     one more for each writer waiting (a buffer freed while a writer waits
//     is the writer's) — or if receives hold fewer than the reserve;
//   - a send gets a buffer only while sends hold fewer than all but the
//     reserve (sendRoomLocked);
//   - standing receives on idle connections (standingBufLocked) wait as long as
//     sends may, so they count with the sends against the reserve, and
//     not as receives in it.
//
// Received data that is not read never keeps a Write from going on, and
// sends that wait for a peer never keep the receives it waits for from
// being posted: with only the first rule, twenty connections echoing to
// each other through one small pool filled it with sends and stalled.

// receiveRoomLocked says whether a receive may take a buffer. s.mu must be
// held.
func (s *Stack) receiveRoomLocked() bool {
	free := s.pool.Available()
	receiving := s.pool.Len() - free - s.waitingLocked() // standing receives are not the reserve's
	return free > 0 && (free > s.reserve+s.writers || receiving < s.reserve)
}

// waitingLocked is how many buffers may wait for as long as the peer
// likes: those of unanswered sends and of standing receives. s.mu must be
// held.
func (s *Stack) waitingLocked() int { return s.sending + s.standing }

// sendRoomLocked says whether a send may take a buffer: sends and
// standing receives (waitingLocked) leave the reserve to the receives of
// readable connections. s.mu must be held.
func (s *Stack) sendRoomLocked() bool {
	return s.pool.Available() > 0 && s.waitingLocked() < s.pool.Len()-s.reserve
}

// allocSendLocked takes a buffer for a send if sendRoomLocked allows it.
// s.mu must be held.
func (s *Stack) allocSendLocked() (pool.Ref, bool) {
	if !s.sendRoomLocked() {
		return pool.Ref{}, false
	}
	ref, ok := s.pool.Alloc()
	if ok {
		s.sending++
	}
	return ref, ok
}

// freeSendLocked returns a send's buffer. s.mu must be held.
func (s *Stack) freeSendLocked(ref pool.Ref) {
	s.sending--
	s.freeLocked(ref)
}

// freeLocked returns a buffer to the pool and wakes whoever waits for one.
// s.mu must be held.
func (s *Stack) freeLocked(ref pool.Ref) {
	if err := s.pool.Free(ref); err != nil {
		log.Printf("socket: %v", err)
		return
	}
	if s.bufFreed != nil {
		close(s.bufFreed)
		s.bufFreed = nil
	}
	s.unstarveLocked()
}

// unstarveLocked tops up the sockets that went without a buffer, oldest
// first, while buffers are to be had. A socket that goes without again
// waits at the back, and no buffer is left then: the loop ends. Each
// freed buffer costs a look at the sockets waiting for one, never a walk
// over every socket (with 400 keep-alive connections on a small pool that
// walk, once per buffer freed, was a third of httpd's CPU). s.mu must be
// held.
func (s *Stack) unstarveLocked() {
	for len(s.hungry) > 0 && s.receiveRoomLocked() {
		c := s.hungry[0]
		s.hungry[0] = nil
		s.hungry = s.hungry[1:]
		c.hungry = false
		if s.socks[c.id] == c {
			s.topUpLocked(c)
		}
	}
}

// signalLocked wakes c's readers. s.mu must be held.
func (c *sock) signalLocked() {
	if c.notify != nil {
		close(c.notify)
		c.notify = nil
	}
}

// adopt switches to a new generation of the peer and restores the sockets
// on it (the package doc's steps 3 to 5).
func (s *Stack) adopt(p peerPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.gen == 0 {
		p.gen = s.gen + 1
	}
	if s.closed || (s.port != nil && p.gen <= s.gen) {
		p.close()
		return
	}
	if s.closePort != nil {
		s.closePort()
		s.stats.Restarts++
	}
	s.port, s.closePort, s.gen = p.port, p.close, p.gen
	s.stats.Generation = p.gen
	s.out = s.out[:0]

	// Take back every unanswered request, oldest first.
	pending := slices.SortedFunc(maps.Values(s.ops), func(a, b *op) int { return cmp.Compare(a.msg.ID, b.msg.ID) })
	clear(s.ops)
	taken := map[*sock][]*op{}
	var reissue []*op
	for _, o := range pending {
		c := o.sock
		switch {
		case o.restore: // the chain starts again
		case c.closed:
			s.dropLocked(o, ops.StatusClosed)
		case c.opened:
			taken[c] = append(taken[c], o)
		default: // its OpOpen: the socket is not there to restore yet
			reissue = append(reissue, o)
		}
	}
	for _, c := range s.sortedSocks() {
		switch {
		case c.closed:
			for _, o := range c.parked {
				s.dropLocked(o, ops.StatusClosed)
			}
			c.parked, c.restoring = nil, false
			delete(s.socks, c.id)
			if c.closeSent && c.opened {
				// Its close had no reply: the transport may still have it.
				s.submitLocked(&op{sock: c, msg: ops.OpAdopt.Msg(c.id, uint64(c.network))})
				s.submitLocked(&op{sock: c, msg: ops.OpClose.Msg(c.id)})
			}
		case c.opened:
			c.parked = append(taken[c], c.parked...)
			c.restoring, c.attempts = true, 0
			s.submitLocked(&op{sock: c, restore: true, msg: ops.OpAdopt.Msg(c.id, uint64(c.network))})
		}
	}
	for _, o := range reissue {
		s.submitLocked(o)
	}
}

// restoreNextLocked takes a socket's restore chain one step further after
// the reply m to step o. s.mu must be held.
func (s *Stack) restoreNextLocked(o *op, m channel.Msg) {
	c := o.sock
	if ops.StatusOf(m) != ops.StatusOK {
		if ops.StatusOf(m) == ops.StatusError && c.attempts < restoreRetries && !c.closed {
			c.attempts++
			gen, msg := s.gen, o.msg
			time.AfterFunc(restoreRetryEvery, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if !s.closed && s.gen == gen && c.restoring {
					s.submitLocked(&op{sock: c, restore: true, msg: msg})
				}
			})
			return
		}
		if c.network == ops.TCP && c.connected {
			// The transport lost the connection meanwhile (a restart of
			// tcp): as if it had been reset.
			s.resetLocked(c, c.parked)
			return
		}
		s.lostLocked(c, false, ops.StatusOf(m))
		return
	}
	// Adopted: send what waited, in order.
	s.stats.Restored++
	c.restoring = false
	parked := c.parked
	c.parked = nil
	for _, p := range parked {
		switch ops.OpOf(p.msg) {
		case ops.OpSendTo:
			s.stats.Resent++
		case ops.OpRecvFrom:
			s.stats.Reposted++
		}
		s.submitLocked(p)
	}
	s.topUpLocked(c)
}

// lostLocked gives up on restoring c: its operations fail with ErrLost.
// opened says the new server has the socket open. s.mu must be held.
func (s *Stack) lostLocked(c *sock, opened bool, status ops.Status) {
	s.stats.Lost++
	c.restoring = false
	c.broken = fmt.Errorf("%w: %s", ErrLost, status.Text())
	for _, o := range c.parked {
		s.dropLocked(o, ops.StatusNoSocket)
	}
	c.parked = nil
	for _, d := range c.rq {
		if d.err == nil {
			s.freeLocked(d.ref)
		}
	}
	c.rq = nil
	c.signalLocked()
	if opened && !c.closeSent {
		c.closeSent = true
		s.submitLocked(&op{sock: c, msg: ops.OpClose.Msg(c.id)})
	}
}

// dropLocked completes o without the server: its buffer comes back, its
// waiter gets status (a close gets StatusOK). s.mu must be held.
func (s *Stack) dropLocked(o *op, status ops.Status) {
	s.standingDoneLocked(o)
	switch ops.OpOf(o.msg) {
	case ops.OpRecvFrom:
		if o.msg.Ref.IsZero() { // a readiness receive
			o.sock.probing = false
			break
		}
		o.sock.posted--
		s.freeLocked(o.msg.Ref)
	case ops.OpAccept:
		o.sock.posted--
	case ops.OpSendTo:
		s.freeSendLocked(o.msg.Ref)
	case ops.OpClose:
		status = ops.StatusOK
	}
	r := channel.Msg{ID: o.msg.ID, Op: o.msg.Op}
	ops.SetStatus(&r, status)
	o.deliver(r)
}

// sortedSocks lists the sockets by id. s.mu must be held.
func (s *Stack) sortedSocks() []*sock {
	return slices.SortedFunc(maps.Values(s.socks), func(a, b *sock) int { return cmp.Compare(a.id, b.id) })
}
