package transport

import (
	"fmt"
	"log"
	"net/netip"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
)

// The neighbours' names, as the component table gives them.
const (
	IPPeer      = "ip"
	SyscallPeer = "syscall"
)

const (
	addrRetry = 100 * time.Millisecond
	batch     = 64
	// maxQueued bounds the messages waiting for room on one channel; past
	// it the loop stops taking requests from that peer (its replies are
	// what is waiting).
	maxQueued = 4096
	// maxOverflow and maxOverflowBytes bound the segments held while every
	// buffer of the out pool is with IP; past them a segment is dropped
	// (TCP retransmits it; a UDP send fails).
	maxOverflow      = 4096
	maxOverflowBytes = 16 << 20
)

// Config is what a Server needs besides its core.
type Config struct {
	Name     string // the component ("udp")
	IP       string // the IP component; "" is IPPeer
	Syscall  string // the SYSCALL component; "" is SyscallPeer
	Protocol uint8  // the IP protocol number OpOutput asks for
	// Publish, if not nil, gets what Protocol.Stats returns, every second.
	Publish func(any)
	// Release tells init a neighbour's old pool is not used any more; nil
	// in tests.
	Release func(poolID uint32)
	// Kept is the memory init keeps for the process across its restarts,
	// by name (Host.Kept).
	Kept map[string][]byte
	// AuditAfter is how old an unanswered request must be before the
	// audit looks for it in the core (audit.go); 0 is DefaultAuditAfter.
	AuditAfter time.Duration
	// Grants: init grants this transport the applications' pools
	// (wiring.TypeGrant), and SYSCALL forwards their buffers by
	// reference. A reference into a pool neither SYSCALL's nor granted is
	// then answered StatusNoPool (SYSCALL copies instead) rather than
	// taken for a corruption.
	Grants bool
	// Stored, if not nil, is the journal's progress (Host.ReplyStored);
	// nil, a stored reply leaves at once.
	Stored Stored
}

// Stored is what the framework needs of the journal to hold an answer
// until the state it reports is in the store: the number of the latest
// change queued, and whether a change and all before it are written
// (store.Writer).
type Stored interface {
	Last() uint64
	Stored(n uint64) bool
}

// storedPoll is how often the loop looks whether held answers may leave:
// a store write takes a round trip through the store's process.
const storedPoll = time.Millisecond

// Stats are the framework's counters, embedded in every transport's.
type Stats struct {
	Generation        int
	IPGeneration      int
	SyscallGeneration int
	Addr              string // ours, as IP told it
	Outstanding       int    // requests IP has not answered
	OutPoolFree       int    // buffers of the out pool not handed to IP
	OutQueued         int    // segments waiting for a buffer
	OutDrops          uint64 // segments dropped: no buffer and the queue full
	OutCopied         uint64 // bytes of segments built aside and sent as copies in the out pool; one built in place (Output.Buffer) goes as it is
	IPRefused         uint64 // OpOutputs IP answered with an error
	InBadIP           uint64 // deliveries whose transport header offset is outside the datagram
	BadRequests       uint64 // requests with a bad Ref or op
	DroppedRequests   uint64 // requests dropped with their SYSCALL generation
	Grants            int    // applications whose pools we map (Config.Grants)
	NoPool            uint64 // requests answered StatusNoPool: a buffer in a pool not granted (yet)
	PoolDropped       uint64 // requests answered StatusClosed when their application's pool was unmapped
	Unanswered        int    // requests the core holds (an audited core's)
	Audited           uint64 // looks for an old request in the core (audit.go)
	HeldForStore      int    // answers waiting until what they report is in the store (Host.ReplyStored)
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

// Server is the process's state around its core. One goroutine runs it
// (kernel/loop); nothing in it is shared.
type Server struct {
	c      Config
	gen    int
	out    *pool.Pool
	proto  Protocol
	stream StreamSockets // proto's, or nil
	// auditor is proto's, or nil; unanswered are the requests it was
	// given and has not answered, by id, and auditDue when to look for
	// them next (audit.go).
	auditor    Auditor
	unanswered map[uint64]unanswered
	auditDue   time.Time
	audited    uint64

	ip, sys *peerLink // current generations; nil while absent
	in      []channel.Msg
	// seg is the private copy of the delivered segment being handled: IP's
	// buffer is memory another process maps, so the core parses the copy
	// and takes every field once.
	seg []byte

	// toIP holds every request IP has not answered (OpOutput, OpAddr):
	// what is resubmitted, with new ids, to IP's next generation.
	toIP *channel.Outstanding
	// lent is the buffer the last Buffer call lent, until Send, and
	// lentBuf its bytes.
	lent    pool.Ref
	lentBuf []byte
	// overflow are copied segments waiting for a buffer, oldest first;
	// spare are their old slices, for reuse.
	overflow      []heldSegment
	overflowBytes int // held in overflow
	spare         [][]byte

	addr     netip.Prefix // ours, from IP; invalid until it answers
	offloads Offloads
	addrDue  time.Time // when to ask IP for our address again; zero: not needed

	outDrops, ipRefused, badIP, badReqs, droppedReqs uint64
	// grants are the applications' pools we map (Config.Grants), by
	// application; noPool and poolDropped count Stats' NoPool and
	// PoolDropped.
	grants              map[string]*wiring.Peer
	noPool, poolDropped uint64
	outCopied           uint64 // Stats.OutCopied
	// held are answers that wait for the journal (Host.ReplyStored), in
	// the order they were given, each with the change it waits for.
	held []heldReply
}

// heldReply is an answer to SYSCALL waiting until change n is stored.
type heldReply struct {
	m channel.Msg
	n uint64
}

// heldSegment is a segment waiting for a buffer of the out pool.
type heldSegment struct {
	b        []byte
	src, dst netip.Addr
	o        Offload
}

// New is the framework of generation gen, sending through out, around the
// core newProtocol makes.
func New(c Config, gen int, out *pool.Pool, newProtocol func(Host) Protocol) *Server {
	if c.IP == "" {
		c.IP = IPPeer
	}
	if c.Syscall == "" {
		c.Syscall = SyscallPeer
	}
	if c.Release == nil {
		c.Release = func(uint32) {}
	}
	if c.AuditAfter <= 0 {
		c.AuditAfter = DefaultAuditAfter
	}
	s := &Server{c: c, gen: gen, out: out, in: make([]channel.Msg, batch), grants: map[string]*wiring.Peer{},
		// Ids only grow across our generations too.
		toIP: channel.NewOutstanding(out.Len()+16, uint64(gen)<<40)}
	s.proto = newProtocol(s)
	s.stream, _ = s.proto.(StreamSockets)
	if s.auditor, _ = s.proto.(Auditor); s.auditor != nil {
		s.unanswered = make(map[uint64]unanswered)
	}
	return s
}

// Attach starts talking to a (new generation of a) neighbour.
func (s *Server) Attach(p *wiring.Peer) {
	switch p.Name {
	case s.c.IP:
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
	case s.c.Syscall:
		// The previous generation is dead: its posted requests and unsent
		// replies go with it.
		old := s.sys
		n := s.proto.DropRequests()
		s.droppedReqs += uint64(n)
		clear(s.unanswered)
		s.held = s.held[:0]
		s.sys = &peerLink{peer: p}
		s.retire(old)
		if old != nil {
			log.Printf("%s generation %d: %d requests of its predecessor dropped", p.Name, p.Generation, n)
		}
	default:
		if p.Grant() && s.c.Grants {
			s.grant(p)
			return
		}
		log.Printf("ignoring a channel to %s", p.Name)
		p.Close()
	}
}

// grant maps the pools of an application's new generation, in place of
// its previous one's: the requests whose buffers are in those are
// answered first (the core holds no reference into them after), then
// they are unmapped and released.
func (s *Server) grant(p *wiring.Peer) {
	old := s.grants[p.Name]
	s.grants[p.Name] = p
	if old == nil {
		return
	}
	var n int
	if d, ok := s.proto.(PoolDropper); ok {
		for _, pl := range old.Pools {
			n += d.DropPool(pl.ID())
		}
	}
	s.poolDropped += uint64(n)
	old.Retire(s.c.Release)
	log.Printf("%s generation %d granted; %d requests into its predecessor's pools answered", p.Name, p.Generation, n)
}

// granted is the granted pool id, or nil.
func (s *Server) granted(id uint32) *pool.Pool {
	for _, g := range s.grants {
		if pl := g.Pool(id); pl != nil {
			return pl
		}
	}
	return nil
}

// withoutPool answers m StatusNoPool, and reports true, if its buffer is
// in a pool neither SYSCALL's nor granted, with grants on (Config.Grants).
func (s *Server) withoutPool(m channel.Msg) bool {
	if !s.c.Grants || m.Ref.IsZero() || s.sys == nil || s.sys.peer.Pool(m.Ref.Pool) != nil || s.granted(m.Ref.Pool) != nil {
		return false
	}
	s.noPool++
	r := m
	ops.SetStatus(&r, ops.StatusNoPool)
	r.Ref.Len = 0
	s.Reply(r)
	return true
}

// retire closes a replaced generation's channel and pools: the framework
// keeps no Ref into them (deliveries are answered at once; requests were
// dropped).
func (s *Server) retire(l *peerLink) {
	if l != nil {
		l.peer.Retire(s.c.Release)
	}
}

// askAddr queues an OpAddr request to IP.
func (s *Server) askAddr() {
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

// Poll is the loop's: take a batch from each channel, let the core run
// what is due, and send what is queued.
func (s *Server) Poll() (bool, time.Time) {
	work := false
	now := time.Now()
	for _, l := range [...]*peerLink{s.ip, s.sys} {
		if l == nil || len(l.queue) >= maxQueued {
			continue
		}
		n := l.peer.Port.Recv(s.in)
		if n == 0 {
			continue
		}
		s.proto.Hold() // one output per connection for the whole batch
		for _, m := range s.in[:n] {
			if l == s.ip {
				s.fromIP(m)
			} else {
				s.track(m, now)
				s.fromSyscall(m)
			}
		}
		s.proto.Flush()
		work = true
	}
	if !s.addrDue.IsZero() && now.After(s.addrDue) {
		s.askAddr()
	}
	busy, wake := s.proto.Poll()
	s.audit(now)
	s.flushOverflow()
	s.releaseStored()
	for _, l := range [...]*peerLink{s.ip, s.sys} { // after both: one may queue for the other
		if l == nil {
			continue
		}
		var sent int
		if l == s.ip {
			// Lazy replies (servers/ip): a delivery taken gives IP its
			// buffer back and need not wake it.
			l.queue, sent = channel.FlushLazyIf(l.peer.Port, l.queue, deliveredWell)
		} else {
			l.queue, sent = channel.Flush(l.peer.Port, l.queue)
		}
		work = work || sent > 0
	}
	if !s.addrDue.IsZero() && (wake.IsZero() || s.addrDue.Before(wake)) {
		wake = s.addrDue
	}
	if len(s.unanswered) > 0 && (wake.IsZero() || s.auditDue.Before(wake)) {
		wake = s.auditDue
	}
	if due := now.Add(storedPoll); len(s.held) > 0 && (wake.IsZero() || due.Before(wake)) {
		wake = due
	}
	return work || busy, wake
}

// AppendPorts is the loop's: the channels to sleep on. IP's answers to
// our OpOutputs, which it sends lazily (servers/ip, "Lazy replies"), need
// not wake us while we have buffers to spare.
func (s *Server) AppendPorts(dst []*channel.Endpoint) []*channel.Endpoint {
	if s.ip != nil {
		// Messages queued for a full channel wait for IP's replies,
		// lazy ones included: then they must wake us.
		s.ip.peer.Port.SetPatient(s.buffersToSpare() && len(s.ip.queue) == 0)
		dst = append(dst, s.ip.peer.Port)
	}
	if s.sys != nil {
		dst = append(dst, s.sys.peer.Port)
	}
	return dst
}

// fromIP takes one message from IP: a delivery, or a reply to us.
func (s *Server) fromIP(m channel.Msg) {
	switch ops.OpOf(m) {
	case ops.OpDeliver:
		s.ip.queue = append(s.ip.queue, s.deliver(m))
		return
	case ops.OpDeliverError:
		s.ip.queue = append(s.ip.queue, s.deliverError(m))
		return
	}
	req, ok := s.toIP.CompleteFrom(s.ip.peer.Port, m)
	if !ok {
		return // stale: answered already, or resubmitted
	}
	switch ops.OpOf(req) {
	case ops.OpOutput:
		s.out.MustFree(req.Ref)
		if ops.StatusOf(m) != ops.StatusOK {
			s.ipRefused++
		}
	case ops.OpAddr:
		s.setAddr(m)
	case ops.OpSource:
		if r, ok := s.proto.(SourceReceiver); ok {
			r.Source(req.Arg[3], ops.GetAddr(m, ops.AtArg0).IP(), ops.StatusOf(m))
		}
	}
}

// buffersToSpare reports whether the transport may sleep through IP's
// answers to its OpOutputs, which IP sends lazily: no segment waits for a
// buffer and a quarter of the out pool is free. Otherwise an answer,
// which frees a buffer, wakes it.
func (s *Server) buffersToSpare() bool {
	return len(s.overflow) == 0 && s.out.Plenty()
}

// deliveredWell reports whether m, to IP, is the answer to a delivery
// that went well: it only gives IP the buffer back. One that went wrong
// (no port: IP answers the sender with an ICMP error) wakes IP.
func deliveredWell(m channel.Msg) bool {
	return ops.OpOf(m) == ops.OpDeliver && ops.StatusOf(m) == ops.StatusOK
}

// deliver hands the core the segment of an OpDeliver and returns the
// reply: the datagram from src to dst, its transport header at offset off
// (servers/ops.Delivered), with its ECN codepoint to a core that takes it
// (ECNReceiver), and said verified to a core that can skip its checksum
// (VerifiedReceiver).
func (s *Server) deliver(m channel.Msg) channel.Msg {
	st := ops.StatusOK
	b, ok := s.ip.bytes(m.Ref)
	src, dst, off := ops.Delivered(m)
	switch {
	case !ok:
		s.badReqs++
		st = ops.StatusInvalid
	case off == 0 || off > len(b):
		s.badIP++
	case src.Is4() != dst.Is4():
		s.badIP++
	default:
		if r, ok := s.proto.(SharedReceiver); ok {
			st = r.DeliverShared(b[off:], src.IP(), dst.IP(), ops.DeliveredECN(m), ops.DeliveredVerified(m))
		} else if r, ok := s.proto.(VerifiedReceiver); ok && ops.DeliveredVerified(m) {
			st = r.DeliverVerified(s.private(b[off:]), src.IP(), dst.IP(), ops.DeliveredECN(m))
		} else if r, ok := s.proto.(ECNReceiver); ok {
			st = r.DeliverECN(s.private(b[off:]), src.IP(), dst.IP(), ops.DeliveredECN(m))
		} else {
			st = s.proto.Deliver(s.private(b[off:]), src.IP(), dst.IP())
		}
	}
	ops.SetStatus(&m, st)
	return m
}

// deliverError hands a core that takes them (ErrorReceiver) the ICMP
// error of an OpDeliverError, and returns the reply.
func (s *Server) deliverError(m channel.Msg) channel.Msg {
	st := ops.StatusOK
	b, ok := s.ip.bytes(m.Ref)
	_, _, off := ops.Delivered(m)
	er, wants := s.proto.(ErrorReceiver)
	switch {
	case !ok:
		s.badReqs++
		st = ops.StatusInvalid
	case !wants:
	default:
		if e, ok := ops.ICMPErrorOf(s.private(b), off); ok {
			er.DeliverError(e)
		} else {
			s.badIP++
		}
	}
	ops.SetStatus(&m, st)
	return m
}

// private copies a segment out of shared memory into s.seg.
func (s *Server) private(shared []byte) []byte {
	if cap(s.seg) < len(shared) {
		s.seg = make([]byte, len(shared))
	}
	return s.seg[:copy(s.seg[:len(shared)], shared)]
}

// setAddr takes IP's answer to OpAddr: our address and its offloads, or an
// error (IP is not up yet: ask again).
func (s *Server) setAddr(m channel.Msg) {
	p, offloads := ops.AddrReply(m)
	if ops.StatusOf(m) != ops.StatusOK || !p.IsValid() || !p.Addr().Is4() || p.Addr().IsUnspecified() {
		s.addrDue = time.Now().Add(addrRetry)
		return
	}
	o := Offloads{Checksum: offloads&ops.OffloadChecksum != 0, TSO: offloads&ops.OffloadTSO != 0}
	if p != s.addr || o != s.offloads {
		log.Printf("address %v; offloads: checksum %v, segmentation %v", p, o.Checksum, o.TSO)
	}
	s.addr, s.offloads = p, o
	s.proto.SetAddr(p, o)
}

// fromSyscall hands one socket request to the core's method for its
// operation.
func (s *Server) fromSyscall(m channel.Msg) {
	switch op := ops.OpOf(m); op {
	case ops.OpOpen:
		s.proto.Open(m)
	case ops.OpBind:
		s.proto.Bind(m)
	case ops.OpConnect:
		s.proto.Connect(m)
	case ops.OpSendTo:
		if !s.withoutPool(m) {
			s.proto.SendTo(m)
		}
	case ops.OpRecvFrom:
		if !s.withoutPool(m) {
			s.proto.RecvFrom(m)
		}
	case ops.OpClose:
		s.proto.Close(m)
	case ops.OpReset:
		s.proto.Reset(m)
	case ops.OpAdopt:
		s.proto.Adopt(m)
	case ops.OpCloseRange:
		s.proto.CloseRange(m)
	case ops.OpListen, ops.OpAccept, ops.OpShutdown, ops.OpSetOption:
		if s.stream == nil {
			s.Invalid(m)
			return
		}
		switch op {
		case ops.OpListen:
			s.stream.Listen(m)
		case ops.OpAccept:
			s.stream.Accept(m)
		case ops.OpShutdown:
			s.stream.Shutdown(m)
		default:
			s.stream.SetOption(m)
		}
	default:
		s.Invalid(m)
	}
}

// Reply is the Host's: an answer to SYSCALL, queued for its channel.
func (s *Server) Reply(m channel.Msg) {
	delete(s.unanswered, m.ID)
	if s.sys != nil {
		s.sys.queue = append(s.sys.queue, m)
	}
}

// ReplyStored is the Host's: an answer that leaves once every change the
// core has queued in the journal so far is in the store.
func (s *Server) ReplyStored(m channel.Msg) {
	if s.c.Stored == nil {
		s.Reply(m)
		return
	}
	delete(s.unanswered, m.ID) // answered: the framework, not the core, holds it now
	s.held = append(s.held, heldReply{m: m, n: s.c.Stored.Last()})
}

// releaseStored queues the held answers whose changes are stored. They
// wait for changes in the order they were given, so the first one still
// waiting stops the rest.
func (s *Server) releaseStored() {
	i := 0
	for ; i < len(s.held) && s.c.Stored.Stored(s.held[i].n); i++ {
		s.Reply(s.held[i].m)
	}
	s.held = append(s.held[:0], s.held[i:]...)
}

// Invalid is the Host's: m answered StatusInvalid, a bad request.
func (s *Server) Invalid(m channel.Msg) {
	s.badReqs++
	ops.SetStatus(&m, ops.StatusInvalid)
	if ops.OpOf(m) == ops.OpRecvFrom {
		m.Ref.Len = 0
	}
	s.Reply(m)
}

// AskSource is the Host's: an OpSource to IP, kept with the OpOutputs in
// toIP, so that IP's next generation is asked again if this one dies
// first.
func (s *Server) AskSource(dst netip.Addr, key uint64) bool {
	m, err := s.toIP.Add(ops.Source(dst, key))
	if err != nil {
		return false
	}
	if s.ip != nil {
		s.ip.queue = append(s.ip.queue, m)
	}
	return true
}

// Kept is the Host's.
func (s *Server) Kept(name string) []byte { return s.c.Kept[name] }

// SyscallBytes is the Host's: a buffer of SYSCALL's current generation;
// false for no buffer (a zero Ref, which an application may send: a
// readiness receive on a datagram socket is its mistake, refused).
//
// A reference from SYSCALL that names none of its buffers is not an
// application's mistake (SYSCALL checks theirs, and its own before it
// sends: syscallsrv's request): SYSCALL and we disagree about shared
// memory, so one of us is corrupt. The process stops, as a fail-stop
// component would have: our restart is transparent and clears a corruption
// of ours, while refusing would break the connection whose request it was,
// and every later one (issue 13: a wrong-buffer fault in tcp's postIO).
func (s *Server) SyscallBytes(ref pool.Ref) ([]byte, bool) {
	if s.sys == nil || ref.IsZero() {
		s.badReqs++
		return nil, false
	}
	b, ok := s.sys.bytes(ref)
	if pl := s.granted(ref.Pool); !ok && pl != nil {
		var err error
		b, err = pl.Bytes(ref)
		ok = err == nil
	}
	if !ok {
		panic(fmt.Sprintf("%s: a request from %s names %v, none of its buffers: one of us is corrupt", s.c.Name, s.sys.peer.Name, ref))
	}
	return b, ok
}

// Publish hands the core's and the framework's counters to Config.Publish.
func (s *Server) Publish() {
	if s.c.Publish == nil {
		return
	}
	st := Stats{Generation: s.gen, Outstanding: s.toIP.Len(), OutPoolFree: s.out.Available(),
		OutQueued: len(s.overflow), OutDrops: s.outDrops, OutCopied: s.outCopied, IPRefused: s.ipRefused, InBadIP: s.badIP,
		BadRequests: s.badReqs, DroppedRequests: s.droppedReqs, Unanswered: len(s.unanswered), Audited: s.audited, HeldForStore: len(s.held),
		Grants: len(s.grants), NoPool: s.noPool, PoolDropped: s.poolDropped}
	if s.addr.IsValid() {
		st.Addr = s.addr.String()
	}
	if s.ip != nil {
		st.IPGeneration = s.ip.peer.Generation
	}
	if s.sys != nil {
		st.SyscallGeneration = s.sys.peer.Generation
	}
	s.c.Publish(s.proto.Stats(st))
}
