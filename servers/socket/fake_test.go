package socket

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/servers/ops"
)

// fakeNet is an in-memory UDP and TCP network on one host, hostIP: the
// transports under any number of fake SYSCALL servers. Datagrams go by
// destination port; TCP is a reliable byte stream (fake_tcp_test.go). One
// lock serialises everything, including every fake server's sends on its
// channel (the one-sender rule).
type fakeNet struct {
	mu      sync.Mutex
	ports   map[uint16]*fakeSock
	nextEph uint16
	dropped int // datagrams nobody took

	tcpPorts   map[uint16]*fakeSock // TCP listeners and connecting sockets, by local port
	nextTCPEph uint16
	rcvBuf     int // bytes a TCP connection buffers unread before sends wait
	takeMax    int // if > 0, the most a TCP send takes at once (forces partial takes)
}

var (
	hostIP  = netip.MustParseAddr("10.0.0.2")
	hostIP6 = netip.MustParseAddr("2001:db8::2") // TCP only: the fake's same host over IPv6
)

func newFakeNet() *fakeNet {
	return &fakeNet{ports: map[uint16]*fakeSock{}, nextEph: 49152,
		tcpPorts: map[uint16]*fakeSock{}, nextTCPEph: 49152, rcvBuf: 64 << 10}
}

// fakeServer is one generation of a SYSCALL server for one application.
type fakeServer struct {
	n     *fakeNet
	port  *channel.Endpoint // the server's side
	pool  *pool.Pool        // the application's
	stop  chan struct{}
	done  chan struct{}
	socks map[uint64]*fakeSock
	out   []channel.Msg // replies that did not fit yet
	// holdSends keeps OpSendTo requests unanswered (and undelivered) in
	// held, as a server that dies before it forwards them.
	holdSends bool
	held      []channel.Msg
	// sendStatus, if not StatusOK, answers every OpSendTo without
	// delivering it.
	sendStatus ops.Status
	requests   map[ops.Op]int       // by op
	orphans    map[uint64]*fakeSock // after crash: the sockets the next generation inherits
	// holdCloses keeps OpClose unanswered (a lingering close) until
	// releaseCloses.
	holdCloses bool
	heldCloses []channel.Msg
	// loseReplies drops the replies to every request handled from now on,
	// as a server that dies after the transport acted.
	loseReplies bool
}

type fakeSock struct {
	srv               *fakeServer
	id                uint64
	local, remote     ops.Addr
	bound, connected  bool
	posted            []channel.Msg // OpRecvFrom waiting for a datagram
	queue             []fakeDatagram
	truncatedReceived int
	tcp               *fakeTCP // nil for UDP
}

type fakeDatagram struct {
	src  ops.Addr
	data []byte
}

// serve starts a fake SYSCALL server on port for an application's pool.
func (n *fakeNet) serve(port *channel.Endpoint, p *pool.Pool) *fakeServer {
	f := &fakeServer{n: n, port: port, pool: p, stop: make(chan struct{}), done: make(chan struct{}), socks: map[uint64]*fakeSock{}, requests: map[ops.Op]int{}}
	go f.loop()
	return f
}

func (f *fakeServer) loop() {
	defer close(f.done)
	in := make([]channel.Msg, 32)
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		f.port.Wait(2 * time.Millisecond)
		k := f.port.Recv(in)
		f.n.mu.Lock()
		for _, m := range in[:k] {
			f.handle(m)
		}
		f.flush()
		f.n.mu.Unlock()
	}
}

// crash stops the server as a crash would: no more replies. Its sockets
// stay in the transport, without the requests that were posted on them
// (servers/transport's DropRequests): the next generation inherits them
// (serveAfter) for the application to adopt.
func (f *fakeServer) crash() {
	select {
	case <-f.stop:
		return // crashed already
	default:
	}
	close(f.stop)
	<-f.done
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	f.orphans = f.socks
	f.socks = nil
	for _, s := range f.orphans {
		s.posted = nil
		if t := s.tcp; t != nil {
			t.accepts, t.sends, t.took, t.lent = nil, nil, 0, 0
		}
	}
}

// close ends the server and closes its sockets in the transport (the
// application is gone).
func (f *fakeServer) close() {
	f.crash()
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	for _, s := range f.orphans {
		if s.tcp != nil {
			f.n.crashTCP(s)
		} else {
			f.n.unbind(s)
		}
	}
	f.orphans = nil
}

// serveAfter starts the generation after old, which crashed: it inherits
// old's sockets in the transport.
func (n *fakeNet) serveAfter(old *fakeServer, port *channel.Endpoint) *fakeServer {
	f := &fakeServer{n: n, port: port, pool: old.pool, stop: make(chan struct{}), done: make(chan struct{}), socks: map[uint64]*fakeSock{}, requests: map[ops.Op]int{}}
	n.mu.Lock()
	for id, s := range old.orphans {
		s.srv = f
		f.socks[id] = s
	}
	old.orphans = nil
	n.mu.Unlock()
	go f.loop()
	return f
}

func (f *fakeServer) count(op ops.Op) int {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	return f.requests[op]
}

// releaseSends handles the held sends now.
func (f *fakeServer) releaseSends() {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	f.holdSends = false
	for _, m := range f.held {
		f.handle(m)
	}
	f.held = nil
	f.flush()
}

func (f *fakeServer) setSendStatus(status ops.Status) {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	f.sendStatus = status
}

func (f *fakeServer) setHoldSends(v bool) {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	f.holdSends = v
}

// reply queues an answer to m. n.mu must be held.
func (f *fakeServer) reply(m channel.Msg, status ops.Status) {
	if f.socks == nil || f.loseReplies {
		return // crashed
	}
	ops.SetStatus(&m, status)
	f.out = append(f.out, m)
}

func (f *fakeServer) flush() {
	if len(f.out) > 0 {
		k := f.port.Send(f.out...)
		f.out = f.out[:copy(f.out, f.out[k:])]
	}
}

// handle serves one request. n.mu must be held.
func (f *fakeServer) handle(m channel.Msg) {
	f.requests[ops.OpOf(m)]++
	if f.socks == nil {
		return // crashed
	}
	s := f.socks[m.Arg[0]]
	if ops.OpOf(m) == ops.OpAdopt {
		st := ops.StatusNoSocket
		if s != nil {
			st = ops.StatusOK
		}
		f.reply(m, st)
		return
	}
	if s == nil && ops.OpOf(m) == ops.OpClose {
		f.reply(m, ops.StatusOK)
		return
	}
	if s == nil && ops.OpOf(m) != ops.OpOpen && ops.OpOf(m) != ops.OpReset {
		f.reply(m, ops.StatusNoSocket)
		return
	}
	if (s == nil && ops.OpOf(m) == ops.OpOpen && ops.Network(m.Arg[1]) == ops.TCP) || (s != nil && s.tcp != nil) {
		f.handleTCP(s, m)
		return
	}
	switch ops.OpOf(m) {
	case ops.OpOpen:
		if s != nil && ops.Network(m.Arg[1]) == ops.UDP {
			f.reply(m, ops.StatusOK) // a reissue
			return
		}
		if s != nil || ops.Network(m.Arg[1]) != ops.UDP {
			f.reply(m, ops.StatusInvalid)
			return
		}
		f.socks[m.Arg[0]] = &fakeSock{srv: f, id: m.Arg[0]}
		f.reply(m, ops.StatusOK)
	case ops.OpBind:
		if s.bound && ops.GetAddr(m, ops.AtArg1) == s.local {
			ops.PutAddr(&m, ops.AtArg0, s.local)
			f.reply(m, ops.StatusOK) // a reissue
			return
		}
		if s.bound {
			f.reply(m, ops.StatusInvalid)
			return
		}
		if st := f.n.bind(s, ops.GetAddr(m, ops.AtArg1)); st != ops.StatusOK {
			f.reply(m, st)
			return
		}
		ops.PutAddr(&m, ops.AtArg0, s.local)
		f.reply(m, ops.StatusOK)
	case ops.OpConnect:
		if !s.bound { // to our address, as a connected socket's source is
			if st := f.n.bind(s, ops.MakeAddr(hostIP, 0)); st != ops.StatusOK {
				f.reply(m, st)
				return
			}
		}
		s.remote, s.connected = ops.GetAddr(m, ops.AtArg1), true
		ops.PutAddr(&m, ops.AtArg0, s.local)
		f.reply(m, ops.StatusOK)
	case ops.OpSendTo:
		if f.holdSends {
			f.held = append(f.held, m)
			return
		}
		if f.sendStatus != ops.StatusOK {
			f.reply(m, f.sendStatus)
			return
		}
		b, err := f.pool.Bytes(m.Ref)
		dst := ops.GetAddr(m, ops.AtArg1)
		if dst.IsZero() {
			dst = s.remote
		}
		if err != nil || dst.IsZero() {
			f.reply(m, ops.StatusInvalid)
			return
		}
		if !s.bound {
			f.n.bind(s, ops.Addr{})
		}
		src := s.local
		if !src.IP().IsValid() || src.IP().IsUnspecified() {
			src = ops.MakeAddr(hostIP, src.Port())
		}
		f.n.deliver(src, dst, append([]byte(nil), b...))
		ops.PutAddr(&m, ops.AtArg0, s.local)
		f.reply(m, ops.StatusOK)
	case ops.OpRecvFrom:
		s.posted = append(s.posted, m)
		s.fill()
	case ops.OpClose:
		for _, r := range s.posted {
			r.Ref.Len = 0
			f.reply(r, ops.StatusClosed)
		}
		s.posted = nil
		f.n.unbind(s)
		delete(f.socks, s.id)
		f.reply(m, ops.StatusOK)
	default:
		f.reply(m, ops.StatusInvalid)
	}
}

// bind binds s to a (port 0: ephemeral). n.mu must be held.
func (n *fakeNet) bind(s *fakeSock, a ops.Addr) ops.Status {
	port := a.Port()
	if port == 0 {
		for n.ports[n.nextEph] != nil {
			n.nextEph++
		}
		port = n.nextEph
		n.nextEph++
	}
	if n.ports[port] != nil {
		return ops.StatusInUse
	}
	n.ports[port] = s
	s.local, s.bound = ops.MakeAddr(a.IP(), port), true
	return ops.StatusOK
}

func (n *fakeNet) unbind(s *fakeSock) {
	if s.bound && n.ports[s.local.Port()] == s {
		delete(n.ports, s.local.Port())
	}
}

// deliver hands a datagram to the socket on dst's port. n.mu must be held.
func (n *fakeNet) deliver(src, dst ops.Addr, data []byte) {
	t := n.ports[dst.Port()]
	if t == nil || t.srv.socks == nil || (t.connected && (t.remote.Port() != src.Port() || t.remote.IP() != src.IP())) {
		n.dropped++
		return
	}
	if len(t.queue) >= 4096 {
		n.dropped++
		return
	}
	t.queue = append(t.queue, fakeDatagram{src: src, data: data})
	t.fill()
	t.srv.flush()
}

// fill answers posted receives with queued datagrams. n.mu must be held.
func (s *fakeSock) fill() {
	for len(s.posted) > 0 && len(s.queue) > 0 {
		r, d := s.posted[0], s.queue[0]
		s.posted, s.queue = s.posted[1:], s.queue[1:]
		buf, err := s.srv.pool.Bytes(r.Ref)
		if err != nil {
			s.srv.reply(r, ops.StatusInvalid)
			continue
		}
		k := copy(buf, d.data)
		if k < len(d.data) {
			r.Flags |= ops.FlagTruncated
			s.truncatedReceived++
		}
		r.Ref.Len = uint32(k)
		ops.PutAddr(&r, ops.AtArg0, d.src)
		s.srv.reply(r, ops.StatusOK)
	}
}

var poolIDs atomic.Uint32

// app is one application on a fake network: its Stack and its current
// fake SYSCALL server.
type app struct {
	n    *fakeNet
	pool *pool.Pool
	st   *Stack
	srv  *fakeServer
}

func newApp(t *testing.T, n *fakeNet) *app {
	return newAppPool(t, n, 64, 65536)
}

func newAppPool(t *testing.T, n *fakeNet, bufs, size int) *app {
	t.Helper()
	p, err := pool.Create(1000+poolIDs.Add(1), bufs, size)
	if err != nil {
		t.Fatal(err)
	}
	a, b, err := channel.NewLocal(256)
	if err != nil {
		t.Fatal(err)
	}
	ap := &app{n: n, pool: p, srv: n.serve(b, p)}
	ap.st = New(a, p)
	t.Cleanup(func() {
		ap.st.Close()
		ap.srv.close()
		p.Close()
	})
	return ap
}

// restart crashes the app's SYSCALL server and gives the Stack a new
// generation on a fresh channel; it returns the old one.
func (ap *app) restart(t *testing.T) *fakeServer {
	t.Helper()
	old := ap.srv
	old.crash()
	a, b, err := channel.NewLocal(256)
	if err != nil {
		t.Fatal(err)
	}
	ap.srv = ap.n.serveAfter(old, b)
	ap.st.PeerRestarted(a)
	return old
}

func channelPair(t *testing.T) (a, b *channel.Endpoint) {
	t.Helper()
	a, b, err := channel.NewLocal(256)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}
