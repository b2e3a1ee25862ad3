package udp

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
)

// Journal is where the Table reports the state that survives a restart
// (see the package doc's restart protocol): Save after a socket opens,
// binds or connects, Forget after it closes.
type Journal = transport.Journal[Record]

// Completion answers one RecvFrom.
type Completion struct {
	Tag    uint64     // the RecvFrom's tag
	Len    int        // bytes copied into its buffer
	Src    ops.Addr   // the datagram's source
	Flags  uint16     // ops.FlagTruncated if the datagram was cut to the buffer
	Status ops.Status // ops.StatusOK, StatusClosed, StatusNoSocket, StatusError
}

// Limits bound what the Table holds for readers that do not read.
type Limits struct {
	QueueDatagrams int // per socket
	QueueBytes     int // per socket, charged as in QueuedBytes
	TotalBytes     int // across all sockets
	PostedReceives int // RecvFroms waiting per socket
	Sockets        int
}

// DefaultLimits fit the appliance: a flood to a socket nobody reads costs
// at most 1 MiB, all of them together 16 MiB. A socket holds up to 4,096
// datagrams (within its bytes): a reader that the host does not schedule
// for a second or two (a TCG guest beside a busy job) must not lose a
// stream of a few hundred datagrams a second; 256 lost 472 of a 200/s
// stream to a 1.6 s stall.
var DefaultLimits = Limits{
	QueueDatagrams: 4096,
	QueueBytes:     1 << 20,
	TotalBytes:     16 << 20,
	PostedReceives: 1024,
	Sockets:        1 << 16,
}

// datagramOverhead is what a queued datagram is charged beyond its data,
// so that a flood of empty datagrams is bounded too.
const datagramOverhead = 64

// Ephemeral ports (RFC 6335 §6: the dynamic range).
const (
	EphemeralFirst = 49152
	EphemeralLast  = 65535
)

// Counters are the Table's statistics.
type Counters struct {
	InDatagrams   uint64 // delivered to a socket (queued or straight into a receive)
	InBytes       uint64 // their payload bytes
	InTruncated   uint64 // drop: shorter than the UDP header or its Length
	InBadLength   uint64 // drop: Length below the header size
	InBadChecksum uint64 // drop: checksum does not verify
	InVerified    uint64 // taken without computing the checksum: the device verified it (DeliverVerified)
	InNoPort      uint64 // drop: nobody listens (ICMP port unreachable if unicast)
	InQuietDrops  uint64 // drop: to a port a Reset just freed, silently (see Reset)
	InQueueDrops  uint64 // drop: the socket's or the global queue was full
	InTruncations uint64 // delivered cut to a receive buffer
	OutDatagrams  uint64 // handed to IP
	OutBytes      uint64 // their payload bytes
	OutErrors     uint64 // sends the Output refused (its queue for buffers full)
	ICMPIn        uint64 // ICMP errors ip delivered (icmp.go)
	ICMPIgnored   uint64 // of those, not about a connected socket, or not hard
	ICMPRefused   uint64 // of those, reported to a connected socket as refused
}

// socket is one UDP socket.
type socket struct {
	id     uint64
	local  ops.Addr // port 0: unbound
	peer   ops.Addr // 0: not connected
	queue  []datagram
	qbytes int       // charged bytes in queue
	posted []receive // RecvFroms waiting, oldest first
	// err is an ICMP error for the next receive or send (icmp.go);
	// StatusOK: none. Not kept across a restart.
	err ops.Status
}

func (s *socket) bound() bool { return s.local.Port() != 0 }

type datagram struct {
	src  ops.Addr
	data []byte
}

type receive struct {
	tag uint64
	buf []byte
}

// Options configure a Table.
type Options struct {
	Limits  Limits           // zero: DefaultLimits
	Journal Journal          // nil: nothing is persisted
	Rand    *rand.Rand       // where the ephemeral port search starts; nil: a fixed seed
	Now     func() time.Time // the clock for quiet ports; nil: time.Now
}

// QuietAfterReset is how long a port freed by Reset drops datagrams
// silently instead of answering ICMP port unreachable.
const QuietAfterReset = 3 * time.Second

// Table is the UDP protocol logic: every socket of the appliance. It is not
// safe for concurrent use; it belongs to the process's loop.
type Table struct {
	out     transport.Output
	done    func(Completion)
	journal Journal
	limits  Limits
	rand    *rand.Rand

	now func() time.Time
	// quiet holds the ports a Reset freed, until when they stay quiet.
	quiet map[uint16]time.Time

	addr netip.Prefix // ours, from IP (OpAddr); invalid until known
	// csumOffload: IP checksums what we send (SetChecksumOffload).
	csumOffload bool
	socks       map[uint64]*socket // by id
	ports       map[uint16]*socket // bound sockets by local port
	queued      int                // bytes charged across all sockets
	c           Counters
	// spare is where a datagram is built when the Output lends no buffer.
	spare []byte
}

// New returns an empty Table sending through out. done receives the answer
// to every RecvFrom, exactly once (unless DropReceives drops it).
func New(out transport.Output, done func(Completion), o Options) *Table {
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(0, 0))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Table{out: out, done: done, journal: o.Journal, limits: o.Limits, rand: o.Rand, now: o.Now,
		quiet: map[uint16]time.Time{}, socks: map[uint64]*socket{}, ports: map[uint16]*socket{}}
}

// SetAddr sets our address and prefix, as IP's OpAddr reply gives them.
func (t *Table) SetAddr(p netip.Prefix) { t.addr = p }

// SetChecksumOffload says whether IP fills in the checksums of what we
// send (transport.Offloads.Checksum): a socket bound to no address then
// leaves its source to IP too, which sends from the interface the route
// says (an appliance with several NICs answers on each from its own
// address), and checksums over that.
func (t *Table) SetChecksumOffload(on bool) { t.csumOffload = on }

// Addr is our address as last set; invalid until IP told it.
func (t *Table) Addr() netip.Prefix { return t.addr }

// Counters returns the statistics so far.
func (t *Table) Counters() Counters { return t.c }

// Sockets is the number of open sockets.
func (t *Table) Sockets() int { return len(t.socks) }

// QueuedBytes is what queued datagrams are charged: their data plus a
// fixed overhead each. It never exceeds Limits.TotalBytes.
func (t *Table) QueuedBytes() int { return t.queued }

// Open creates an unbound socket id; open already, it is a reissue and
// answers StatusOK.
func (t *Table) Open(id uint64, network ops.Network) ops.Status {
	switch {
	case network != ops.UDP:
		return ops.StatusInvalid
	case t.socks[id] != nil:
		return ops.StatusOK
	case len(t.socks) >= t.limits.Sockets:
		return ops.StatusError
	}
	s := &socket{id: id}
	t.socks[id] = s
	t.save(s)
	return ops.StatusOK
}

// Bind binds socket id to local: port 0 picks an ephemeral port, address
// 0.0.0.0 means any of ours. It returns the address bound.
func (t *Table) Bind(id uint64, local ops.Addr) (ops.Addr, ops.Status) {
	s := t.socks[id]
	if s == nil {
		return ops.Addr{}, ops.StatusNoSocket
	}
	if s.bound() {
		if local == s.local || local.Port() == 0 && local.IP() == s.local.IP() {
			return s.local, ops.StatusOK // a reissue (servers/ops)
		}
		return s.local, ops.StatusInvalid // bound already
	}
	if ip := local.IP(); !ip.IsUnspecified() && ip != t.addr.Addr() {
		// Not our IPv4 address. An IPv6 socket binds to [::] alone:
		// IP's IPv6 addresses come and go (SLAAC), the transports do not
		// track them.
		return ops.Addr{}, ops.StatusInvalid
	}
	if st := t.bind(s, local); st != ops.StatusOK {
		return ops.Addr{}, st
	}
	t.save(s)
	return s.local, ops.StatusOK
}

// bind takes local's port (an ephemeral one if 0) for s.
func (t *Table) bind(s *socket, local ops.Addr) ops.Status {
	port := local.Port()
	if port == 0 {
		var ok bool
		if port, ok = t.ephemeral(); !ok {
			return ops.StatusInUse
		}
	} else if t.ports[port] != nil {
		return ops.StatusInUse
	}
	s.local = ops.MakeAddr(local.IP(), port)
	t.ports[port] = s
	return ops.StatusOK
}

// ephemeral finds a free port of the dynamic range, starting at a random
// one (RFC 6056 §3.3.2: a random start, then sequential search).
func (t *Table) ephemeral() (uint16, bool) {
	const n = EphemeralLast - EphemeralFirst + 1
	start := t.rand.IntN(n)
	for i := range n {
		p := uint16(EphemeralFirst + (start+i)%n)
		if t.ports[p] == nil {
			return p, true
		}
	}
	return 0, false
}

// Connect sets socket id's peer: the default destination and the only
// source it accepts. An unbound socket is bound to an ephemeral port first.
// It returns the local address (a wildcard address reported as ours).
func (t *Table) Connect(id uint64, remote ops.Addr) (ops.Addr, ops.Status) {
	s := t.socks[id]
	if s == nil {
		return ops.Addr{}, ops.StatusNoSocket
	}
	if remote.Port() == 0 || remote.IP().IsUnspecified() {
		return ops.Addr{}, ops.StatusInvalid
	}
	if !s.bound() {
		if st := t.bind(s, ops.Addr{}); st != ops.StatusOK {
			return ops.Addr{}, st
		}
	}
	s.peer = remote
	t.save(s)
	return t.localOf(s), ops.StatusOK
}

// Local is socket id's local address (0.0.0.0:0 until it is bound), and
// false if there is no such socket.
func (t *Table) Local(id uint64) (ops.Addr, bool) {
	s := t.socks[id]
	if s == nil || !s.bound() {
		return ops.Addr{}, s != nil
	}
	return s.local, true
}

// localOf is s's local address with a wildcard replaced by ours, if known
// (IPv4's: to an IPv6 peer IP chooses the source, and the wildcard stays).
func (t *Table) localOf(s *socket) ops.Addr {
	if s.local.IP().IsUnspecified() && t.addr.IsValid() && s.peer.Is4() {
		return ops.MakeAddr(t.addr.Addr(), s.local.Port())
	}
	return s.local
}

// SendTo sends payload from socket id to dst (0: the connected peer). An
// unbound socket is bound to an ephemeral port first. It returns the local
// address. The payload is copied; the caller keeps it.
func (t *Table) SendTo(id uint64, dst ops.Addr, payload []byte) (ops.Addr, ops.Status) {
	s := t.socks[id]
	switch {
	case s == nil:
		return ops.Addr{}, ops.StatusNoSocket
	case len(payload) > header.UDPMaximumPayload:
		return s.local, ops.StatusTooBig
	}
	if st := s.takeErr(); st != ops.StatusOK {
		return s.local, st // what an ICMP error said (icmp.go); this one is not sent
	}
	if dst.IsZero() {
		dst = s.peer
	}
	if dst.Port() == 0 || dst.IP().IsUnspecified() {
		return s.local, ops.StatusInvalid // no destination, or a bad one
	}
	if !t.addr.IsValid() {
		return s.local, ops.StatusNoRoute // IP has not told us our address
	}
	if !s.bound() {
		if st := t.bind(s, ops.Addr{}); st != ops.StatusOK {
			return ops.Addr{}, st
		}
		t.save(s)
	}
	n := header.UDPMinimumSize + len(payload)
	b := t.out.Buffer(n)
	if len(b) < n {
		// Every buffer is with IP (busy, or slow on a loaded host): the
		// datagram is built aside and Send holds it, in order, until one
		// comes back, rather than the send failing.
		t.spare = slices.Grow(t.spare[:0], n)
		b = t.spare[:n]
	}
	u := header.UDP(b[:n])
	u.Encode(&header.UDPFields{SrcPort: s.local.Port(), DstPort: dst.Port(), Length: uint16(n)})
	copy(u[header.UDPMinimumSize:], payload)
	// From the address the socket is bound to, if it names one; else from
	// the one IP chooses by the route, if IP checksums (SetChecksumOffload);
	// else from ours. IP (its device, for a datagram that fits a frame)
	// checksums whenever it offers to.
	// To an IPv6 destination IP always chooses (RFC 6724) and checksums,
	// with the device where it does UDP over IPv6.
	src, o := t.addr.Addr(), transport.Offload{Checksum: t.csumOffload}
	switch ip := s.local.IP(); {
	case dst.IP().Is6():
		src, o = netip.Addr{}, transport.Offload{Checksum: true}
	case ip.IsValid() && !ip.IsUnspecified():
		src = ip
	case t.csumOffload:
		src = netip.Addr{}
	}
	if !o.Checksum {
		u.SetChecksum(u.ComputeChecksum(src, dst.IP()))
	}
	if err := t.out.Send(u, src, dst.IP(), o); err != nil {
		t.c.OutErrors++
		return s.local, ops.StatusError
	}
	t.c.OutDatagrams++
	t.c.OutBytes += uint64(len(payload))
	return s.local, ops.StatusOK
}

// RecvFrom posts buf to receive socket id's next datagram. The answer goes
// to done, tagged tag: at once if a datagram is queued (or the request
// fails), else when one arrives or the socket closes. buf is written only
// by that answer; the caller keeps it valid until then or DropReceives.
func (t *Table) RecvFrom(id, tag uint64, buf []byte) {
	s := t.socks[id]
	switch {
	case s == nil:
		t.done(Completion{Tag: tag, Status: ops.StatusNoSocket})
	case s.err != ops.StatusOK:
		t.done(Completion{Tag: tag, Status: s.takeErr()})
	case len(s.queue) > 0:
		d := s.queue[0]
		s.queue[0] = datagram{}
		s.queue = s.queue[1:]
		charge := len(d.data) + datagramOverhead
		s.qbytes -= charge
		t.queued -= charge
		t.complete(receive{tag, buf}, d.src, d.data)
	case len(s.posted) >= t.limits.PostedReceives:
		t.done(Completion{Tag: tag, Status: ops.StatusError})
	default:
		s.posted = append(s.posted, receive{tag, buf})
	}
}

// HoldsReceive reports whether socket id has the receive tag posted,
// waiting for a datagram.
func (t *Table) HoldsReceive(id, tag uint64) bool {
	s := t.socks[id]
	return s != nil && slices.ContainsFunc(s.posted, func(r receive) bool { return r.tag == tag })
}

// complete copies a datagram into a posted receive and answers it.
func (t *Table) complete(r receive, src ops.Addr, data []byte) {
	c := Completion{Tag: r.tag, Len: copy(r.buf, data), Src: src, Status: ops.StatusOK}
	if c.Len < len(data) {
		c.Flags = ops.FlagTruncated
		t.c.InTruncations++
	}
	t.done(c)
}

// Close closes socket id: its posted receives are answered StatusClosed
// first, its queue is dropped, its port freed.
func (t *Table) Close(id uint64) ops.Status {
	s := t.socks[id]
	if s == nil {
		return ops.StatusNoSocket
	}
	posted := s.posted
	s.posted = nil
	for _, r := range posted {
		t.done(Completion{Tag: r.tag, Status: ops.StatusClosed})
	}
	t.queued -= s.qbytes
	s.queue, s.qbytes = nil, 0
	if s.bound() && t.ports[s.local.Port()] == s {
		delete(t.ports, s.local.Port())
	}
	delete(t.socks, id)
	if t.journal != nil {
		t.journal.Forget(id)
	}
	return ops.StatusOK
}

// Has reports whether socket id exists.
func (t *Table) Has(id uint64) bool { return t.socks[id] != nil }

// CloseRange closes every socket with an id in [first, end), in the order
// of their ids.
func (t *Table) CloseRange(first, end uint64) {
	var ids []uint64
	for id := range t.socks {
		if id >= first && id < end {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		t.Close(id)
	}
}

// Reset closes every socket. It is what a restarted SYSCALL server asks
// first; its applications then re-create their sockets on the same ports a
// moment later. Until they do, a datagram to one of those ports is dropped
// silently (for QuietAfterReset) rather than answered with ICMP port
// unreachable, which a connected peer would see as "connection refused":
// the restart stays invisible from outside too.
func (t *Table) Reset() {
	until := t.now().Add(QuietAfterReset)
	for id, s := range t.socks {
		if s.bound() {
			t.quiet[s.local.Port()] = until
		}
		t.Close(id)
	}
}

// isQuiet reports whether port was freed by a Reset a moment ago.
func (t *Table) isQuiet(port uint16) bool {
	until, ok := t.quiet[port]
	if ok && !t.now().Before(until) {
		delete(t.quiet, port)
		return false
	}
	return ok
}

// DropReceives forgets every posted receive without answering it: their
// requester is gone (a SYSCALL generation that was replaced), and so are
// the buffers.
func (t *Table) DropReceives() int {
	n := 0
	for _, s := range t.socks {
		n += len(s.posted)
		clear(s.posted)
		s.posted = nil
	}
	return n
}

// CancelReceives answers StatusClosed the posted receives whose tags
// match (their buffers are about to go), and returns how many.
func (t *Table) CancelReceives(match func(tag uint64) bool) int {
	n := 0
	for _, s := range t.socks {
		s.posted = slices.DeleteFunc(s.posted, func(r receive) bool {
			if !match(r.tag) {
				return false
			}
			t.done(Completion{Tag: r.tag, Status: ops.StatusClosed})
			n++
			return true
		})
	}
	return n
}

// Deliver takes a segment IP received for protocol 17, from src to dst,
// and gives it to its socket. It returns ops.StatusNoPort when nobody
// listens on a unicast datagram's destination (IP then answers ICMP port
// unreachable), else ops.StatusOK — malformed datagrams included: they are
// dropped and counted, never answered. seg is not kept.
func (t *Table) Deliver(seg []byte, src, dst netip.Addr) ops.Status {
	return t.deliver(seg, src, dst, header.ValidateUDP(seg, src, dst))
}

// DeliverVerified is Deliver of a datagram whose checksum the device
// verified: it is not computed again.
func (t *Table) DeliverVerified(seg []byte, src, dst netip.Addr) ops.Status {
	err := header.ValidateUDPUnsummed(seg)
	if err == nil {
		t.c.InVerified++
	}
	return t.deliver(seg, src, dst, err)
}

// deliver is Deliver once the datagram has been validated (err).
func (t *Table) deliver(seg []byte, src, dst netip.Addr, err error) ops.Status {
	if err == nil && src.Is6() && header.UDP(seg).Checksum() == 0 {
		err = header.ErrBadChecksum // optional over IPv4 only (RFC 8200 §8.1)
	}
	switch err {
	case nil:
	case header.ErrBadChecksum:
		t.c.InBadChecksum++
		return ops.StatusOK
	case header.ErrBadLength:
		t.c.InBadLength++
		return ops.StatusOK
	default:
		t.c.InTruncated++
		return ops.StatusOK
	}
	u := header.UDP(seg)
	from := ops.MakeAddr(src, u.SrcPort())
	s := t.ports[u.DstPort()]
	if s == nil && t.isQuiet(u.DstPort()) {
		t.c.InQuietDrops++
		return ops.StatusOK
	}
	if s == nil || !s.accepts(from, dst) {
		t.c.InNoPort++
		if t.addr.IsValid() && dst == t.addr.Addr() || dst.Is6() && !dst.IsMulticast() {
			return ops.StatusNoPort
		}
		return ops.StatusOK // no ICMP about broadcasts (RFC 1122 §3.2.2)
	}
	data := u.Payload()
	switch charge := len(data) + datagramOverhead; {
	case len(s.posted) > 0:
		r := s.posted[0]
		s.posted[0] = receive{}
		s.posted = s.posted[1:]
		t.complete(r, from, data)
	case len(s.queue) >= t.limits.QueueDatagrams || s.qbytes+charge > t.limits.QueueBytes || t.queued+charge > t.limits.TotalBytes:
		t.c.InQueueDrops++
		return ops.StatusOK
	default:
		s.queue = append(s.queue, datagram{src: from, data: append([]byte(nil), data...)})
		s.qbytes += charge
		t.queued += charge
	}
	t.c.InDatagrams++
	t.c.InBytes += uint64(len(data))
	return ops.StatusOK
}

// accepts reports whether s takes a datagram from src to dst on its port.
// Bound to 0.0.0.0 or [::], it takes both families (as Go's ":7" does).
func (s *socket) accepts(src ops.Addr, dst netip.Addr) bool {
	if ip := s.local.IP(); !ip.IsUnspecified() && ip != dst {
		return false
	}
	return s.peer.IsZero() || s.peer == src
}

func (t *Table) save(s *socket) {
	if t.journal != nil {
		t.journal.Save(Record{ID: s.id, Local: s.local, Peer: s.peer})
	}
}
