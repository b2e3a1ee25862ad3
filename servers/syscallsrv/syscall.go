// Package syscall is keepnet's SYSCALL server: the front end applications'
// socket operations go through on their way to the transport servers (udp;
// tcp next). Applications talk to it over a shared-memory channel each, with
// their data in their own pool (servers/socket is their library); it talks
// to each transport over one channel, with the data in its own pool
// "syscall.io". The operations are those of servers/ops on both hops.
//
// The design choice: everything, control and data, goes over the shared
// memory channels the wiring hands out (kernel/wiring), not over a Unix
// socket. An operation costs no system call on either side while both are
// busy (a wake-up only when the receiver sleeps), batches naturally, and a
// restart of either end is announced by init with a fresh channel, which is
// what makes the recovery below possible: a Unix socket would only say
// "closed", and every request in it would be lost.
//
// Why a server between the two: it keeps, for every socket, the operations
// that have not finished (a posted receive, a send not yet acknowledged), so
// that when a transport crashes and comes back — with its sockets restored
// from the store — it can issue them again, and the application notices
// nothing but perhaps a duplicated datagram.
//
// # Recovery
//
//   - A transport restarts: its new generation restored its sockets from the
//     store. Every request the old one left unanswered is resubmitted to the
//     new one with new ids (kernel/channel.Outstanding); late answers from the
//     old one are ignored.
//   - An application restarts: its predecessor's sockets are closed in the
//     transports (OpCloseRange, below) and whatever was still pending for
//     it is dropped (its pool is gone).
//   - SYSCALL itself restarts: it kept no table, and needs none. A
//     transport socket id is TID(application index, application
//     generation, application socket id) — the index is the application's
//     place in Options.Apps (init's table), the same for every generation
//     of this server —, so the new generation names each socket as its
//     predecessor did. Each application's library sees the new generation
//     on its wiring socket and adopts its sockets (ops.OpAdopt: this server
//     makes the record and forwards it; the transport says whether it
//     still holds the socket), then reissues every request that had no
//     reply; the transports answer them idempotently (stream offsets on
//     TCP sends and receives, servers/ops), having dropped what the dead
//     generation had posted. The sockets of application generations that
//     died meanwhile, which nobody will adopt, are closed by range: when an
//     application generation G attaches (or a transport, for every
//     application attached), each transport gets ops.OpCloseRange of the
//     ids of that application's generations before G. Applications
//     therefore never notice, TCP connections included (UDP may see a
//     datagram twice).
//
// # Zero copy
//
// To a transport named in Options.ZeroCopy a send or a receive goes with
// the application's own buffer: init grants that transport every
// application's pool (boot/hub, PoolSpec.Granted; servers/transport,
// Config.Grants), so it reads what is sent and writes what is received
// where the application's library put it or will take it, and this server
// copies nothing (Stats.ZeroCopyDown and ZeroCopyUp count those bytes).
// The one copy at the socket boundary the design allows is the library's.
// The grant of a restarted application's new pool reaches the transport
// on its own wiring socket, apart from the channel this server hears of
// the application on: a request that overtakes it is answered
// StatusNoPool, and sent again with a copy in syscall.io — the way every
// request goes to the other transports (Stats.CopiedDown, CopiedUp).
package syscallsrv

import (
	"context"
	"fmt"
	"log"
	"slices"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/loop"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
	"keepnet/servers/store"
)

// IOPool is the server's pool for data on its way to and from transports.
const IOPool = "syscall.io"

// Options configure the process.
type Options struct {
	Name string // "syscall"
	// Transports maps each network to its transport component.
	Transports map[ops.Network]string
	// Apps are the application components, in the order of init's table
	// (cmd/syscall's -apps): an application's index in this list (from 1)
	// is the top of its transport socket ids (TID), the same for every
	// generation of this server. An application not listed gets an index
	// past them, stable only for this generation's life.
	Apps []string
	// ZeroCopy are the transports granted the applications' pools: the
	// package doc's "Zero copy".
	ZeroCopy []string
	Store    *store.Client
}

// The layout of a transport socket id: the application's index, its
// generation and its own socket id, so that every generation of this
// server computes the id its predecessor used for a socket, with no table
// to keep (the package doc's recovery).
const (
	tidGenShift = 32
	tidAppShift = 48
	maxAppID    = 1<<tidGenShift - 1 // the library's ids count from 1
	maxAppGen   = 1<<(tidAppShift-tidGenShift) - 1
	maxAppIndex = 1<<(64-tidAppShift) - 1
)

// TID is the transport's id for socket id of generation gen of the
// application with index app; ok is false if one does not fit its field.
func TID(app, gen int, id uint64) (uint64, bool) {
	if app < 1 || app > maxAppIndex || gen < 0 || gen > maxAppGen || id > maxAppID {
		return 0, false
	}
	return uint64(app)<<tidAppShift | uint64(gen)<<tidGenShift | id, true
}

// orphanRange is the range of transport ids of the generations of
// application app before gen: what OpCloseRange closes when gen attaches.
func orphanRange(app, gen int) (first, end uint64) {
	first = uint64(app) << tidAppShift
	return first, first | uint64(min(gen, maxAppGen+1))<<tidGenShift
}

// heldReq is an application request waiting for its transport to join.
type heldReq struct {
	app string
	gen int
	m   channel.Msg
}

// maxHeld bounds the requests held for transports not there yet.
const maxHeld = 4096

// Bounds per application (issue 11): one application cannot take every
// socket or fill the server's tables. A request beyond them is refused:
// an OpOpen or OpAccept past MaxSocketsPerApp with StatusTooManySockets
// (EMFILE to the application), any request but OpClose past
// MaxPendingPerApp with StatusNoBuffers (ENOBUFS). Both are counted.
const (
	MaxSocketsPerApp = 8192 // as many as tcp holds connections (tcp.DefaultMaxConns)
	MaxPendingPerApp = 16384
)

// link is the channel to one neighbour's current generation.
type link struct {
	peer  *wiring.Peer
	out   *channel.Outstanding // requests sent to a transport, unanswered
	queue []channel.Msg
	// What the neighbour is, settled when it first attaches, so that a
	// message costs no lookup by name: a transport (and whether it takes
	// the applications' buffers, Options.ZeroCopy) or an application,
	// with its sockets (the map in Server.socks) and its forwarded
	// requests not yet answered (MaxPendingPerApp).
	transport bool
	zeroCopy  bool
	socks     map[uint64]*sock
	pending   int
}

func (l *link) send(m channel.Msg) { l.queue = append(l.queue, m) }

// sock is one application socket.
type sock struct {
	app     string // the application component
	appGen  int    // its generation: a restarted application's sockets are gone
	appID   uint64 // the application's name for it
	tid     uint64 // the transport's name for it: TID(app, appGen, appID)
	network ops.Network
}

// fwd is a request forwarded to a transport on behalf of an application.
type fwd struct {
	s       *sock
	appReq  channel.Msg // the application's request, for its id and buffer
	ref     pool.Ref    // our syscall.io buffer, if any
	zc      bool        // forwarded with the application's buffer (zero copy)
	created *sock       // OpAccept: the connection's socket, if it comes; OpAdopt: the socket
	app     *link       // whose pending operation it is (MaxPendingPerApp)
}

// Server is the SYSCALL server's state; one goroutine runs it.
type Server struct {
	o     Options
	io    *pool.Pool
	links map[string]*link
	// order is links in the order they attached: the loop's rounds go
	// through a slice, not the map.
	order []*link
	// byNetwork is each network's transport link, once it attached.
	byNetwork map[ops.Network]*link
	// release tells init a superseded neighbour's pool is unmapped
	// (wiring.Conn.Release); nil in tests.
	release func(id uint32)
	// socks by application name, then the application's socket id.
	socks map[string]map[uint64]*sock
	// fwds by key (Arg[3] of the forwarded request, stable across
	// resubmission).
	fwds    map[uint64]*fwd
	nextKey uint64
	// apps are the applications' indexes (Options.Apps, then those met).
	apps map[string]int
	in   []channel.Msg
	// held are application requests that arrived before their transport
	// joined, replayed when it does.
	held []heldReq
	// maxSockets and maxPending are MaxSocketsPerApp and
	// MaxPendingPerApp, or what a test sets.
	maxSockets, maxPending int
	// spare are fwd records to reuse: one is made per forwarded request.
	spare []*fwd
	// noGrant are applications' pools a zero-copy transport said it was
	// not granted (StatusNoPool): requests into them go with copies.
	noGrant map[uint32]bool
	stats   Stats
	pub     *store.Publisher
}

// Stats is what SYSCALL publishes for `keepnet stats syscall`.
type Stats struct {
	Generation    int
	Sockets       int
	Forwarded     uint64 // requests forwarded to transports
	Resubmitted   uint64 // requests re-issued to a restarted transport
	Reopened      uint64 // sockets opened again on a restarted transport
	AppsReset     uint64 // application generations whose sockets were closed
	NoBuffer      uint64 // requests refused for want of a syscall.io buffer
	BadRequests   uint64
	PendingOps    int
	IOBuffersFree int
	// The bytes this server copied between the applications' pools and
	// syscall.io, for sends (down) and receives (up): the copies beyond
	// the one at the socket boundary (the package doc's last paragraph),
	// counted so that their removal can be shown.
	CopiedDown uint64
	CopiedUp   uint64
	// The bytes sent and received with the applications' own buffers,
	// not copied here (the package doc's "Zero copy"); NoPoolRetries,
	// the requests sent again with a copy after a StatusNoPool.
	ZeroCopyDown  uint64
	ZeroCopyUp    uint64
	NoPoolRetries uint64
	// The bounds per application and how often each refused.
	MaxSocketsPerApp int
	MaxPendingPerApp int
	SocketsRefused   uint64 // OpOpen or OpAccept refused: EMFILE
	PendingRefused   uint64 // requests refused: ENOBUFS
}

const (
	joinTimeout = 10 * time.Second
	statsEvery  = time.Second
)

// Serve runs the SYSCALL server process until ctx ends.
func Serve(ctx context.Context, o Options) error {
	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	io := setup.Pools[IOPool]
	if io == nil {
		return fmt.Errorf("syscall: init sent no %s pool", IOPool)
	}
	s := newServer(o, io, setup.Generation)
	s.release = conn.Release
	s.pub = store.NewPublisher(o.Store, "stats", o.Name)
	defer s.pub.Close()
	watch, err := wiring.Watch(conn)
	if err != nil {
		return err
	}
	defer watch.Close()
	defer conn.Close()
	for _, p := range setup.Peers {
		s.Attach(p)
	}
	if err := conn.Send(wiring.Message{Type: wiring.TypeUp}); err != nil {
		return err
	}
	log.Printf("serving, generation %d", setup.Generation)
	if err := loop.Run(ctx, loop.FromWatcher(watch), s, loop.Options{Publish: s.publish, PublishEvery: statsEvery}); err != nil {
		return fmt.Errorf("syscall: %w", err)
	}
	return nil
}

// Poll is the loop's (kernel/loop): move messages once; nothing is timed.
func (s *Server) Poll() (bool, time.Time) { return s.poll(), time.Time{} }

// AppendPorts is the loop's: every neighbour's channel.
func (s *Server) AppendPorts(dst []*channel.Endpoint) []*channel.Endpoint {
	for _, l := range s.order {
		dst = append(dst, l.peer.Port)
	}
	return dst
}

// newServer is a SYSCALL server of the given generation with its pool and
// no neighbours yet.
func newServer(o Options, io *pool.Pool, gen int) *Server {
	s := &Server{o: o, io: io, links: map[string]*link{}, byNetwork: map[ops.Network]*link{}, socks: map[string]map[uint64]*sock{},
		fwds: map[uint64]*fwd{}, nextKey: 1, apps: map[string]int{}, in: make([]channel.Msg, 64),
		noGrant: map[uint32]bool{}, maxSockets: MaxSocketsPerApp, maxPending: MaxPendingPerApp}
	s.stats.Generation = gen
	for i, a := range o.Apps {
		s.apps[a] = i + 1
	}
	return s
}

// appIndex is app's index in transport ids.
func (s *Server) appIndex(app string) int {
	i := s.apps[app]
	if i == 0 {
		i = len(s.apps) + 1
		s.apps[app] = i
		log.Printf("%s is not among the applications given: its sockets will not survive a restart of syscall", app)
	}
	return i
}

// newSock is the record of socket id of application app's current
// generation, or nil if its transport id does not fit (TID).
func (s *Server) newSock(app string, gen int, id uint64, network ops.Network) *sock {
	tid, ok := TID(s.appIndex(app), gen, id)
	if !ok {
		return nil
	}
	return &sock{app: app, appGen: gen, appID: id, tid: tid, network: network}
}

// closeOrphans asks transport l to close the sockets of application app's
// generations before gen: they may have died while this server did not
// know them.
func (s *Server) closeOrphans(l *link, app string, gen int) {
	first, end := orphanRange(s.appIndex(app), gen)
	s.request(l, ops.OpCloseRange.Msg(first, end), false)
}

func (s *Server) isTransport(name string) bool {
	for _, t := range s.o.Transports {
		if t == name {
			return true
		}
	}
	return false
}

// Attach starts talking to a new generation of a neighbour.
func (s *Server) Attach(p *wiring.Peer) {
	l := s.links[p.Name]
	first := l == nil
	if first {
		l = &link{out: channel.NewOutstanding(1<<16, 1), transport: s.isTransport(p.Name),
			zeroCopy: slices.Contains(s.o.ZeroCopy, p.Name)}
		s.links[p.Name] = l
		s.order = append(s.order, l)
		for network, name := range s.o.Transports {
			if name == p.Name {
				s.byNetwork[network] = l
			}
		}
	} else {
		// No reference into the old generation's pools outlives this:
		// its requests' answers come on its channel, closed now.
		l.peer.Retire(s.release)
	}
	l.peer = p
	if l.transport {
		resent := l.out.Resubmit()
		s.stats.Resubmitted += uint64(len(resent))
		var reopened []channel.Msg
		if !first {
			reopened = s.reopen(l, p.Name)
		}
		l.queue = append(reopened, resent...)
		if first {
			// The applications adopt their sockets (OpAdopt); those of
			// their generations that died meanwhile have no owner.
			for name, al := range s.links {
				if !al.transport && al.peer != nil {
					s.closeOrphans(l, name, al.peer.Generation)
				}
			}
		}
		log.Printf("transport %s generation %d: %d requests resubmitted", p.Name, p.Generation, len(resent))
		s.replayHeld()
		return
	}
	// An application: a new generation owns none of the old one's sockets.
	l.queue = nil
	if !first {
		s.dropApp(p.Name, p.Generation)
	}
	for _, t := range s.o.Transports {
		if tl := s.links[t]; tl != nil {
			s.closeOrphans(tl, p.Name, p.Generation)
		}
	}
}

// reopen makes the OpOpen of every socket the applications have on
// transport name, for its new generation, ahead of everything resubmitted
// to it. A transport keeps only the sockets it has records of (bound,
// listening, connected: servers/transport's restart protocol); one an
// application opened and had not bound yet when the transport died would
// be unknown to the next generation, and its bind refused (EBADF). An
// OpOpen of a socket the transport restored is answered as a resubmission.
func (s *Server) reopen(l *link, name string) []channel.Msg {
	// Not the sockets a pending request is to create (an accept's
	// connection) or to find (an adoption): the transport decides whether
	// they exist.
	toCome := map[*sock]bool{}
	for _, f := range s.fwds {
		if f.created != nil {
			toCome[f.created] = true
		}
	}
	var ms []channel.Msg
	for _, socks := range s.socks {
		for _, so := range socks {
			if s.o.Transports[so.network] != name || toCome[so] {
				continue
			}
			m, err := l.out.Add(ops.OpOpen.Msg(so.tid, uint64(so.network)))
			if err != nil {
				log.Printf("reopening socket %d on %s: %v", so.tid, name, err)
				continue
			}
			ms = append(ms, m)
		}
	}
	s.stats.Reopened += uint64(len(ms))
	return ms
}

// replayHeld hands held requests to fromApp again, now that a transport
// joined; those still without a transport are held again.
func (s *Server) replayHeld() {
	held := s.held
	s.held = nil
	for _, h := range held {
		if l := s.links[h.app]; l != nil && l.peer.Generation == h.gen {
			s.fromApp(l, h.m)
		}
	}
}

// dropApp forgets the sockets of an application's earlier generations;
// the transports close them (closeOrphans, with those this server never
// knew).
func (s *Server) dropApp(app string, gen int) {
	n := 0
	for id, so := range s.socks[app] {
		if so.appGen >= gen {
			continue
		}
		for _, f := range s.fwds {
			if f.s == so {
				f.s = nil // the answer will find nobody to copy to
			}
		}
		delete(s.socks[app], id)
		n++
	}
	if n > 0 {
		s.stats.AppsReset++
		log.Printf("%s generation %d: closed %d sockets of its predecessor", app, gen, n)
	}
}

// request queues a request to a transport; Arg[3] carries its key.
//
// A buffer it names must be one of syscall.io (or, zc, the application's
// that the caller just checked): a transport trusts it and stops if it is
// not (servers/transport, Host.SyscallBytes), so a reference our own
// state corrupted would stop the transport at every resubmission. It
// stops us instead, whose restart clears it.
func (s *Server) request(l *link, m channel.Msg, zc bool) {
	if !m.Ref.IsZero() && !zc {
		if _, err := s.io.Bytes(m.Ref); err != nil {
			panic(fmt.Sprintf("syscall: a request to %s names a buffer that is not ours (%v): our state is corrupt", l.peer.Name, err))
		}
	}
	m, err := l.out.Add(m)
	if err != nil {
		log.Printf("request to %s: %v", l.peer.Name, err)
		return
	}
	l.send(m)
}

// poll moves messages once; it reports whether anything moved.
func (s *Server) poll() bool {
	work := false
	for _, l := range s.order {
		n := l.peer.Port.Recv(s.in)
		for _, m := range s.in[:n] {
			if l.transport {
				s.fromTransport(l, m)
			} else {
				s.fromApp(l, m)
			}
		}
		work = work || n > 0
	}
	for _, l := range s.order {
		var sent int
		l.queue, sent = channel.Flush(l.peer.Port, l.queue)
		work = work || sent > 0
	}
	return work
}

func (s *Server) refuse(l *link, m channel.Msg, status ops.Status) {
	r := m
	ops.SetStatus(&r, status)
	l.send(r)
}

// fromApp handles a request of the application on l.
func (s *Server) fromApp(l *link, m channel.Msg) {
	app := l.peer.Name
	socks := l.socks
	if socks == nil {
		if socks = s.socks[app]; socks == nil {
			socks = map[uint64]*sock{}
			s.socks[app] = socks
		}
		l.socks = socks
	}
	id := m.Arg[0]
	so := socks[id]
	if !s.withinBounds(l, m, len(socks)) {
		return
	}
	var created *sock
	if op := ops.OpOf(m); op == ops.OpOpen || op == ops.OpAdopt && so == nil {
		network := ops.Network(m.Arg[1])
		if so != nil || s.o.Transports[network] == "" {
			s.stats.BadRequests++
			s.refuse(l, m, ops.StatusInvalid)
			return
		}
		if so = s.newSock(app, l.peer.Generation, id, network); so == nil {
			s.stats.BadRequests++
			s.refuse(l, m, ops.StatusInvalid)
			return
		}
		socks[id] = so
		if op == ops.OpAdopt {
			created = so
		}
	}
	if so == nil {
		s.refuse(l, m, ops.StatusNoSocket)
		return
	}
	t := s.byNetwork[so.network]
	if t == nil {
		// The transport has not joined yet (they start side by side):
		// hold the request until it does.
		if ops.OpOf(m) == ops.OpOpen {
			delete(socks, id)
		}
		if len(s.held) >= maxHeld {
			s.refuse(l, m, ops.StatusError)
			return
		}
		s.held = append(s.held, heldReq{app: app, gen: l.peer.Generation, m: m})
		return
	}
	f := s.newFwd()
	f.s, f.appReq, f.created = so, m, created
	// The request as it came, but for the socket's name (Arg[0]) and our
	// key (Arg[3], below); an address and its port (servers/ops) pass
	// through.
	out := channel.Msg{Op: m.Op, Flags: m.Flags, Aux: m.Aux, Arg: [4]uint64{so.tid, m.Arg[1], m.Arg[2]}}
	switch ops.OpOf(m) {
	case ops.OpOpen, ops.OpBind, ops.OpConnect, ops.OpClose, ops.OpListen, ops.OpShutdown, ops.OpAdopt, ops.OpSetOption:
	case ops.OpAccept:
		// The application names the connection to come (Arg[1]); so do
		// we, towards the transport.
		newID := m.Arg[1]
		if socks[newID] != nil {
			s.stats.BadRequests++
			s.refuse(l, m, ops.StatusInvalid)
			return
		}
		conn := s.newSock(app, l.peer.Generation, newID, so.network)
		if conn == nil {
			s.stats.BadRequests++
			s.refuse(l, m, ops.StatusInvalid)
			return
		}
		socks[newID] = conn
		f.created = conn
		out.Arg[1] = conn.tid
	case ops.OpSendTo:
		src, err := s.appBytes(l, m.Ref)
		if err != nil {
			s.stats.BadRequests++
			s.refuse(l, m, ops.StatusInvalid)
			return
		}
		if s.zeroCopy(t, m.Ref) {
			f.zc, out.Ref = true, m.Ref
			s.stats.ZeroCopyDown += uint64(len(src))
			break
		}
		ref, ok := s.allocIO(l, m)
		if !ok {
			return
		}
		buf, _ := s.io.Bytes(ref)
		if len(src) > len(buf) {
			s.io.MustFree(ref)
			s.refuse(l, m, ops.StatusTooBig)
			return
		}
		ref.Len = uint32(copy(buf, src))
		s.stats.CopiedDown += uint64(ref.Len)
		f.ref, out.Ref = ref, ref
	case ops.OpRecvFrom:
		if m.Ref.IsZero() {
			// A readiness receive (stream sockets, servers/ops): it
			// carries no bytes, so it costs no syscall.io buffer, however
			// many idle connections keep one posted.
			break
		}
		if _, err := s.appBytes(l, m.Ref); err != nil {
			s.stats.BadRequests++
			s.refuse(l, m, ops.StatusInvalid)
			return
		}
		if s.zeroCopy(t, m.Ref) {
			f.zc, out.Ref = true, m.Ref // the transport fills it
			break
		}
		ref, ok := s.allocIO(l, m)
		if !ok {
			return
		}
		f.ref, out.Ref = ref, ref // full size: the transport fills it
	default:
		s.stats.BadRequests++
		s.refuse(l, m, ops.StatusInvalid)
		return
	}
	if ops.OpOf(m) == ops.OpClose {
		delete(socks, id)
	}
	key := s.nextKey
	s.nextKey++
	f.app = l
	l.pending++
	s.fwds[key] = f
	out.Arg[3] = key
	s.stats.Forwarded++
	s.request(t, out, f.zc)
}

// newFwd is a cleared fwd record, reused if one is spare.
func (s *Server) newFwd() *fwd {
	n := len(s.spare)
	if n == 0 {
		return &fwd{}
	}
	f := s.spare[n-1]
	s.spare = s.spare[:n-1]
	return f
}

// freeFwd keeps f, answered and forgotten, for the next request; a spare
// record names nothing.
func (s *Server) freeFwd(f *fwd) {
	*f = fwd{}
	if len(s.spare) < maxSpareFwds {
		s.spare = append(s.spare, f)
	}
}

// maxSpareFwds bounds the spare records: a burst's worth.
const maxSpareFwds = 256

// zeroCopy reports whether a request into the application buffer ref goes
// to transport t with that buffer (the package doc's "Zero copy").
func (s *Server) zeroCopy(t *link, ref pool.Ref) bool {
	return t.zeroCopy && !s.noGrant[ref.Pool]
}

// withinBounds refuses m, and reports false, if it would take the
// application on l past MaxSocketsPerApp (it holds n sockets) or
// MaxPendingPerApp.
func (s *Server) withinBounds(l *link, m channel.Msg, n int) bool {
	switch op := ops.OpOf(m); {
	case op == ops.OpClose:
		return true // always: it frees
	case (op == ops.OpOpen || op == ops.OpAccept) && n >= s.maxSockets:
		s.stats.SocketsRefused++
		s.refuse(l, m, ops.StatusTooManySockets)
		return false
	case l.pending >= s.maxPending:
		s.stats.PendingRefused++
		s.refuse(l, m, ops.StatusNoBuffers)
		return false
	}
	return true
}

// allocIO takes a syscall.io buffer for request m, or refuses m.
func (s *Server) allocIO(l *link, m channel.Msg) (pool.Ref, bool) {
	ref, ok := s.io.Alloc()
	if !ok {
		s.stats.NoBuffer++
		s.refuse(l, m, ops.StatusError)
	}
	return ref, ok
}

// appBytes is the application buffer a reference names.
func (s *Server) appBytes(l *link, ref pool.Ref) ([]byte, error) {
	p := l.peer.Pool(ref.Pool)
	if p == nil {
		return nil, fmt.Errorf("pool %d is not the application's", ref.Pool)
	}
	return p.Bytes(ref)
}

// fromTransport handles a transport's reply.
func (s *Server) fromTransport(l *link, m channel.Msg) {
	req, ok := l.out.CompleteFrom(l.peer.Port, m)
	if !ok {
		return
	}
	f := s.fwds[req.Arg[3]]
	delete(s.fwds, req.Arg[3])
	if f == nil {
		return // an OpCloseRange
	}
	f.app.pending--
	defer func() {
		if !f.ref.IsZero() {
			s.io.MustFree(f.ref)
		}
		s.freeFwd(f)
	}()
	if f.s == nil {
		return // the application restarted meanwhile
	}
	app := s.links[f.s.app]
	if app == nil || app.peer.Generation != f.s.appGen {
		return
	}
	if f.zc && ops.StatusOf(m) == ops.StatusNoPool {
		// The transport has not (yet) been granted the application's
		// pool: the request goes again, with a copy.
		s.noGrant[f.appReq.Ref.Pool] = true
		s.stats.NoPoolRetries++
		s.fromApp(app, f.appReq)
		return
	}
	if f.created != nil && ops.StatusOf(m) != ops.StatusOK {
		delete(s.socks[f.s.app], f.created.appID) // no connection came, or nothing to adopt
	}
	// The reply as it came (a reply names no socket: its words carry
	// addresses and counts), to the application's request id and buffer.
	r := f.appReq
	r.Status, r.Flags, r.Aux, r.Arg = m.Status, m.Flags, m.Aux, m.Arg
	if ops.OpOf(req) == ops.OpRecvFrom && ops.StatusOf(m) == ops.StatusOK && f.zc {
		// The transport wrote into the application's buffer itself.
		if m.Ref.Len > f.appReq.Ref.Len {
			ops.SetStatus(&r, ops.StatusError) // the transport's answer is wrong
		} else {
			r.Ref.Len = m.Ref.Len
			s.stats.ZeroCopyUp += uint64(m.Ref.Len)
		}
	} else if ops.OpOf(req) == ops.OpRecvFrom && ops.StatusOf(m) == ops.StatusOK && !f.ref.IsZero() {
		// Both buffers were checked when the request came, and the
		// application is the same generation: if either is gone now, our
		// own state is corrupt, and our restart clears it.
		buf, err := s.io.Bytes(f.ref)
		if err != nil {
			panic(fmt.Sprintf("syscall: a receive's buffer %v is not ours: %v", f.ref, err))
		}
		dst, err := s.appBytes(app, f.appReq.Ref)
		if err != nil {
			panic(fmt.Sprintf("syscall: a receive's buffer %v in %s is gone: %v", f.appReq.Ref, f.s.app, err))
		}
		if int(m.Ref.Len) > len(buf) {
			ops.SetStatus(&r, ops.StatusError) // the transport's answer is wrong
		} else {
			src := buf[:m.Ref.Len]
			n := copy(dst, src)
			s.stats.CopiedUp += uint64(n)
			if n < len(src) {
				r.Flags |= ops.FlagTruncated
			}
			r.Ref.Len = uint32(n)
		}
	}
	app.send(r)
}

func (s *Server) publish() {
	st := s.stats
	for _, m := range s.socks {
		st.Sockets += len(m)
	}
	st.PendingOps = len(s.fwds)
	st.MaxSocketsPerApp, st.MaxPendingPerApp = s.maxSockets, s.maxPending
	st.IOBuffersFree = s.io.Available()
	s.pub.Publish(st)
}
