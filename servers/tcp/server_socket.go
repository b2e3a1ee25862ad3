package tcp

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"slices"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
)

// The socket side of the process: SYSCALL's stream-socket operations
// (servers/ops) on sockets it names, each over a Listener or an Endpoint of
// the Table. A request that cannot be answered yet (OpAccept, OpConnect,
// OpRecvFrom, an OpSendTo with the send buffer full) is kept on its socket
// and re-examined whenever something may have changed (server.serve).
//
// Receives come in three kinds (servers/ops): a data receive waits for
// bytes; one with ops.FlagNoWait is answered in the same poll, "would
// block" (Ref.Len 0, no FlagEOF) if nothing is queued; a readiness receive
// (zero Ref) waits until Endpoint.Readable and reads nothing. They share
// one queue per socket, answered strictly in order.

const (
	defaultBacklog = 128
	maxBacklog     = 4096
	// maxPosted bounds the requests waiting on one socket.
	maxPosted = 1024
)

// sock is one of SYSCALL's sockets: opened (neither), listening (l) or
// connected or connecting (e).
type sock struct {
	id      uint64
	local   ops.Addr // bound or listened on; port 0: not bound
	l       *Listener
	backlog int
	// e is the connection. Its owner (endpoint.go) is the rest of the
	// socket's state, kept with the connection across a restart of tcp:
	// the listener it was accepted on (so that a reissued OpAccept is
	// answered with it again) and its stream offsets (servers/ops).
	e *Endpoint

	// Requests waiting, oldest first. connect is the OpConnect in
	// progress; e is nil until our address is known.
	connect *channel.Msg
	// source is the address an active open over IPv6 goes from, as IP
	// chose it (OpSource); sourceKey names the question while it is
	// asked (0: none), in server.sources.
	source    netip.Addr
	sourceKey uint64
	accepts   []channel.Msg
	recvs     []postedIO
	sends     []postedIO

	queued bool // on server.ready
}

// postedIO is an OpRecvFrom or OpSendTo with its syscall.io bytes (none
// for a readiness receive).
type postedIO struct {
	m     channel.Msg
	buf   []byte
	taken int // of an OpSendTo: bytes already in the send buffer (buf is the rest)
}

// readiness reports whether p is a readiness receive: an OpRecvFrom with no
// buffer, answered when the connection is readable.
func (p postedIO) readiness() bool { return ops.OpOf(p.m) == ops.OpRecvFrom && p.m.Ref.IsZero() }

func (so *sock) posted() int {
	n := len(so.accepts) + len(so.recvs) + len(so.sends)
	if so.connect != nil {
		n++
	}
	return n
}

// statusOf maps the Table's errors to ops statuses.
func statusOf(err error) ops.Status {
	switch {
	case err == nil:
		return ops.StatusOK
	case errors.Is(err, ErrRefused):
		return ops.StatusRefused
	case errors.Is(err, ErrReset), errors.Is(err, ErrAborted):
		return ops.StatusReset
	case errors.Is(err, ErrTimedOut):
		return ops.StatusTimedOut
	case errors.Is(err, ErrUnreachable):
		return ops.StatusNoRoute
	case errors.Is(err, ErrInUse), errors.Is(err, ErrNoPorts):
		return ops.StatusInUse
	case errors.Is(err, ErrClosed):
		return ops.StatusClosed
	case errors.Is(err, ErrNotConnected), errors.Is(err, ErrInvalid):
		return ops.StatusInvalid
	case errors.Is(err, ErrTooManyConns), errors.Is(err, ErrNoBuffers):
		return ops.StatusNoBuffers
	}
	return ops.StatusError
}

// unknownSocket is the answer to op on a socket tcp does not know: after a
// restart of tcp, the connections of its predecessor are gone (the package
// restart protocol in server.go).
func unknownSocket(op ops.Op) ops.Status {
	switch op {
	case ops.OpConnect, ops.OpSendTo, ops.OpRecvFrom, ops.OpShutdown, ops.OpSetOption:
		return ops.StatusReset
	case ops.OpClose:
		return ops.StatusOK
	}
	return ops.StatusNoSocket
}

// socket is the socket m names, or nil once m is answered: an unknown
// socket (after a restart of tcp the connections of its predecessor are
// gone: the restart protocol in server.go), or, for a request that would
// wait on it, one with too many waiting already.
func (s *server) socket(m channel.Msg) *sock {
	so := s.socks[m.Arg[0]]
	if so == nil {
		r := m
		ops.SetStatus(&r, unknownSocket(ops.OpOf(m)))
		if ops.OpOf(m) == ops.OpRecvFrom {
			r.Ref.Len = 0
		}
		s.h.Reply(r)
		return nil
	}
	if so.posted() >= maxPosted && (ops.OpOf(m) == ops.OpAccept || ops.OpOf(m) == ops.OpSendTo || ops.OpOf(m) == ops.OpRecvFrom) {
		s.reply(m, ops.StatusError)
		return nil
	}
	return so
}

// reply answers m with status.
func (s *server) reply(m channel.Msg, status ops.Status) {
	ops.SetStatus(&m, status)
	s.h.Reply(m)
}

// replyStored answers m with status once what the journal was given so
// far is in the store: the answer to a request that changed a listener's
// record (transport.Host.ReplyStored).
func (s *server) replyStored(m channel.Msg, status ops.Status) {
	ops.SetStatus(&m, status)
	s.h.ReplyStored(m)
}

// Open makes socket Arg[0]; open already, it is a resubmission.
func (s *server) Open(m channel.Msg) {
	id := m.Arg[0]
	switch {
	case ops.Network(m.Arg[1]) != ops.TCP:
		s.reply(m, ops.StatusInvalid)
		return
	case s.socks[id] == nil:
		s.socks[id] = &sock{id: id}
	}
	s.reply(m, ops.StatusOK)
}

func (s *server) Bind(m channel.Msg) {
	if so := s.socket(m); so != nil {
		st := s.bind(so, ops.GetAddr(m, ops.AtArg1))
		ops.PutAddr(&m, ops.AtArg0, so.local)
		s.reply(m, st)
	}
}

func (s *server) Listen(m channel.Msg) {
	if so := s.socket(m); so != nil {
		st := s.listen(so, int(m.Arg[1]))
		ops.PutAddr(&m, ops.AtArg0, so.local)
		s.replyStored(m, st) // a listener is told it listens once its record is in the store
	}
}

// Accept posts m on a listener, for the connection to come (named Arg[1]).
func (s *server) Accept(m channel.Msg) {
	so := s.socket(m)
	switch {
	case so == nil:
	case so.l == nil:
		s.reply(m, ops.StatusInvalid)
	case s.socks[m.Arg[1]] != nil && s.socks[m.Arg[1]].e != nil && s.socks[m.Arg[1]].e.owner.from == so.id:
		// Accepted already, the reply lost with a SYSCALL generation: the
		// same connection again.
		s.replyAccepted(m, s.socks[m.Arg[1]].e)
	case s.socks[m.Arg[1]] != nil:
		s.reply(m, ops.StatusInUse) // the id of the connection to be is taken
	default:
		so.accepts = append(so.accepts, m)
		s.mark(so)
	}
}

// Connect posts m until the connection is established or fails.
func (s *server) Connect(m channel.Msg) {
	so := s.socket(m)
	remote := ops.GetAddr(m, ops.AtArg1)
	switch {
	case so == nil:
	case so.e != nil && so.connect == nil && remote.AddrPort() == so.e.RemoteAddr():
		// Connected or connecting to remote already: a reissue
		// (servers/ops), answered as the first was.
		so.connect = &m
		s.mark(so)
	case so.l != nil || so.e != nil || so.connect != nil:
		s.reply(m, ops.StatusInvalid) // listening, connected or connecting
	case remote.IP().IsUnspecified() || remote.Port() == 0:
		s.reply(m, ops.StatusInvalid)
	case !so.local.IP().IsUnspecified() && so.local.Is4() != remote.Is4():
		s.reply(m, ops.StatusAFNoSupport) // bound to an address of the other family
	default:
		// A question about the source asked before (for the same connect,
		// reissued by a new SYSCALL generation) is still worth its answer.
		so.source = netip.Addr{}
		if dst, ok := s.sources.Asked(so.sourceKey); !ok || dst != remote.IP() {
			so.sourceKey = 0
		}
		so.connect = &m
		s.mark(so)
	}
}

// SendTo posts m until the send buffer took all of its bytes.
func (s *server) SendTo(m channel.Msg) { s.postIO(m) }

// RecvFrom posts m until bytes, the end of the stream or readiness.
func (s *server) RecvFrom(m channel.Msg) { s.postIO(m) }

// postIO posts an OpSendTo or OpRecvFrom on its connection.
func (s *server) postIO(m channel.Msg) {
	so := s.socket(m)
	if so == nil {
		return
	}
	if ops.OpOf(m) == ops.OpRecvFrom && m.Flags&ops.FlagOffset != 0 && !s.consume(so, m.Arg[1]) {
		log.Printf("socket %d: a receive at stream offset %d, beyond the %d bytes received", so.id, m.Arg[1], receivedTo(so))
		r := m
		ops.SetStatus(&r, ops.StatusInvalid)
		r.Ref.Len = 0
		s.h.Reply(r)
		return
	}
	p := postedIO{m: m}
	ok := p.readiness() // needs no buffer
	if !ok {
		p.buf, ok = s.h.SyscallBytes(m.Ref)
	}
	r := m
	switch {
	case !ok:
		ops.SetStatus(&r, ops.StatusInvalid)
	case so.e == nil && so.connect == nil:
		ops.SetStatus(&r, ops.StatusInvalid) // not connected
	case ops.OpOf(m) == ops.OpSendTo:
		so.sends = append(so.sends, p)
		s.mark(so)
		return
	case len(p.buf) == 0 && !p.readiness():
		ops.SetStatus(&r, ops.StatusInvalid)
	default:
		so.recvs = append(so.recvs, p)
		s.mark(so)
		return
	}
	if ops.OpOf(m) == ops.OpRecvFrom {
		r.Ref.Len = 0
	}
	s.h.Reply(r)
}

// receivedTo is the stream offset of the end of what so's connection
// received and holds.
func receivedTo(so *sock) uint64 {
	if so.e == nil {
		return 0
	}
	return so.e.owner.rbase + uint64(so.e.Unconsumed())
}

// consume drops the received bytes below stream offset off, which a
// receive says the requester has; it reports false if off is beyond what
// was received.
func (s *server) consume(so *sock, off uint64) bool {
	if so.e == nil {
		return off == 0
	}
	o := &so.e.owner
	if off <= o.rbase {
		return true // nothing new proven
	}
	if off-o.rbase > uint64(so.e.Unconsumed()) {
		return false
	}
	so.e.Consume(int(off - o.rbase))
	o.rbase = off
	return true
}

// Shutdown sends a FIN; held sends now fail.
func (s *server) Shutdown(m channel.Msg) {
	so := s.socket(m)
	switch {
	case so == nil:
	case so.e == nil:
		s.reply(m, ops.StatusInvalid)
	default:
		st := statusOf(so.e.CloseWrite())
		s.mark(so)
		s.reply(m, st)
	}
}

// Close closes a socket; its posted requests are answered first. A
// connection with a positive linger (ops.OptLinger) has its answer held
// until it is drained or the linger has passed (serveLingering).
func (s *server) Close(m channel.Msg) {
	if so := s.socket(m); so != nil {
		e, listener := so.e, so.l != nil
		s.close(so)
		switch {
		case e != nil && e.Linger() > 0 && !e.Drained():
			until := s.clock.Now().Add(time.Duration(e.Linger()) * time.Second)
			s.lingering = append(s.lingering, lingeringClose{m: m, e: e, until: until})
		case listener:
			s.replyStored(m, ops.StatusOK) // its record forgotten in the store
		default:
			s.reply(m, ops.StatusOK)
		}
	}
}

// lingeringClose is an OpClose whose answer waits for its connection to
// drain (ops.OptLinger).
type lingeringClose struct {
	m     channel.Msg
	e     *Endpoint
	until time.Time
}

// serveLingering answers the lingering closes whose connections have
// drained or whose linger has passed, and returns when the next one's
// ends (zero: none is left).
func (s *server) serveLingering() time.Time {
	if len(s.lingering) == 0 {
		return time.Time{}
	}
	now := s.clock.Now()
	var next time.Time
	keep := s.lingering[:0]
	for _, l := range s.lingering {
		if l.e.Drained() || !now.Before(l.until) {
			s.reply(l.m, ops.StatusOK)
			continue
		}
		keep = append(keep, l)
		next = earliest(next, l.until)
	}
	clear(s.lingering[len(keep):])
	s.lingering = keep
	return next
}

// The bounds of ops.OptLinger and of the buffer sizes: a longer linger is
// cut to maxLinger, an hour (a close that waits longer waits in vain);
// buffers are cut to MinBuffer and the Table's buffer sizes by the
// Endpoint.
const (
	maxLinger    = 3600
	maxBufferArg = 1 << 31
)

// SetOption sets a socket option of a connection (ops.Option), at once.
func (s *server) SetOption(m channel.Msg) {
	so := s.socket(m)
	switch {
	case so == nil:
	case so.e == nil:
		s.reply(m, ops.StatusInvalid) // not a connection (yet)
	default:
		s.reply(m, setOption(so.e, ops.Option(m.Arg[1]), m.Arg[2]))
	}
}

// setOption sets option o of e to v, or answers StatusInvalid for a value
// outside o's range (servers/ops) or an unknown option.
func setOption(e *Endpoint, o ops.Option, v uint64) ops.Status {
	on, idle, interval, count := e.KeepAlive()
	switch o {
	case ops.OptNoDelay, ops.OptKeepAlive:
		if v > 1 {
			return ops.StatusInvalid
		}
		if o == ops.OptNoDelay {
			e.SetNoDelay(v == 1)
		} else {
			e.SetKeepAlive(v == 1, idle, interval, count)
		}
	case ops.OptKeepAliveIdle, ops.OptKeepAliveInterval:
		d := time.Duration(v)
		if v == 0 || v > uint64(MaxKeepAliveIdle) {
			return ops.StatusInvalid
		}
		if o == ops.OptKeepAliveIdle {
			idle = d
		} else {
			interval = d
		}
		e.SetKeepAlive(on, idle, interval, count)
	case ops.OptKeepAliveCount:
		if v == 0 || v > MaxKeepAliveCount {
			return ops.StatusInvalid
		}
		e.SetKeepAlive(on, idle, interval, int(v))
	case ops.OptLinger:
		sec := int64(v)
		if sec < 0 {
			sec = NoLinger
		}
		e.SetLinger(int(min(sec, maxLinger)))
	case ops.OptSendBuffer, ops.OptRecvBuffer:
		if v == 0 || v > maxBufferArg {
			return ops.StatusInvalid
		}
		if o == ops.OptSendBuffer {
			e.SetSendBuffer(int(v))
		} else {
			e.SetRecvBuffer(int(v))
		}
	default:
		return ops.StatusInvalid
	}
	return ops.StatusOK
}

// Adopt answers whether socket Arg[0] exists: a new SYSCALL generation
// takes it over.
func (s *server) Adopt(m channel.Msg) {
	st := ops.StatusNoSocket
	if s.socks[m.Arg[0]] != nil {
		st = ops.StatusOK
	}
	s.reply(m, st)
}

// CloseRange closes every socket with an id in [Arg[0], Arg[1]), in the
// order of their ids.
func (s *server) CloseRange(m channel.Msg) {
	s.closeAll(func(id uint64) bool { return id >= m.Arg[0] && id < m.Arg[1] })
	s.replyStored(m, ops.StatusOK)
}

// Reset closes every socket, in the order of their ids.
func (s *server) Reset(m channel.Msg) {
	s.closeAll(func(uint64) bool { return true })
	s.replyStored(m, ops.StatusOK)
}

// closeAll closes the sockets whose ids match, in the order of their ids.
func (s *server) closeAll(match func(id uint64) bool) {
	socks := make([]*sock, 0, len(s.socks))
	for _, so := range s.socks {
		if match(so.id) {
			socks = append(socks, so)
		}
	}
	slices.SortFunc(socks, func(a, b *sock) int { return cmp.Compare(a.id, b.id) })
	for _, so := range socks {
		s.close(so)
	}
}

// bind records the local address; port 0 picks one at listen or connect.
func (s *server) bind(so *sock, a ops.Addr) ops.Status {
	ip := a.IP()
	switch {
	case !so.local.IsZero() && so.local == a:
		return ops.StatusOK // bound to a already: a reissue (servers/ops)
	case !so.local.IsZero() || so.l != nil || so.e != nil || so.connect != nil:
		return ops.StatusInvalid // bound already
	case !ip.IsUnspecified() && s.addr.IsValid() && ip != s.addr.Addr():
		return ops.StatusInvalid // not ours (IPv6: [::] only, as udp)
	}
	if p := a.Port(); p != 0 {
		if _, taken := s.ports[p]; taken {
			return ops.StatusInUse
		}
		s.ports[p] = so.id
	}
	so.local = a
	return ops.StatusOK
}

// listen makes so a listener on its bound address (or any, on an
// ephemeral port) and records it in the store.
func (s *server) listen(so *sock, backlog int) ops.Status {
	switch {
	case so.l != nil:
		return ops.StatusOK // listening already: a resubmission
	case so.e != nil || so.connect != nil:
		return ops.StatusInvalid
	}
	if backlog <= 0 {
		backlog = defaultBacklog
	}
	backlog = min(backlog, maxBacklog)
	ip := so.local.IP()
	if ip.IsUnspecified() && !ip.Is6() {
		ip = netip.IPv4Unspecified() // [::] stays: either takes both families
	}
	l, err := s.table.Listen(ip, so.local.Port(), backlog)
	if err != nil {
		return statusOf(err)
	}
	l.SetNotify(s.notifier(so))
	so.l, so.backlog = l, backlog
	so.local = ops.MakeAddr(ip, l.Port())
	s.ports[l.Port()] = so.id
	if s.journal != nil {
		s.journal.Save(ListenerRecord{ID: so.id, Local: so.local, Backlog: backlog})
	}
	return ops.StatusOK
}

// Restore listens again on what a previous generation recorded, before
// the process serves. A record whose port is taken is skipped, reported
// and forgotten.
func (s *server) Restore(rs []ListenerRecord) (restored int, errs []error) {
	for _, r := range rs {
		if s.socks[r.ID] != nil {
			errs = append(errs, fmt.Errorf("%w: socket %d listed twice", ErrBadRecord, r.ID))
			continue
		}
		ip := r.Local.IP()
		l, err := s.table.Listen(ip, r.Local.Port(), r.Backlog)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: socket %d on %v: %w", ErrBadRecord, r.ID, r.Local, err))
			if s.journal != nil {
				s.journal.Forget(r.ID)
			}
			continue
		}
		so := &sock{id: r.ID, local: r.Local, l: l, backlog: r.Backlog}
		l.SetNotify(s.notifier(so))
		s.socks[r.ID] = so
		s.ports[l.Port()] = r.ID
		restored++
	}
	n, err := s.restoreConns()
	if err != nil {
		errs = append(errs, err)
	}
	return restored + n, errs
}

// restoreConns adopts the connections the previous generation kept
// (keep.go), after the listeners their queues belong to, and gives each
// one a socket held its socket again.
func (s *server) restoreConns() (int, error) {
	mem := s.h.Kept(StateName)
	if mem == nil {
		return 0, nil // not kept: connections die with the process
	}
	owned, err := s.table.Keep(mem)
	if err != nil {
		return 0, fmt.Errorf("keeping connections: %w", err)
	}
	c := s.table.Counters()
	log.Printf("kept connections: %d adopted (%d held by sockets), %d lost", c.KeptConns, len(owned), c.KeptLost)
	n := 0
	for _, e := range owned {
		if s.socks[e.owner.sock] != nil {
			log.Printf("kept connections: two name socket %d; reset", e.owner.sock)
			e.Abort() // two records name one socket: neither is trusted more
			continue
		}
		so := &sock{id: e.owner.sock, local: ops.FromAddrPort(e.LocalAddr()), e: e}
		e.SetNotify(s.notifier(so))
		s.socks[so.id] = so
		n++
	}
	return n, nil
}

// close answers so's posted requests with StatusClosed, closes its
// listener or connection (an orderly close, which the Table finishes on
// its own) and forgets it.
func (s *server) close(so *sock) {
	// Sends posted before the close are the application's last bytes: they
	// go into the send buffer, past its limit if need be, and out before
	// the FIN.
	for so.e != nil && len(so.sends) > 0 {
		p := so.sends[0]
		so.sends = so.sends[1:]
		if !s.trimSend(so, &p) {
			so.e.Abort()
			s.reply(p.m, ops.StatusReset)
			break
		}
		n, err := so.e.WriteLingering(p.buf)
		so.e.owner.sent += uint64(n)
		r := p.m
		ops.SetStatus(&r, statusOf(err))
		ops.PutAddr(&r, ops.AtArg0, so.local)
		r.Arg[2] = uint64(p.taken + n)
		s.h.Reply(r)
	}
	s.fail(so, ops.StatusClosed)
	if so.l != nil {
		so.l.Close()
		if s.journal != nil {
			s.journal.Forget(so.id)
		}
	}
	if so.e != nil {
		so.e.SetNotify(nil)
		// The close proves every byte handed out received: only bytes
		// never handed out make it abortive.
		so.e.Consume(so.e.Unconsumed() - unlent(so.e))
		so.e.Close()
	}
	if p := so.local.Port(); p != 0 && s.ports[p] == so.id {
		delete(s.ports, p)
	}
	delete(s.socks, so.id)
}

// fail answers every request posted on so with status.
func (s *server) fail(so *sock, status ops.Status) {
	if so.connect != nil {
		r := *so.connect
		ops.SetStatus(&r, status)
		s.h.Reply(r)
		so.connect = nil
	}
	for _, m := range so.accepts {
		ops.SetStatus(&m, status)
		s.h.Reply(m)
	}
	for _, p := range so.recvs {
		r := p.m
		ops.SetStatus(&r, status)
		r.Ref.Len = 0
		s.h.Reply(r)
	}
	for _, p := range so.sends {
		r := p.m
		ops.SetStatus(&r, status)
		s.h.Reply(r)
	}
	so.accepts, so.recvs, so.sends = nil, nil, nil
}

// DropRequests forgets every posted request without a reply: their
// SYSCALL generation is gone. It returns how many there were. Received
// bytes handed out but not proven received are lent again (Rewind): their
// replies may have died with that generation.
func (s *server) DropRequests() int {
	n := len(s.lingering)
	clear(s.lingering)
	s.lingering = s.lingering[:0]
	for _, so := range s.socks {
		n += so.posted()
		so.connect, so.accepts, so.recvs, so.sends = nil, nil, nil, nil
		if so.e != nil {
			so.e.Rewind()
		}
	}
	return n
}

// DropPool answers StatusClosed the sends and receives whose buffers are
// in pool id: an application's, granted to us, about to be unmapped
// because the application restarted (transport.PoolDropper).
func (s *server) DropPool(id uint32) int {
	var n int
	drop := func(posted []postedIO) []postedIO {
		return slices.DeleteFunc(posted, func(p postedIO) bool {
			if p.m.Ref.IsZero() || p.m.Ref.Pool != id {
				return false
			}
			r := p.m
			ops.SetStatus(&r, ops.StatusClosed)
			if ops.OpOf(r) == ops.OpRecvFrom {
				r.Ref.Len = 0
			}
			s.h.Reply(r)
			n++
			return true
		})
	}
	for _, so := range s.socks {
		so.sends, so.recvs = drop(so.sends), drop(so.recvs)
	}
	return n
}

// trimSend drops from the head send p the bytes the send buffer took
// already (its stream offset, Arg[1], is below the connection's
// owner.sent): a send reissued after a restart whose first reply was lost.
// Trimmed bytes count as taken. It reports false if p starts beyond what
// was taken: bytes before it are missing, and sending p would put its
// bytes at the wrong place in the stream.
func (s *server) trimSend(so *sock, p *postedIO) bool {
	off := p.m.Arg[1] + uint64(p.taken)
	switch {
	case so.e == nil || p.m.Flags&ops.FlagOffset == 0 || off == so.e.owner.sent:
		return true
	case off > so.e.owner.sent:
		log.Printf("socket %d: a send at stream offset %d, beyond the %d bytes taken; the connection is reset", so.id, off, so.e.owner.sent)
		return false
	}
	n := int(min(so.e.owner.sent-off, uint64(len(p.buf))))
	p.buf = p.buf[n:]
	p.taken += n
	return true
}

// serve re-examines the sockets with posted requests while something may
// have changed.
func (s *server) serve() {
	for i := 0; s.dirty && i < 4; i++ {
		s.dirty = false
		ready := s.ready
		s.ready = s.spare[:0] // what serving marks goes in the other half
		for j, so := range ready {
			ready[j] = nil
			so.queued = false
			if s.socks[so.id] == so && so.posted() > 0 {
				s.serveSock(so)
			}
		}
		s.spare = ready[:0]
	}
}

// serveSock answers what it can of so's posted requests.
func (s *server) serveSock(so *sock) {
	if so.connect != nil {
		s.serveConnect(so)
	}
	for len(so.accepts) > 0 && so.l != nil {
		e, err := so.l.Accept()
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		m := so.accepts[0]
		so.accepts = so.accepts[1:]
		if err != nil {
			ops.SetStatus(&m, statusOf(err))
			s.h.Reply(m)
			continue
		}
		newID := m.Arg[1]
		if s.socks[newID] != nil { // taken since the request came
			log.Printf("socket %d: accepting on it, but it is taken; the connection is reset", newID)
			e.Abort()
			ops.SetStatus(&m, ops.StatusInUse)
			s.h.Reply(m)
			continue
		}
		nso := &sock{id: newID, local: ops.FromAddrPort(e.LocalAddr()), e: e}
		e.own(owner{sock: newID, from: so.id})
		e.SetNotify(s.notifier(nso))
		s.socks[newID] = nso
		s.replyAccepted(m, e)
	}
	if so.e == nil {
		return // sends and receives wait for the connect
	}
	// Receives, in the order posted: one that must wait holds up the rest.
	for len(so.recvs) > 0 {
		p := so.recvs[0]
		r := p.m
		r.Flags &^= ops.FlagNoWait | ops.FlagOffset
		if p.readiness() {
			if !so.e.Readable() {
				break
			}
			so.recvs = so.recvs[1:]
			s.h.Reply(r) // StatusOK, Ref.Len 0: readable
			continue
		}
		start := so.e.owner.rbase + uint64(so.e.rcvLent) // the stream offset of what it reads
		n, err := so.e.ReadKept(p.buf)
		if n > 0 {
			r.Flags |= ops.FlagOffset
			r.Arg[1] = start
		}
		if p.m.Flags&ops.FlagOffset == 0 { // consumed as handed out
			so.e.Consume(n)
			so.e.owner.rbase += uint64(n)
		}
		if errors.Is(err, ErrWouldBlock) {
			if p.m.Flags&ops.FlagNoWait == 0 {
				break
			}
			err = nil // "would block": StatusOK, Ref.Len 0, no FlagEOF
		}
		so.recvs = so.recvs[1:]
		r.Ref.Len = uint32(n)
		switch {
		case n > 0, err == nil:
		case errors.Is(err, io.EOF):
			r.Flags |= ops.FlagEOF
		default:
			ops.SetStatus(&r, statusOf(err))
		}
		s.h.Reply(r)
	}
	// A send is answered once the send buffer took all of it (or the
	// connection failed): what did not fit stays at the head, so that an
	// application may have several sends posted and their bytes still go
	// out in order.
	for len(so.sends) > 0 {
		p := &so.sends[0]
		if !s.trimSend(so, p) {
			so.e.Abort() // the sends, and what else waits, fail with it
			s.fail(so, ops.StatusReset)
			return
		}
		n, err := so.e.Write(p.buf)
		so.e.owner.sent += uint64(n)
		p.taken += n
		p.buf = p.buf[n:]
		if errors.Is(err, ErrWouldBlock) || err == nil && len(p.buf) > 0 {
			break
		}
		r := p.m
		ops.SetStatus(&r, statusOf(err))
		ops.PutAddr(&r, ops.AtArg0, so.local)
		r.Arg[2] = uint64(p.taken)
		so.sends = so.sends[1:]
		s.h.Reply(r)
	}
}

// replyAccepted answers OpAccept m with connection e.
func (s *server) replyAccepted(m channel.Msg, e *Endpoint) {
	ops.PutAddr(&m, ops.AtArg0, ops.FromAddrPort(e.RemoteAddr()))
	ops.PutAddr(&m, ops.AtArg2, ops.FromAddrPort(e.LocalAddr()))
	s.h.Reply(m)
}

// serveConnect starts so's active open once our address is known, and
// answers the OpConnect when the connection is established or failed.
func (s *server) serveConnect(so *sock) {
	if so.e == nil {
		remote := ops.GetAddr(*so.connect, ops.AtArg1).AddrPort()
		local, ok := s.localFor(so, remote.Addr())
		if !ok {
			return // waiting for IP's answer, or failed
		}
		// From the port bound before, if any (it stays ours in s.ports
		// until the socket closes); else the Table picks one.
		e, err := s.table.ConnectFrom(netip.AddrPortFrom(local, so.local.Port()), remote)
		if err != nil {
			// Whatever waited for the connection fails with it.
			s.fail(so, statusOf(err))
			return
		}
		e.own(owner{sock: so.id})
		e.SetNotify(s.notifier(so))
		so.e = e
		so.local = ops.FromAddrPort(e.LocalAddr())
	}
	r := *so.connect
	switch st := so.e.State(); {
	case st >= Established:
		ops.PutAddr(&r, ops.AtArg0, so.local)
	case st == Closed:
		ops.SetStatus(&r, statusOf(so.e.Err()))
		if ops.StatusOf(r) == ops.StatusOK {
			ops.SetStatus(&r, ops.StatusRefused)
		}
	default:
		return // SYN-SENT
	}
	so.connect = nil
	s.h.Reply(r)
}

// sourceWait bounds how long an active open waits for IP to say which
// IPv6 address it goes from (transport.SourceWait).
const sourceWait = transport.SourceWait

// localFor is the address so's active open to dst goes from: the one it
// is bound to; else, to IPv4, ours (OpAddr); to IPv6, the one IP chooses
// by RFC 6724, asked for (OpSource) and waited for, since the
// connection is known by its 4-tuple before its SYN leaves. ok false: not
// known yet, or there is none and so's connect was answered so.
func (s *server) localFor(so *sock, dst netip.Addr) (netip.Addr, bool) {
	switch ip := so.local.IP(); {
	case !ip.IsUnspecified():
		return ip, true
	case dst.Is4():
		return s.addr.Addr(), s.addr.IsValid() // invalid: IP has not told it yet
	case so.source.IsValid():
		return so.source, true
	case so.sourceKey != 0:
		return netip.Addr{}, false // asked already
	}
	key, ok := s.sources.Ask(dst, so, s.clock.Now())
	if !ok {
		s.fail(so, ops.StatusNoBuffers)
		return netip.Addr{}, false
	}
	so.sourceKey = key
	return netip.Addr{}, false
}

// Source is transport.SourceReceiver's: IP's answer to localFor's
// question key. An answer nobody waits for any more (the socket closed,
// its connect dropped with a SYSCALL generation and not reissued, or
// given up on) is dropped.
func (s *server) Source(key uint64, src netip.Addr, st ops.Status) {
	so, dst, ok := s.sources.Answer(key)
	if !ok || s.socks[so.id] != so || so.sourceKey != key {
		return
	}
	so.sourceKey = 0
	if so.connect == nil {
		return
	}
	switch {
	case st == ops.StatusOK && src.Is6() && !src.Is4In6() && !src.IsUnspecified():
		so.source = src
		s.mark(so)
	case st == ops.StatusOK:
		log.Printf("socket %d: ip named %v as the source to %v; the connect fails", so.id, src, dst)
		s.fail(so, ops.StatusAddrNotAvail)
	default:
		s.fail(so, st)
	}
}

// expireSources forgets the questions nobody waits for any more (the
// socket closed, its connect answered or dropped, another question
// asked), fails the connects that waited sourceWait for IP's answer, and
// returns when the next one is due (zero: none waits).
func (s *server) expireSources() time.Time {
	s.sources.Forget(func(key uint64, so *sock) bool {
		return s.socks[so.id] != so || so.sourceKey != key || so.connect == nil
	})
	return s.sources.Expire(s.clock.Now(), func(so *sock, dst netip.Addr) {
		so.sourceKey = 0
		log.Printf("socket %d: no answer from ip about the source to %v in %v", so.id, dst, sourceWait)
		s.fail(so, ops.StatusTimedOut)
	})
}

// Holds is transport.Auditor's: whether m waits on its socket — the
// connect in progress, an accept on the listener, a send or a receive on
// the connection; a lingering close. Every other operation is answered at
// once.
func (s *server) Holds(m channel.Msg) bool {
	if ops.OpOf(m) == ops.OpClose {
		return slices.ContainsFunc(s.lingering, func(l lingeringClose) bool { return l.m.ID == m.ID })
	}
	so := s.socks[m.Arg[0]]
	if so == nil {
		return false
	}
	switch ops.OpOf(m) {
	case ops.OpConnect:
		return so.connect != nil && so.connect.ID == m.ID
	case ops.OpAccept:
		return slices.ContainsFunc(so.accepts, func(a channel.Msg) bool { return a.ID == m.ID })
	case ops.OpSendTo:
		return slices.ContainsFunc(so.sends, func(p postedIO) bool { return p.m.ID == m.ID })
	case ops.OpRecvFrom:
		return slices.ContainsFunc(so.recvs, func(p postedIO) bool { return p.m.ID == m.ID })
	}
	return false
}
