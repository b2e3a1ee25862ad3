package tcp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"

	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/store"
	"keepnet/servers/transport"
)

// The TCP server process: the Table as a servers/transport core. This file
// is the core (what the framework drives: segments in, timers, the
// address); server_socket.go is its socket side (one method per stream
// operation of servers/ops), server_store.go what is kept in the store.
// The links, the loop, the tcp.out pool (segments are copied into it from
// the Table's Output, sent with OpOutput, freed on the reply) and the
// journal are the framework's.
//
// Each poll of the framework: a batch from each channel between
// Table.Hold and Table.Flush (segments go to Table.Input, socket requests
// to their methods), then Poll here: fire the Table's timers when
// NextTimeout has passed, then re-examine every socket with a blocked
// request (an OpAccept, OpConnect, OpRecvFrom, or an OpSendTo the send
// buffer had no room for) if anything may have changed — the listeners'
// and endpoints' SetNotify callbacks only set a flag. Asleep, the loop
// waits for a channel, the wiring, or the next timer.
//
// # Restart protocol
//
//  1. On every successful OpListen the process writes the listener's
//     [ListenerRecord] (socket id, address and port listened on, backlog)
//     to the store, namespace "tcp", key the socket id in decimal; closing
//     the socket (OpClose, OpReset) deletes it (servers/transport's
//     StoreJournal: writes never stall the loop).
//  2. A restarted tcp restores every record (store.Client.Restore) and
//     listens again — same socket ids, ports and backlogs — before it joins
//     the wiring and serves; a client's SYN arriving at once is answered.
//  3. Connections are kept (keep.go): the Table commits every changed
//     connection's record — its socket options (OpSetOption) included —
//     into the memory init keeps for tcp (StateName) at
//     the end of each poll, before the poll's segments and replies leave,
//     and the restarted tcp adopts them — after the listeners, whose queues
//     they may be in — and gives every connection a socket held its socket
//     (the same id) again. SYSCALL resubmits its unfinished operations;
//     they find their sockets and are answered idempotently (stream
//     offsets trim a resubmitted send and consume proven bytes; a
//     resubmitted accept names the same connection). A connection whose
//     record was bad is reset: its peer gets an RST, and an operation on
//     its socket, now unknown, StatusReset (OpBind, OpListen and OpAccept
//     on an unknown socket StatusNoSocket, OpClose StatusOK: it is gone
//     already). Sockets opened or bound but neither listening nor
//     connected are not kept.
//
// When a neighbour restarts instead, the framework's steps 3 and 4
// (servers/transport) apply:
//
//   - ip: every OpOutput, OpAddr and OpSource ip has not answered is resubmitted to
//     the new generation with new ids, and the new one is asked for our
//     address. Deliveries were answered as soon as the Table had taken
//     them, so tcp holds nothing in ip's old pool; it is released.
//     Connections live on: what was lost on the way is retransmitted.
//   - syscall: the requests its predecessor posted (accepts, receives,
//     held sends, connects, closes lingering for their connections to
//     drain) are dropped without a reply and its old
//     "syscall.io" pool is released, and bytes handed out to receives but
//     not proven received by a receive's stream offset are lent again
//     (Endpoint.Rewind). Sockets and connections stay: the applications
//     adopt them (OpAdopt) and reissue what had no reply, which
//     server_socket.go answers idempotently (stream offsets trim a
//     reissued send and consume proven bytes; a reissued accept names the
//     same connection).

// Names, as the component table gives them.
const (
	OutPool     = "tcp.out" // segments handed to IP
	IPPeer      = transport.IPPeer
	SyscallPeer = transport.SyscallPeer
)

// ServerOptions configure the process.
type ServerOptions struct {
	Name    string // the component, "tcp"
	IP      string // the IP component, "ip"
	Syscall string // the SYSCALL component, "syscall"
	Store   *store.Client
	// NoTSO: never use segmentation offload (checksum offload still).
	NoTSO bool
	// Grants: init grants us the applications' pools, and SYSCALL
	// forwards their buffers by reference (transport.Config.Grants).
	Grants bool
	// Nagle: connections start with Nagle's algorithm on. Without it they
	// start with it off (ops.OptNoDelay on), as Go's net starts every TCP
	// connection, so that an application sees the latency it would on
	// Linux; it may turn Nagle on per connection.
	Nagle bool
	// Config tunes the Table. Its Output is the framework; a nil Clock is
	// the real one; a zero ISNKey is drawn from crypto/rand.
	Config Config
}

// Stats is what the TCP server publishes for `keepnet stats tcp`.
type Stats struct {
	transport.Stats
	Sockets         int // SYSCALL's sockets
	Listeners       int
	Conns           int // the Table's connections, in any state
	PendingAccepts  int
	PendingConnects int
	PendingReceives int
	PendingSends    int // OpSendTo held for room in the send buffer
	LingeringCloses int // OpClose held for a connection to drain (ops.OptLinger)
	// The bounds (budget.go) and how full they are; Counters say how
	// often each refused.
	MaxConns     int
	TimeWait     int
	MaxTimeWait  int
	BufferBytes  int // charged to the budget
	BufferBudget int
	Counters
}

// realClock is the Clock of the process.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Serve runs the TCP server process until ctx ends: restore the listeners,
// join the wiring, serve (transport.Serve).
func Serve(ctx context.Context, o ServerOptions) error {
	if o.Name == "" {
		o.Name = "tcp"
	}
	c := transport.Config{Name: o.Name, IP: o.IP, Syscall: o.Syscall, Protocol: header.ProtocolTCP, Grants: o.Grants}
	return transport.Serve(ctx, c, o.Store, StoreNS, ParseRecord, func(h transport.Host, _ int, j Journal) transport.Core[ListenerRecord] {
		return newServer(h, o, j)
	})
}

// server is the core's state: the Table and SYSCALL's sockets on it. The
// framework's one goroutine runs it; nothing in it is shared.
type server struct {
	h       transport.Host
	noTSO   bool
	clock   Clock
	table   *Table
	journal Journal

	addr netip.Prefix // ours, from IP; invalid until it answers

	socks map[uint64]*sock  // by SYSCALL's id
	ports map[uint16]uint64 // ports bound or listened on, by socket
	// lingering are the OpCloses waiting for their connections to drain
	// (ops.OptLinger), oldest first.
	lingering []lingeringClose
	// ready are the sockets whose posted requests something may have
	// unblocked (a notify callback fired, a request came in): serve looks
	// at those only, so that thousands of idle connections cost nothing
	// per round. spare is the other half of a double buffer.
	ready, spare []*sock
	// dirty: something may have unblocked a posted request (a notify
	// callback fired, a request or segment came in, a timer ran).
	dirty bool
	// sources are the questions to IP about an active open's source
	// (localFor), each with its socket.
	sources *transport.SourceQuestions[*sock]
}

func newServer(h transport.Host, o ServerOptions, j Journal) *server {
	s := &server{h: h, noTSO: o.NoTSO, journal: j, socks: map[uint64]*sock{}, ports: map[uint16]uint64{}, sources: transport.NewSourceQuestions[*sock](h.AskSource)}
	cfg := o.Config
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.ISNKey == [32]byte{} {
		rand.Read(cfg.ISNKey[:]) // never fails (crypto/rand)
	}
	if cfg.Seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		cfg.Seed = binary.LittleEndian.Uint64(b[:])
	}
	cfg.Output = h
	cfg.NoDelay = !o.Nagle
	s.clock = cfg.Clock
	s.table = NewTable(cfg)
	return s
}

// mark notes that so's posted requests may be unblocked. It is the
// listeners' and endpoints' notify callback (never calling back into the
// Table).
func (s *server) mark(so *sock) {
	s.dirty = true
	if !so.queued {
		so.queued = true
		s.ready = append(s.ready, so)
	}
}

// notifier is so's notify callback.
func (s *server) notifier(so *sock) func() { return func() { s.mark(so) } }

// SetAddr takes our address and the device's offloads from IP.
func (s *server) SetAddr(p netip.Prefix, o transport.Offloads) {
	s.addr = p
	s.table.SetOffload(o.Checksum, o.TSO && !s.noTSO)
	for _, so := range s.socks {
		if so.connect != nil {
			s.mark(so) // it waited for our address
		}
	}
}

// Deliver hands a segment to the Table. It is never StatusNoPort: TCP
// answers with RST itself.
func (s *server) Deliver(seg []byte, src, dst netip.Addr) ops.Status {
	return s.DeliverECN(seg, src, dst, ops.ECNNotECT)
}

// DeliverECN is Deliver with the ECN codepoint of the segment's IP header
// (transport.ECNReceiver).
func (s *server) DeliverECN(seg []byte, src, dst netip.Addr, ecn uint8) ops.Status {
	s.table.InputECN(seg, src, dst, ecn) // the endpoint's notify marks its socket
	return ops.StatusOK
}

// DeliverVerified is DeliverECN of a segment whose checksum the device
// verified (transport.VerifiedReceiver).
func (s *server) DeliverVerified(seg []byte, src, dst netip.Addr, ecn uint8) ops.Status {
	s.table.InputVerified(seg, src, dst, ecn)
	return ops.StatusOK
}

// DeliverShared hands the Table a segment still in IP's buffer
// (transport.SharedReceiver): it copies the header, then the payload
// straight into the connection's receive buffer.
func (s *server) DeliverShared(shared []byte, src, dst netip.Addr, ecn uint8, verified bool) ops.Status {
	s.table.InputShared(shared, src, dst, ecn, verified)
	return ops.StatusOK
}

// DeliverError hands the Table an ICMP error about one of our segments.
func (s *server) DeliverError(e ops.ICMPError) {
	s.table.HandleICMP(ICMPError{Type: e.Type, Code: e.Code, MTU: e.MTU, Local: e.Local, Remote: e.Remote, Quote: e.Quote})
}

// Hold and Flush: one output per connection for a whole batch.
func (s *server) Hold()  { s.table.Hold() }
func (s *server) Flush() { s.table.Flush() }

// Poll runs due timers and serves the blocked requests.
func (s *server) Poll() (bool, time.Time) {
	if t := s.table.NextTimeout(); !t.IsZero() {
		if now := s.clock.Now(); !t.After(now) {
			s.table.Tick(now) // endpoints that fired notify
		}
	}
	var sourceDue time.Time
	if s.sources.Len() > 0 {
		sourceDue = s.expireSources()
	}
	s.serve()
	lingerEnd := s.serveLingering()
	s.table.Commit() // the recovery window (keep.go): before what this pass produced leaves
	var wake time.Time
	if t := earliest(earliest(s.table.NextTimeout(), lingerEnd), sourceDue); !t.IsZero() {
		wake = time.Now().Add(t.Sub(s.clock.Now())) // the Table's clock may be a fake
	}
	return s.dirty, wake // dirty: serve stopped early, go on at once
}

func (s *server) Stats(common transport.Stats) any {
	cfg := s.table.cfg
	st := Stats{Stats: common, Sockets: len(s.socks), Conns: s.table.Conns(), Counters: s.table.Counters(),
		MaxConns: cfg.MaxConns, TimeWait: s.table.TimeWait(), MaxTimeWait: cfg.MaxTimeWait,
		BufferBytes: s.table.BufferBytes(), BufferBudget: cfg.BufferBudget, LingeringCloses: len(s.lingering)}
	for _, so := range s.socks {
		if so.l != nil {
			st.Listeners++
		}
		if so.connect != nil {
			st.PendingConnects++
		}
		st.PendingAccepts += len(so.accepts)
		st.PendingReceives += len(so.recvs)
		st.PendingSends += len(so.sends)
	}
	return st
}

// Hooks are tcp's test hooks: HookPoison.
func (s *server) Hooks() []wiring.Hook {
	return []wiring.Hook{{Name: HookPoison, Run: s.table.Poison}}
}

var _ transport.Core[ListenerRecord] = (*server)(nil)
var _ transport.Hooked = (*server)(nil)
var _ transport.StreamSockets = (*server)(nil)
var _ transport.Auditor = (*server)(nil)
var _ transport.ErrorReceiver = (*server)(nil)
var _ transport.SourceReceiver = (*server)(nil)
