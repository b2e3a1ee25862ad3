package tcp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/store"
)

// The TCP server process: a Table between the SYSCALL server and IP, each
// over a kernel/channel channel, with its listeners' records in the store.
// This file is the process (the loop, the IP side); server_socket.go is the
// socket side (servers/ops's stream operations), server_store.go what is
// kept in the store. The protocol logic is the Table.
//
// Pools: tcp owns "tcp.out" (segments it hands to IP: allocated, copied
// into from the Table's Output, sent with OpOutput, freed on the reply).
// A message from a peer names a buffer of one of that peer's pools (IP's
// "ip.up" for OpDeliver, SYSCALL's "syscall.io" for OpSendTo payloads and
// OpRecvFrom buffers); the pool is found among the peer generation's pools
// by Ref.Pool, so a Ref of another generation or peer is refused
// (StatusInvalid), never followed.
//
// The loop: take a batch from each channel (segments go to Table.Input,
// socket requests to the socket layer), fire the Table's timers when
// NextTimeout has passed, then re-examine every socket with a blocked
// request (an OpAccept, OpConnect, OpRecvFrom, or an OpSendTo the send
// buffer had no room for) if anything may have changed — the listeners'
// and endpoints' SetNotify callbacks only set a flag —, and send what was
// queued. Asleep, it waits in channel.WaitAny for a channel, the wiring,
// or the next timer.
//
// # Restart protocol
//
//  1. On every successful OpListen the process writes the listener's
//     [ListenerRecord] (socket id, address and port listened on, backlog)
//     to the store, namespace "tcp", key the socket id in decimal; closing
//     the socket (OpClose, OpReset) deletes it. Writes go through a
//     goroutine so that a slow store never stalls the loop.
//  2. A restarted tcp restores every record (store.Client.Restore) and
//     listens again — same socket ids, ports and backlogs — before it joins
//     the wiring and serves; a client's SYN arriving at once is answered.
//  3. Connections are not kept (the NewtOS paper's behaviour: TCP state
//     changes with every segment). SYSCALL reissues its unfinished
//     operations with new ids; an OpAccept on a restored listener is simply
//     posted again; a stream operation (OpConnect, OpSendTo, OpRecvFrom,
//     OpShutdown) on a socket the new generation does not know is answered
//     StatusReset — that connection was reset by the crash —, OpBind,
//     OpListen and OpAccept on an unknown socket StatusNoSocket, OpClose of
//     one StatusOK (it is gone already). The peers of lost connections get
//     an RST for their next segment (nothing matches it).
//
// When a neighbour restarts instead:
//
//   - ip: every OpOutput and OpAddr ip has not answered is resubmitted to
//     the new generation with new ids (kernel/channel.Outstanding), and the new
//     one is asked for our address. Deliveries were answered as soon as the
//     Table had taken them, so tcp holds nothing in ip's old pool; it
//     unmaps it and tells init (wiring.TypeRelease). Connections live on:
//     what was lost on the way is retransmitted.
//   - syscall: the requests its predecessor posted (accepts, receives,
//     held sends, connects) are dropped without a reply and its old
//     "syscall.io" pool is released. Sockets stay: the new SYSCALL server
//     closes them all with OpReset.

// Names, as the component table gives them.
const (
	OutPool     = "tcp.out" // segments handed to IP
	IPPeer      = "ip"
	SyscallPeer = "syscall"
)

// StatsNS and StatsKey are where the counters are published.
const (
	StatsNS  = "stats"
	StatsKey = "tcp"
)

const (
	joinTimeout    = 10 * time.Second
	restoreTimeout = 5 * time.Second
	statsEvery     = time.Second
	addrRetry      = 100 * time.Millisecond
	batch          = 64
	// maxQueued bounds the messages waiting for room on one channel; past
	// it the loop stops taking requests from that peer.
	maxQueued = 4096
	// maxOverflow bounds the segments held while every tcp.out buffer is
	// with IP: the Table sends a whole window in one call. Past it a
	// segment is dropped (and retransmitted by TCP later).
	maxOverflow = 4096
)

// ServerOptions configure the process.
type ServerOptions struct {
	Name    string // the component, "tcp"
	IP      string // the IP component, "ip"
	Syscall string // the SYSCALL component, "syscall"
	Store   *store.Client
	// NoTSO: never use segmentation offload (checksum offload still).
	NoTSO bool
	// Config tunes the Table. Its Output is the process; a nil Clock is
	// the real one; a zero ISNKey is drawn from crypto/rand.
	Config Config
}

// Stats is what the TCP server publishes for `keepnet stats tcp`.
type Stats struct {
	Generation        int
	IPGeneration      int
	SyscallGeneration int
	Addr              string // ours, as IP told it
	Sockets           int    // SYSCALL's sockets
	Listeners         int
	Conns             int // the Table's connections, in any state
	PendingAccepts    int
	PendingConnects   int
	PendingReceives   int
	PendingSends      int    // OpSendTo held for room in the send buffer
	Outstanding       int    // requests IP has not answered
	OutPoolFree       int    // buffers of tcp.out not handed to IP
	OutQueued         int    // segments waiting for a tcp.out buffer
	OutDrops          uint64 // segments dropped: no buffer and the queue full
	IPRefused         uint64 // OpOutputs IP answered with an error
	InBadIP           uint64 // deliveries that were not a whole IPv4 TCP datagram
	BadRequests       uint64 // requests with a bad Ref or op
	DroppedRequests   uint64 // requests dropped with their SYSCALL generation
	Counters
}

// realClock is the Clock of the process.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Serve runs the TCP server process until ctx ends: restore the listeners,
// join the wiring, serve.
func Serve(ctx context.Context, o ServerOptions) error {
	if o.Name == "" {
		o.Name = "tcp"
	}
	recs, err := LoadListeners(ctx, o.Store)
	if err != nil {
		log.Printf("restoring listeners: %v", err)
	}
	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	out := setup.Pools[OutPool]
	if out == nil {
		return fmt.Errorf("tcp: init sent no %s pool", OutPool)
	}
	journal := NewStoreJournal(o.Store)
	defer journal.Close()
	pub := store.NewPublisher(o.Store, StatsNS, StatsKey)
	defer pub.Close()

	s := newServer(o, setup.Generation, out, journal, func(st Stats) { pub.Publish(st) })
	s.release = func(id uint32) {
		if err := conn.Send(wiring.Message{Type: wiring.TypeRelease, Pool: &wiring.PoolInfo{ID: id}}); err != nil {
			log.Printf("releasing pool %d: %v", id, err)
		}
	}
	n, errs := s.restore(recs)
	for _, err := range errs {
		log.Printf("restoring listeners: %v", err)
	}
	log.Printf("generation %d: %d listeners restored", setup.Generation, n)

	watch, err := wiring.Watch(conn)
	if err != nil {
		return err
	}
	defer watch.Close()
	defer conn.Close() // ends the watcher
	for _, p := range setup.Peers {
		s.attach(p)
	}
	if err := conn.Send(wiring.Message{Type: wiring.TypeUp}); err != nil {
		log.Printf("wiring: %v", err)
	}
	return s.run(ctx, peerSource{C: watch.C, Fd: watch.Fd(), Drain: watch.Drain})
}

// peerSource is where new peer generations come from: the wiring watcher,
// or a test. Fd (if not negative) is readable while C has some; Drain (if
// not nil) resets it.
type peerSource struct {
	C     <-chan *wiring.Peer
	Fd    int
	Drain func()
}

// peerLink is the channel to one neighbour's current generation.
type peerLink struct {
	peer  *wiring.Peer
	queue []channel.Msg // messages the channel had no room for yet
}

// bytes are what a Ref the peer sent names, in one of its pools.
func (l *peerLink) bytes(ref pool.Ref) ([]byte, bool) {
	p := l.peer.Pool(ref.Pool)
	if p == nil {
		return nil, false
	}
	b, err := p.Bytes(ref)
	return b, err == nil
}

// heldSegment is a segment waiting for a tcp.out buffer.
type heldSegment struct {
	b       []byte
	dst     netip.Addr
	offload uint64 // OpOutput's Arg[3]
}

// server is the process's state. One goroutine runs it; nothing in it is
// shared.
type server struct {
	o       ServerOptions
	gen     int
	clock   Clock
	out     *pool.Pool
	table   *Table
	journal Journal
	stats   func(Stats)
	release func(poolID uint32) // tells init a peer's old pool is not used any more

	ip, sys *peerLink // current generations; nil while absent
	in      []channel.Msg

	// toIP holds every request IP has not answered (OpOutput, OpAddr):
	// what is resubmitted, with new ids, to IP's next generation.
	toIP *channel.Outstanding
	// overflow are segments the Table sent while tcp.out was exhausted,
	// oldest first; spare are their old slices, for reuse.
	overflow []heldSegment
	spare    [][]byte

	addr    netip.Prefix // ours, from IP; invalid until it answers
	addrDue time.Time    // when to ask IP for our address again; zero: not needed
	// offChecksum and offTSO are the offloads IP offered with the address.
	offChecksum, offTSO bool

	socks map[uint64]*sock  // by SYSCALL's id
	ports map[uint16]uint64 // ports bound or listened on, by socket
	// dirty: something may have unblocked a posted request (a notify
	// callback fired, a request or segment came in, a timer ran).
	dirty bool

	outDrops, ipRefused, badIP, badReqs, droppedReqs uint64
}

func newServer(o ServerOptions, gen int, out *pool.Pool, j Journal, stats func(Stats)) *server {
	if o.IP == "" {
		o.IP = IPPeer
	}
	if o.Syscall == "" {
		o.Syscall = SyscallPeer
	}
	s := &server{o: o, gen: gen, out: out, journal: j, stats: stats, in: make([]channel.Msg, batch),
		release: func(uint32) {},
		// Ids only grow across our generations too.
		toIP:  channel.NewOutstanding(out.Len()+16, uint64(gen)<<40),
		socks: map[uint64]*sock{}, ports: map[uint16]uint64{}}
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
	cfg.Output = s
	s.clock = cfg.Clock
	s.table = NewTable(cfg)
	return s
}

// markDirty is the listeners' and endpoints' notify callback: it never
// calls back into the Table.
func (s *server) markDirty() { s.dirty = true }

// attach starts talking to a (new generation of a) neighbour.
func (s *server) attach(p *wiring.Peer) {
	switch p.Name {
	case s.o.IP:
		// Resubmit what the previous generation left unanswered, and make
		// sure the new one is asked for our address.
		old := s.ip
		s.ip = &peerLink{peer: p, queue: s.toIP.Resubmit()}
		resent := len(s.ip.queue)
		asking := false
		for _, m := range s.ip.queue {
			asking = asking || ops.OpOf(m) == ops.OpAddr
		}
		if !asking {
			s.askAddr()
		}
		s.retire(old)
		log.Printf("%s generation %d: %d requests resubmitted", p.Name, p.Generation, resent)
	case s.o.Syscall:
		// The previous generation is dead: its posted requests and unsent
		// replies go with it.
		old := s.sys
		n := s.dropRequests()
		s.droppedReqs += uint64(n)
		s.sys = &peerLink{peer: p}
		s.retire(old)
		if old != nil {
			log.Printf("%s generation %d: %d requests of its predecessor dropped", p.Name, p.Generation, n)
		}
	default:
		log.Printf("ignoring a channel to %s", p.Name)
		p.Close()
	}
}

// retire closes a replaced generation's channel and pools: tcp keeps no
// Ref into them (deliveries are answered at once; requests were dropped).
func (s *server) retire(l *peerLink) {
	if l == nil {
		return
	}
	ids := make([]uint32, 0, len(l.peer.Pools))
	for _, p := range l.peer.Pools {
		ids = append(ids, p.ID())
	}
	l.peer.Close()
	for _, id := range ids {
		s.release(id)
	}
}

// askAddr queues an OpAddr request to IP.
func (s *server) askAddr() {
	s.addrDue = time.Time{}
	m, err := s.toIP.Add(ops.OpAddr.Msg())
	if err != nil {
		s.addrDue = time.Now().Add(addrRetry)
		return
	}
	if s.ip != nil {
		s.ip.queue = append(s.ip.queue, m)
	}
}

// Send is the Table's Output: the segment is copied into a tcp.out buffer
// and handed to IP with OpOutput (without an IP, it waits in toIP for the
// next one). While tcp.out is exhausted segments wait in order in the
// overflow queue.
func (s *server) Send(seg []byte, _, dst netip.Addr) { s.send(seg, dst, 0) }

// SendOffload is the Table's OffloadOutput: Send, asking IP to have the
// device fill in the checksum and, with tso, cut the segment at that MSS.
func (s *server) SendOffload(seg []byte, _, dst netip.Addr, tso int) {
	arg := ops.OffloadChecksum
	if tso > 0 {
		arg = ops.TSOArg(tso)
	}
	s.send(seg, dst, arg)
}

func (s *server) send(seg []byte, dst netip.Addr, offload uint64) {
	if len(s.overflow) == 0 && s.output(seg, dst, offload) {
		return
	}
	if len(s.overflow) >= maxOverflow {
		s.outDrops++
		return
	}
	var b []byte
	if n := len(s.spare); n > 0 {
		b, s.spare = s.spare[n-1][:0], s.spare[:n-1]
	}
	s.overflow = append(s.overflow, heldSegment{append(b, seg...), dst, offload})
}

// output sends seg to IP in a tcp.out buffer; false if there is none.
func (s *server) output(seg []byte, dst netip.Addr, offload uint64) bool {
	if len(seg) > s.out.BufSize() {
		s.outDrops++ // cannot happen with 64 KiB buffers
		return true
	}
	ref, ok := s.out.Alloc()
	if !ok {
		return false
	}
	b, _ := s.out.Bytes(ref)
	ref.Len = uint32(copy(b, seg))
	m, err := s.toIP.Add(ops.Output(ref, dst, header.ProtocolTCP, offload))
	if err != nil {
		s.out.Free(ref)
		return false
	}
	if s.ip != nil {
		s.ip.queue = append(s.ip.queue, m)
	}
	return true
}

// flushOverflow hands held segments to IP as buffers come back.
func (s *server) flushOverflow() {
	n := 0
	for n < len(s.overflow) && s.output(s.overflow[n].b, s.overflow[n].dst, s.overflow[n].offload) {
		s.spare = append(s.spare, s.overflow[n].b)
		s.overflow[n] = heldSegment{}
		n++
	}
	if n > 0 {
		s.overflow = append(s.overflow[:0], s.overflow[n:]...)
	}
}

// reply queues an answer to SYSCALL.
func (s *server) reply(m channel.Msg) {
	if s.sys != nil {
		s.sys.queue = append(s.sys.queue, m)
	}
}

// run is the loop: move messages in batches, run timers, sleep when
// nothing moves.
func (s *server) run(ctx context.Context, src peerSource) error {
	var nextStats time.Time
	for ctx.Err() == nil {
		select {
		case p, ok := <-src.C:
			if !ok {
				return errors.New("tcp: init closed the wiring socket")
			}
			s.attach(p)
			continue
		default:
		}
		work := s.poll()
		now := time.Now()
		if !s.addrDue.IsZero() && now.After(s.addrDue) {
			s.askAddr()
		}
		if now.After(nextStats) {
			s.publish()
			nextStats = now.Add(statsEvery)
		}
		if !work {
			d := time.Until(nextStats)
			if !s.addrDue.IsZero() {
				d = min(d, time.Until(s.addrDue))
			}
			if t := s.table.NextTimeout(); !t.IsZero() {
				d = min(d, t.Sub(s.clock.Now()))
			}
			s.sleep(src, d)
		}
	}
	return nil
}

// poll moves requests once on each channel, runs due timers, serves the
// blocked requests and sends what is queued; it reports whether anything
// moved.
func (s *server) poll() bool {
	work := false
	for _, l := range []*peerLink{s.ip, s.sys} {
		if l == nil || len(l.queue) >= maxQueued {
			continue
		}
		n := l.peer.Port.Recv(s.in)
		s.table.Hold() // one output per connection for the whole batch
		for _, m := range s.in[:n] {
			if l == s.ip {
				s.fromIP(m)
			} else {
				s.fromSyscall(m)
			}
		}
		s.table.Flush()
		work = work || n > 0
	}
	if t := s.table.NextTimeout(); !t.IsZero() {
		if now := s.clock.Now(); !t.After(now) {
			s.table.Tick(now)
			s.dirty = true
		}
	}
	s.serve()
	s.flushOverflow()
	for _, l := range []*peerLink{s.ip, s.sys} { // after both: one may queue for the other
		if l != nil && len(l.queue) > 0 {
			sent := l.peer.Port.Send(l.queue...)
			l.queue = l.queue[sent:]
			work = work || sent > 0
		}
	}
	return work || s.dirty // serve stopped early: go on at once
}

// fromIP takes one message from IP: a delivery, or a reply to tcp.
func (s *server) fromIP(m channel.Msg) {
	if ops.OpOf(m) == ops.OpDeliver {
		r := m
		ops.SetStatus(&r, ops.StatusOK) // never StatusNoPort: TCP answers with RST itself
		if b, ok := s.ip.bytes(m.Ref); ok {
			s.deliver(b)
		} else {
			s.badReqs++
			ops.SetStatus(&r, ops.StatusInvalid)
		}
		s.ip.queue = append(s.ip.queue, r)
		return
	}
	req, ok := s.toIP.Complete(m)
	if !ok {
		return // stale: answered already, or resubmitted
	}
	switch ops.OpOf(req) {
	case ops.OpOutput:
		s.out.Free(req.Ref)
		if ops.StatusOf(m) != ops.StatusOK {
			s.ipRefused++
		}
	case ops.OpAddr:
		p, offloads := ops.AddrReply(m)
		if ops.StatusOf(m) != ops.StatusOK || !p.IsValid() || p.Addr().IsUnspecified() {
			s.addrDue = time.Now().Add(addrRetry) // IP is not up yet
			return
		}
		checksum, tso := offloads&ops.OffloadChecksum != 0, offloads&ops.OffloadTSO != 0 && !s.o.NoTSO
		if p != s.addr || checksum != s.offChecksum || tso != s.offTSO {
			log.Printf("address %v; offloads: checksum %v, segmentation %v", p, checksum, tso)
		}
		s.addr = p
		s.offChecksum, s.offTSO = checksum, tso
		s.table.SetOffload(checksum, tso)
		s.dirty = true // connects may wait for it
	}
}

// deliver hands the TCP segment of a whole IPv4 datagram to the Table.
func (s *server) deliver(pkt []byte) {
	// IP validated the header; a reassembled one may carry a stale header
	// checksum, which is the last thing ValidateIPv4 checks.
	if err := header.ValidateIPv4(pkt); err != nil && !errors.Is(err, header.ErrBadChecksum) {
		s.badIP++
		return
	}
	ip := header.IPv4(pkt)
	if ip.Protocol() != header.ProtocolTCP || ip.IsFragment() {
		s.badIP++
		return
	}
	s.table.Input(ip.Payload(), ip.Src(), ip.Dst())
	s.dirty = true
}

func (s *server) publish() {
	if s.stats == nil {
		return
	}
	st := Stats{Generation: s.gen, Sockets: len(s.socks), Conns: s.table.Conns(),
		Outstanding: s.toIP.Len(), OutPoolFree: s.out.Available(), OutQueued: len(s.overflow),
		OutDrops: s.outDrops, IPRefused: s.ipRefused, InBadIP: s.badIP, BadRequests: s.badReqs,
		DroppedRequests: s.droppedReqs, Counters: s.table.Counters()}
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
	if s.addr.IsValid() {
		st.Addr = s.addr.String()
	}
	if s.ip != nil {
		st.IPGeneration = s.ip.peer.Generation
	}
	if s.sys != nil {
		st.SyscallGeneration = s.sys.peer.Generation
	}
	s.stats(st)
}

// sleep waits for a neighbour, the wiring or the deadline.
func (s *server) sleep(src peerSource, d time.Duration) {
	var ports []*channel.Endpoint
	for _, l := range []*peerLink{s.ip, s.sys} {
		if l != nil {
			ports = append(ports, l.peer.Port)
		}
	}
	var fds []int
	if src.Fd >= 0 {
		fds = []int{src.Fd}
	} else {
		d = min(d, time.Millisecond) // an in-process source has no descriptor
	}
	if r := channel.WaitAny(ports, fds, max(d, 0)); len(r) > 0 && r[0] && src.Drain != nil {
		src.Drain()
	}
}

var _ Output = (*server)(nil)
