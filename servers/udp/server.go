package udp

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/store"
)

// The UDP server process: a Table between the SYSCALL server and IP, each
// over a kernel/channel channel, with its sockets' records in the store. This
// file is the process; the protocol logic is the Table.
//
// Pools: udp owns "udp.out" (segments it hands to IP: allocated, written,
// sent with OpOutput, freed on the reply). A message from a peer names a
// buffer of one of that peer's pools (IP's "ip.up" for OpDeliver, SYSCALL's
// "syscall.io" for OpSendTo payloads and OpRecvFrom buffers); the pool is
// found among the peer generation's pools by Ref.Pool, so a Ref of another
// generation or peer is refused (StatusInvalid), never followed.

// Names, as the component table gives them.
const (
	OutPool     = "udp.out" // segments handed to IP
	IPPeer      = "ip"
	SyscallPeer = "syscall"
)

// StatsNS and StatsKey are where the counters are published.
const (
	StatsNS  = "stats"
	StatsKey = "udp"
)

const (
	joinTimeout    = 10 * time.Second
	restoreTimeout = 5 * time.Second
	statsEvery     = time.Second
	addrRetry      = 100 * time.Millisecond
	batch          = 64
	// maxQueued bounds the messages waiting for room on one channel; past
	// it the loop stops taking requests from that peer (its replies are
	// what is waiting).
	maxQueued = 4096
	// maxDeferred bounds the sends held until IP tells our address.
	maxDeferred = 1024
)

// ServerOptions configure the process.
type ServerOptions struct {
	Name    string // the component, "udp"
	IP      string // the IP component, "ip"
	Syscall string // the SYSCALL component, "syscall"
	Store   *store.Client
	Limits  Limits // zero: DefaultLimits
}

// Stats is what the UDP server publishes for `keepnet stats udp`.
type Stats struct {
	Generation        int
	IPGeneration      int
	SyscallGeneration int
	Addr              string // ours, as IP told it
	Sockets           int
	QueuedBytes       int
	PostedReceives    int
	Outstanding       int    // requests IP has not answered
	OutPoolFree       int    // buffers of udp.out not handed to IP
	IPRefused         uint64 // OpOutputs IP answered with an error
	BadRequests       uint64 // requests with a bad Ref or op
	DroppedReceives   uint64 // receives dropped with their SYSCALL generation
	Counters
}

// Serve runs the UDP server process until ctx ends: restore the sockets,
// join the wiring, serve.
func Serve(ctx context.Context, o ServerOptions) error {
	if o.Name == "" {
		o.Name = "udp"
	}
	recs, err := LoadRecords(ctx, o.Store)
	if err != nil {
		log.Printf("restoring sockets: %v", err)
	}
	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	out := setup.Pools[OutPool]
	if out == nil {
		return fmt.Errorf("udp: init sent no %s pool", OutPool)
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
	n, errs := s.table.Restore(recs)
	for _, err := range errs {
		log.Printf("restoring sockets: %v", err)
	}
	log.Printf("generation %d: %d sockets restored", setup.Generation, n)

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

// LoadRecords reads the socket records of a previous generation from the
// store (store.Client.Restore, so the client replays them to a restarted
// store). Records it cannot read are deleted and reported.
func LoadRecords(ctx context.Context, c *store.Client) ([]Record, error) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	return store.RestoreRecords(ctx, c, StoreNS, ParseRecord)
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

// server is the process's state. One goroutine runs it.
type server struct {
	o       ServerOptions
	gen     int
	out     *pool.Pool
	table   *Table
	stats   func(Stats)
	release func(poolID uint32) // tells init a peer's old pool is not used any more

	ip, sys *peerLink // current generations; nil while absent
	in      []channel.Msg

	// toIP holds every request IP has not answered (OpOutput, OpAddr):
	// what is resubmitted, with new ids, to IP's next generation.
	toIP    *channel.Outstanding
	segment pool.Ref // the buffer the Table's last Buffer call took

	// posted are the OpRecvFrom requests the Table holds, by the tag
	// given to the Table (udp's own counter, not the peer's id).
	posted  map[uint64]channel.Msg
	nextTag uint64
	// deferred are OpSendTo requests held until IP tells our address.
	deferred []channel.Msg

	addrDue            time.Time // when to ask IP for our address again; zero: not needed
	ipRefused, badReqs uint64
	droppedRecvs       uint64
}

func newServer(o ServerOptions, gen int, out *pool.Pool, j Journal, stats func(Stats)) *server {
	if o.IP == "" {
		o.IP = IPPeer
	}
	if o.Syscall == "" {
		o.Syscall = SyscallPeer
	}
	s := &server{o: o, gen: gen, out: out, stats: stats, in: make([]channel.Msg, batch),
		posted: map[uint64]channel.Msg{}, release: func(uint32) {},
		// Ids only grow across our generations too.
		toIP: channel.NewOutstanding(out.Len()+16, uint64(gen)<<40)}
	seed := uint64(time.Now().UnixNano())
	s.table = New(s, s.complete, Options{Limits: o.Limits, Journal: j, Rand: rand.New(rand.NewPCG(seed, uint64(gen)))})
	return s
}

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
		// The previous generation is dead: its posted receives, deferred
		// sends and unsent replies go with it.
		old := s.sys
		n := s.table.DropReceives()
		s.droppedRecvs += uint64(n)
		clear(s.posted)
		s.deferred = nil
		s.sys = &peerLink{peer: p}
		s.retire(old)
		if old != nil {
			log.Printf("%s generation %d: %d receives of its predecessor dropped", p.Name, p.Generation, n)
		}
	default:
		log.Printf("ignoring a channel to %s", p.Name)
		p.Close()
	}
}

// retire closes a replaced generation's channel and pools: udp keeps no
// Ref into them (deliveries are answered at once; receives were dropped).
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

// Buffer is the Table's IPOutput: a buffer of udp.out.
func (s *server) Buffer(n int) []byte {
	if n > s.out.BufSize() {
		return nil
	}
	ref, ok := s.out.Alloc()
	if !ok {
		return nil
	}
	b, _ := s.out.Bytes(ref)
	s.segment = ref
	return b[:n]
}

// Output is the Table's IPOutput: an OpOutput request for the segment in
// the last Buffer. Without an IP it waits in toIP for the next one.
func (s *server) Output(seg []byte, dst netip.Addr) error {
	ref := s.segment
	s.segment = pool.Ref{}
	ref.Len = uint32(len(seg))
	m, err := s.toIP.Add(ops.Output(ref, dst, header.ProtocolUDP, 0))
	if err != nil {
		s.out.Free(ref)
		return err
	}
	if s.ip != nil {
		s.ip.queue = append(s.ip.queue, m)
	}
	return nil
}

// complete answers a RecvFrom the Table finished.
func (s *server) complete(c Completion) {
	m, ok := s.posted[c.Tag]
	if !ok {
		return
	}
	delete(s.posted, c.Tag)
	ops.SetStatus(&m, c.Status)
	m.Flags = c.Flags
	m.Ref.Len = uint32(c.Len)
	ops.PutAddr(&m, ops.AtArg0, c.Src)
	s.reply(m)
}

// reply queues an answer to SYSCALL.
func (s *server) reply(m channel.Msg) {
	if s.sys != nil {
		s.sys.queue = append(s.sys.queue, m)
	}
}

// run is the loop: move messages in batches, sleep when nothing moves.
func (s *server) run(ctx context.Context, src peerSource) error {
	var nextStats time.Time
	for ctx.Err() == nil {
		select {
		case p, ok := <-src.C:
			if !ok {
				return errors.New("udp: init closed the wiring socket")
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
			wake := nextStats
			if !s.addrDue.IsZero() && s.addrDue.Before(wake) {
				wake = s.addrDue
			}
			s.sleep(src, time.Until(wake))
		}
	}
	return nil
}

// poll moves requests and replies once on each channel; it reports whether
// anything moved.
func (s *server) poll() bool {
	work := false
	for _, l := range []*peerLink{s.ip, s.sys} {
		if l == nil {
			continue
		}
		port := l.peer.Port
		n := 0
		if len(l.queue) < maxQueued {
			n = port.Recv(s.in)
			for _, m := range s.in[:n] {
				if l == s.ip {
					s.fromIP(m)
				} else {
					s.fromSyscall(m)
				}
			}
		}
		work = work || n > 0
	}
	for _, l := range []*peerLink{s.ip, s.sys} { // after both: one may queue for the other
		if l != nil && len(l.queue) > 0 {
			sent := l.peer.Port.Send(l.queue...)
			l.queue = l.queue[sent:]
			work = work || sent > 0
		}
	}
	return work
}

// fromIP takes one message from IP: a delivery, or a reply to udp.
func (s *server) fromIP(m channel.Msg) {
	if ops.OpOf(m) == ops.OpDeliver {
		r := m
		if b, ok := s.ip.bytes(m.Ref); ok {
			ops.SetStatus(&r, s.table.Deliver(b))
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
		if ops.StatusOf(m) != ops.StatusOK {
			s.addrDue = time.Now().Add(addrRetry) // IP is not up yet
			return
		}
		p, _ := ops.AddrReply(m)
		if !p.IsValid() {
			s.addrDue = time.Now().Add(addrRetry)
			return
		}
		if p != s.table.Addr() {
			log.Printf("address %v", p)
		}
		s.table.SetAddr(p)
		deferred := s.deferred
		s.deferred = nil
		for _, d := range deferred {
			s.fromSyscall(d)
		}
	}
}

// fromSyscall serves one socket request; each gets exactly one reply
// (a RecvFrom's when the Table completes it).
func (s *server) fromSyscall(m channel.Msg) {
	r := m
	ops.SetStatus(&r, ops.StatusOK)
	id := m.Arg[0]
	switch ops.OpOf(m) {
	case ops.OpOpen:
		ops.SetStatus(&r, s.table.Open(id, ops.Network(m.Arg[1])))
	case ops.OpBind:
		a, st := ops.GetAddr4(m, ops.AtArg1)
		if st == ops.StatusOK {
			a, st = s.table.Bind(id, a)
		}
		ops.SetStatus(&r, st)
		ops.PutAddr(&r, ops.AtArg0, a)
	case ops.OpConnect:
		a, st := ops.GetAddr4(m, ops.AtArg1)
		if st == ops.StatusOK {
			a, st = s.table.Connect(id, a)
		}
		ops.SetStatus(&r, st)
		ops.PutAddr(&r, ops.AtArg0, a)
	case ops.OpSendTo:
		if !s.table.Addr().IsValid() && len(s.deferred) < maxDeferred {
			s.deferred = append(s.deferred, m) // until IP tells our address
			return
		}
		payload, ok := s.sys.bytes(m.Ref)
		if !ok {
			s.badReqs++
			ops.SetStatus(&r, ops.StatusInvalid)
			break
		}
		a, st := ops.GetAddr4(m, ops.AtArg1)
		if st == ops.StatusOK {
			a, st = s.table.SendTo(id, a, payload)
		}
		ops.SetStatus(&r, st)
		ops.PutAddr(&r, ops.AtArg0, a)
	case ops.OpRecvFrom:
		buf, ok := s.sys.bytes(m.Ref)
		if !ok {
			s.badReqs++
			ops.SetStatus(&r, ops.StatusInvalid)
			break
		}
		s.nextTag++
		s.posted[s.nextTag] = m
		s.table.RecvFrom(id, s.nextTag, buf) // may answer at once
		return
	case ops.OpClose:
		ops.SetStatus(&r, s.table.Close(id)) // posted receives are answered first
	case ops.OpReset:
		s.table.Reset()
	default:
		s.badReqs++
		ops.SetStatus(&r, ops.StatusInvalid)
	}
	s.reply(r)
}

func (s *server) publish() {
	if s.stats == nil {
		return
	}
	st := Stats{Generation: s.gen, Sockets: s.table.Sockets(), QueuedBytes: s.table.QueuedBytes(),
		PostedReceives: len(s.posted), Outstanding: s.toIP.Len(), OutPoolFree: s.out.Available(),
		IPRefused: s.ipRefused, BadRequests: s.badReqs, DroppedReceives: s.droppedRecvs, Counters: s.table.Counters()}
	if a := s.table.Addr(); a.IsValid() {
		st.Addr = a.String()
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
	if r := channel.WaitAny(ports, fds, d); len(r) > 0 && r[0] && src.Drain != nil {
		src.Drain()
	}
}

// StoreJournal is the process's Journal: a store.Writer on namespace
// StoreNS, so that the loop never waits for the store.
type StoreJournal struct{ w *store.Writer }

// NewStoreJournal starts a journal writing through c.
func NewStoreJournal(c *store.Client) *StoreJournal {
	return &StoreJournal{w: store.NewWriter(c, StoreNS)}
}

// Save queues r to be written.
func (j *StoreJournal) Save(r Record) {
	b, _ := r.MarshalBinary()
	j.w.Put(RecordKey(r.ID), b)
}

// Forget queues the deletion of socket id's record.
func (j *StoreJournal) Forget(id uint64) { j.w.Delete(RecordKey(id)) }

// Flush writes everything pending now; for tests.
func (j *StoreJournal) Flush() { j.w.Flush() }

// Close writes what is pending and stops the journal.
func (j *StoreJournal) Close() { j.w.Close() }

var _ Journal = (*StoreJournal)(nil)
var _ IPOutput = (*server)(nil)
