package tcp

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
)

// Config configures a Table. Clock and Output are required.
type Config struct {
	Clock  Clock
	Output transport.Output
	// ISNKey is the secret of the RFC 6528 ISN function; the server draws
	// it from crypto/rand at start.
	ISNKey [32]byte
	// Seed seeds the ephemeral-port search and timestamp offsets.
	Seed uint64
	// MSS is the segment size we advertise and send at most: the MTU
	// minus 40. Zero: 1460 (a 1500-byte MTU).
	MSS int
	// SendBuffer and RecvBuffer bound each connection's buffers. Zero:
	// 1 MiB each. The receive window scale is chosen from RecvBuffer.
	SendBuffer, RecvBuffer int
	// SynQueue bounds each listener's half-open connections; when full,
	// SYNs are answered with SYN cookies (syncookie.go). Zero: 256.
	SynQueue int
	// NoECN turns ECN off: a peer's ECN-setup SYN is answered without
	// ECE (ecn.go). Our own SYNs never ask for ECN.
	NoECN bool
	// NoSynCookies turns SYN cookies off: a full SYN queue drops its
	// oldest half-open connection instead.
	NoSynCookies bool
	// MaxOutOfOrder bounds each connection's reassembly queue, in ranges
	// of contiguous data (the islands between holes); its bytes are
	// bounded by the receive window. Zero: 64.
	MaxOutOfOrder int
	// Congestion makes each connection's algorithm. Nil: CUBIC.
	Congestion func() Congestion
	// NoDelay is the initial TCP_NODELAY of new connections.
	NoDelay bool
	// InitialWindow is the congestion window a connection starts with, in
	// segments (RFC 6928; initialWindow). Zero: DefaultInitialWindow.
	InitialWindow int
	// RACK turns on RACK-TLP (RFC 8985, rack.go) on connections with
	// SACK: time-based loss detection and the tail loss probe, beside
	// the RFC 6675 scoreboard.
	RACK bool
	// ChallengeACKLimit is the most challenge ACKs per second (RFC 5961
	// §7). Zero: 1000.
	ChallengeACKLimit int
	// MaxConns bounds the connections, in any state but LISTEN; beyond
	// it new ones are refused (budget.go). Zero: DefaultMaxConns.
	MaxConns int
	// BufferBudget bounds the bytes of every connection's buffers
	// together: each connection grows its buffers only within it, and a
	// new one is refused when its reserve does not fit. Zero:
	// DefaultBufferBudget.
	BufferBudget int
	// MaxTimeWait bounds the connections in TIME-WAIT; beyond it the
	// oldest is recycled. Zero: DefaultMaxTimeWait.
	MaxTimeWait int
}

// Counters are the Table's statistics.
type Counters struct {
	InSegs             uint64 // accepted by validation
	InTruncated        uint64 // drop: shorter than a header
	InBadOffset        uint64 // drop: bad data offset
	InBadLength        uint64 // drop: too long
	InBadChecksum      uint64 // drop: checksum does not verify
	InVerified         uint64 // taken without computing the checksum: the device verified it (InputVerified)
	InBadOptions       uint64 // drop: malformed options
	InNoSocket         uint64 // to no connection or listener (answered with RST)
	InSynDrops         uint64 // SYNs dropped: accept queue full
	InSynEvictions     uint64 // half-open connections dropped for a newer SYN (NoSynCookies)
	SynCookiesSent     uint64 // SYN-ACKs with a cookie: the SYN queue was full
	SynCookiesAccepted uint64 // ACKs with a valid cookie: connections made from it
	SynCookiesRejected uint64 // ACKs to a listener sending cookies whose cookie is wrong (answered with RST)
	InPAWSDrops        uint64 // drop: timestamp older than TS.Recent
	InOOODrops         uint64 // out-of-order data dropped: reassembly queue full
	ConnsRefused       uint64 // new connections refused: Config.MaxConns reached
	BudgetRefused      uint64 // new connections refused: Config.BufferBudget had no room for their reserve
	TimeWaitRecycled   uint64 // TIME-WAIT connections ended early: Config.MaxTimeWait reached, or a connection needed the room
	OutSegs            uint64
	OutOffloaded       uint64 // segments of more than one MSS, cut by the device (segmentation offload)
	OutRSTs            uint64
	ChallengeACKs      uint64
	Retransmits        uint64 // segments sent again, for any reason
	FastRetransmits    uint64 // fast retransmit events: entries into fast recovery
	Timeouts           uint64 // retransmission timer expiries
	LostRetransmits    uint64 // retransmissions found lost by SACK, sent again without a timeout
	TailLossProbes     uint64 // probes sent by TLP (rack.go)
	SpuriousRecoveries uint64 // window reductions undone: the retransmissions were needless
	KeepAliveProbes    uint64 // keepalive probes sent
	KeepAliveTimeouts  uint64 // connections ended by keepalive: count probes unanswered

	// ECN (ecn.go).
	ECNConnections uint64 // connections that negotiated ECN (the peer asked)
	ECNCEIn        uint64 // segments that arrived marked CE
	ECNECEIn       uint64 // ACKs with ECE on ECN connections
	ECNReductions  uint64 // congestion windows reduced for an ECE (once per window)
	ECNCWROut      uint64 // segments sent with CWR
	ECNCWRIn       uint64 // segments that arrived with CWR

	// ICMP errors about our segments (icmp.go).
	ICMPIn              uint64 // delivered by ip
	ICMPOutOfWindow     uint64 // ignored: no connection, or the quoted sequence number outside [SND.UNA, SND.NXT) (RFC 5927)
	ICMPRefused         uint64 // connection attempts ended by port or protocol unreachable
	ICMPSoftErrors      uint64 // remembered, reported only on a timeout
	PathMTUReductions   uint64 // segment sizes lowered by fragmentation needed
	BlackHoleReductions uint64 // segment sizes halved after timeouts in a row (a PMTU black hole?)

	// Keeping (keep.go).
	KeptConns uint64 // connections and TIME-WAITs a restart adopted from the kept memory
	KeptLost  uint64 // records a restart found bad: their connections reset
	Unkept    uint64 // connections not kept: no room in the kept memory, or a record too large
}

// tuple identifies a connection.
type tuple struct {
	localAddr  netip.Addr
	localPort  uint16
	remoteAddr netip.Addr
	remotePort uint16
}

// Table is the TCP protocol logic of the appliance: every connection and
// listener. It is not safe for concurrent use.
type Table struct {
	cfg   Config
	clock Clock
	out   transport.Output
	// offload: checksums (and, with tso, segmentation) are left to the
	// device.
	offload bool
	tso     bool
	rand    *rand.Rand
	epoch   time.Time // origin of timestamp clocks

	conns     map[tuple]*Endpoint
	listeners map[uint16]*Listener
	ports     map[uint16]int // local ports used by connections, with counts

	timers   timerHeap    // the connections with a timer armed (timer.go)
	due      []*Endpoint  // Tick's scratch: the connections due
	budget   budget       // every connection's buffers (budget.go)
	timeWait timeWaitList // the connections in TIME-WAIT, oldest first (timewait.go)

	scratch []byte // where segments are built
	// hdr is the private copy of the header of the segment being read
	// (InputShared).
	hdr [header.TCPMaximumHeaderSize]byte
	// holding: between Hold and Flush, endpoints' output waits in held.
	holding bool
	held    []*Endpoint
	c       Counters

	challengeSec   time.Time // start of the current challenge-ACK second
	challengeCount int

	// isn and tsOffset are the RFC 6528 ISN and the per-connection
	// timestamp offset; tests replace them to fix the numbers on the wire.
	isn      func(tuple) uint32
	tsOffset func(tuple) uint32

	// Keeping (keep.go): nil when the connections are not kept. mem is
	// where buffers come from: the kept memory's allocator, or the heap.
	keep *keeper
	mem  bufMem
}

// NewTable returns an empty Table.
func NewTable(cfg Config) *Table {
	if cfg.MSS == 0 {
		cfg.MSS = 1460
	}
	if cfg.SendBuffer == 0 {
		cfg.SendBuffer = 1 << 20
	}
	if cfg.RecvBuffer == 0 {
		cfg.RecvBuffer = 1 << 20
	}
	if cfg.SynQueue == 0 {
		cfg.SynQueue = 256
	}
	if cfg.MaxOutOfOrder == 0 {
		cfg.MaxOutOfOrder = 64
	}
	if cfg.Congestion == nil {
		cfg.Congestion = func() Congestion { return &CUBIC{} }
	}
	if cfg.ChallengeACKLimit == 0 {
		cfg.ChallengeACKLimit = 1000
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.BufferBudget == 0 {
		cfg.BufferBudget = DefaultBufferBudget
	}
	if cfg.MaxTimeWait == 0 {
		cfg.MaxTimeWait = DefaultMaxTimeWait
	}
	if cfg.InitialWindow <= 0 {
		cfg.InitialWindow = DefaultInitialWindow
	}
	cfg.InitialWindow = min(cfg.InitialWindow, MaxInitialWindow)
	t := &Table{
		cfg: cfg, clock: cfg.Clock, out: cfg.Output,
		rand:      rand.New(rand.NewPCG(cfg.Seed, 0x6b65_6570_6e65_74)),
		epoch:     cfg.Clock.Now(),
		conns:     map[tuple]*Endpoint{},
		listeners: map[uint16]*Listener{},
		ports:     map[uint16]int{},
		timeWait:  timeWaitList{byID: map[tuple]*timeWaitConn{}},
		budget:    budget{limit: cfg.BufferBudget},
		scratch:   make([]byte, header.TCPMaximumHeaderSize+max(cfg.MSS, MaxOffloadData)),
		mem:       heapMem{},
	}
	t.isn = t.isnRFC6528
	t.tsOffset = func(id tuple) uint32 { return t.hash(id, hashTSOffset) }
	return t
}

// Domains of the keyed hash: what it is computed for.
const (
	hashISN      = 0
	hashTSOffset = 1
	hashCookie   = 2
)

// hash is the keyed hash F of RFC 6528 over the 4-tuple and at most two
// extra words, with a domain byte so that ISNs, timestamp offsets and SYN
// cookies are unrelated.
func (t *Table) hash(id tuple, domain byte, extra ...uint32) uint32 {
	var b [1 + 16 + 2 + 16 + 2 + 8]byte
	b[0] = domain
	la, ra := id.localAddr.As16(), id.remoteAddr.As16()
	copy(b[1:], la[:])
	binary.BigEndian.PutUint16(b[17:], id.localPort)
	copy(b[19:], ra[:])
	binary.BigEndian.PutUint16(b[35:], id.remotePort)
	n := 37
	for _, x := range extra {
		binary.BigEndian.PutUint32(b[n:], x)
		n += 4
	}
	var k [16]byte // SipHash's 128-bit key, folded from ours
	for i := range k {
		k[i] = t.cfg.ISNKey[i] ^ t.cfg.ISNKey[16+i]
	}
	return uint32(sipHash(k, b[:n]))
}

// isnRFC6528 is ISN = M + F(4-tuple, key), M a 4 µs timer.
func (t *Table) isnRFC6528(id tuple) uint32 {
	m := uint32(t.clock.Now().UnixNano() / 4000)
	return m + t.hash(id, hashISN)
}

// Counters returns the statistics so far.
func (t *Table) Counters() Counters { return t.c }

// Conns is the number of connections, in any state but LISTEN.
func (t *Table) Conns() int { return len(t.conns) + t.timeWait.len() }

// inUse reports whether a connection, in TIME-WAIT too, has id.
func (t *Table) inUse(id tuple) bool {
	return t.conns[id] != nil || t.timeWait.byID[id] != nil
}

// Listener is a passive-open socket: half-open connections in its SYN
// queue, established ones waiting for Accept in its accept queue.
type Listener struct {
	t       *Table
	addr    netip.Addr // unspecified: any of ours
	port    uint16
	backlog int
	synQ    []*Endpoint // SYN-RECEIVED, oldest first
	acceptQ []*Endpoint // ESTABLISHED (or further), oldest first
	closed  bool
	notify  func()

	cookieAt time.Time // when the last SYN cookie was sent; zero: never
}

// mssFor is the MSS for a peer at remote: cfg.MSS is IPv4's (the MTU less
// 40 bytes of headers); IPv6's header is 20 bytes longer.
func (t *Table) mssFor(remote netip.Addr) int {
	if remote.Is6() && !remote.Is4In6() {
		return t.cfg.MSS - (header.IPv6MinimumSize - header.IPv4MinimumSize)
	}
	return t.cfg.MSS
}

// Listen opens a listener on port (0: an ephemeral one) of addr (the
// unspecified address: any). backlog bounds the accept queue (at least 1).
func (t *Table) Listen(addr netip.Addr, port uint16, backlog int) (*Listener, error) {
	if port == 0 {
		var ok bool
		if port, ok = t.ephemeral(func(p uint16) bool { return t.listeners[p] == nil && t.ports[p] == 0 }); !ok {
			return nil, ErrNoPorts
		}
	}
	if t.listeners[port] != nil {
		return nil, ErrInUse
	}
	l := &Listener{t: t, addr: addr, port: port, backlog: max(backlog, 1)}
	t.listeners[port] = l
	return l, nil
}

// Port is the port listened on.
func (l *Listener) Port() uint16 { return l.port }

// SetNotify sets f to be called when a connection may have become ready
// for Accept.
func (l *Listener) SetNotify(f func()) { l.notify = f }

// Readable reports whether Accept would return a connection.
func (l *Listener) Readable() bool { return len(l.acceptQ) > 0 }

// Pending is the number of half-open connections.
func (l *Listener) Pending() int { return len(l.synQ) }

// Accept returns the oldest established connection, or ErrWouldBlock.
func (l *Listener) Accept() (*Endpoint, error) {
	if l.closed {
		return nil, ErrClosed
	}
	if len(l.acceptQ) == 0 {
		return nil, ErrWouldBlock
	}
	e := l.acceptQ[0]
	l.acceptQ = l.acceptQ[1:]
	e.listener = nil
	l.t.touch(e)
	return e, nil
}

// Close stops listening and resets every connection not yet accepted.
func (l *Listener) Close() {
	if l.closed {
		return
	}
	l.closed = true
	delete(l.t.listeners, l.port)
	for _, e := range append(l.synQ, l.acceptQ...) {
		e.listener = nil
		e.Abort()
	}
	l.synQ, l.acceptQ = nil, nil
}

// removeSyn takes e off the SYN queue, if it is there.
func (l *Listener) removeSyn(e *Endpoint) bool {
	for i, x := range l.synQ {
		if x == e {
			l.synQ = append(l.synQ[:i], l.synQ[i+1:]...)
			return true
		}
	}
	return false
}

// established moves e from the SYN queue to the accept queue.
func (l *Listener) established(e *Endpoint) {
	l.removeSyn(e)
	l.acceptQ = append(l.acceptQ, e)
	if l.notify != nil {
		l.notify()
	}
}

// forget drops e, which closed, from whichever queue holds it.
func (l *Listener) forget(e *Endpoint) {
	if l.removeSyn(e) {
		return
	}
	for i, x := range l.acceptQ {
		if x == e {
			l.acceptQ = append(l.acceptQ[:i], l.acceptQ[i+1:]...)
			return
		}
	}
}

// ephemeral finds a free port of the dynamic range, starting at a random
// one (RFC 6056 §3.3.2).
func (t *Table) ephemeral(free func(uint16) bool) (uint16, bool) {
	const n = EphemeralLast - EphemeralFirst + 1
	start := t.rand.IntN(n)
	for i := range n {
		p := uint16(EphemeralFirst + (start+i)%n)
		if free(p) {
			return p, true
		}
	}
	return 0, false
}

// Connect starts an active open from local (one of our addresses) to
// remote, from an ephemeral port, and returns the connection in SYN-SENT.
// It becomes Writable when established; Err tells a failure.
func (t *Table) Connect(local netip.Addr, remote netip.AddrPort) (*Endpoint, error) {
	return t.ConnectFrom(netip.AddrPortFrom(local, 0), remote)
}

// ConnectFrom is Connect from the port of local, bound before (bind(2)
// then connect(2)); port 0 picks an ephemeral one. It fails with
// ErrInUse if that port has a listener or the 4-tuple a connection (one in
// TIME-WAIT too).
func (t *Table) ConnectFrom(local, remote netip.AddrPort) (*Endpoint, error) {
	if !local.Addr().IsValid() || local.Addr().IsUnspecified() || local.Addr().Is4() != remote.Addr().Is4() ||
		local.Addr().Is4In6() || remote.Addr().Is4In6() || remote.Port() == 0 || remote.Addr().IsUnspecified() || remote.Addr().IsMulticast() {
		return nil, ErrInvalid
	}
	id := tuple{localAddr: local.Addr(), localPort: local.Port(), remoteAddr: remote.Addr(), remotePort: remote.Port()}
	if id.localPort != 0 {
		if t.listeners[id.localPort] != nil || t.inUse(id) {
			return nil, ErrInUse
		}
	} else {
		port, ok := t.ephemeral(func(p uint16) bool {
			id.localPort = p
			return t.listeners[p] == nil && !t.inUse(id)
		})
		if !ok {
			return nil, ErrNoPorts
		}
		id.localPort = port
	}
	if err := t.admit(); err != nil {
		return nil, err
	}
	e := t.newEndpoint(id)
	e.state = SynSent
	e.ourWS = true
	e.sackOK, e.tsOK = true, true // offered; settled by the SYN-ACK
	t.add(e)
	now := t.clock.Now()
	e.sendSYN(now)
	return e, nil
}

func (t *Table) add(e *Endpoint) {
	t.conns[e.id] = e
	e.inTable = true
	t.ports[e.id.localPort]++
}

// remove forgets a closed connection.
func (t *Table) remove(e *Endpoint) {
	t.touch(e)
	if c := e.tw; c != nil {
		t.timeWaitRemove(c) // its TIME-WAIT ends with it (Abort)
		return
	}
	if t.conns[e.id] != e {
		return
	}
	delete(t.conns, e.id)
	e.inTable = false
	e.release()
	t.unport(e.id.localPort)
}

// unport drops a connection's count on its local port.
func (t *Table) unport(p uint16) {
	if t.ports[p]--; t.ports[p] <= 0 {
		delete(t.ports, p)
	}
}

// Hold defers every endpoint's output (data, retransmissions, ACKs) until
// Flush: a caller with a batch of segments to hand to Input sends once for
// the whole batch — one ACK for many segments received (what Linux's GRO
// achieves: stretch ACKs), one larger transmission for many ACKs.
func (t *Table) Hold() { t.holding = true }

// Flush ends Hold: each endpoint whose output waited sends now.
func (t *Table) Flush() {
	t.holding = false
	if len(t.held) == 0 {
		return // the loop calls it every round: no clock read for nothing
	}
	now := t.clock.Now()
	for i, e := range t.held {
		t.held[i] = nil
		e.held = false
		if e.state != Closed {
			e.output(now)
		}
	}
	t.held = t.held[:0]
}

// SetOffload turns the device offloads on or off for every segment sent
// from now on: checksum insertion, and segmentation (which needs the
// former); only what IP offered (transport.Offloads).
func (t *Table) SetOffload(checksum, tso bool) {
	t.offload, t.tso = checksum, checksum && tso
}

// Input takes one segment from IP: seg is the whole IPv4 payload of a
// datagram from src to dst. Invalid segments are dropped and counted.
func (t *Table) Input(seg []byte, src, dst netip.Addr) {
	t.InputECN(seg, src, dst, ops.ECNNotECT)
}

// InputECN is Input of a segment whose IP header carried the ECN
// codepoint ecn (servers/ops ECNCE...).
func (t *Table) InputECN(seg []byte, src, dst netip.Addr, ecn uint8) {
	t.input(seg, src, dst, ecn, header.ValidateTCP(seg, src, dst))
}

// InputVerified is InputECN of a segment whose checksum the device
// verified: it is not computed again.
func (t *Table) InputVerified(seg []byte, src, dst netip.Addr, ecn uint8) {
	err := header.ValidateTCPUnsummed(seg)
	if err == nil {
		t.c.InVerified++
	}
	t.input(seg, src, dst, ecn, err)
}

// InputShared is InputECN (InputVerified if verified) of a segment in
// memory another process can write while it is read: IP's, handed over.
// Its header is copied out first and everything is decided on the copy;
// its payload is read where it is, once (checksummed, if the device did
// not, and copied to the receive buffer or the out-of-order queue), so
// the bytes of a bulk transfer are copied once here, not twice.
func (t *Table) InputShared(shared []byte, src, dst netip.Addr, ecn uint8, verified bool) {
	hdr := t.hdr[:copy(t.hdr[:], shared)] // the longest header there is, or the whole segment
	err := header.ValidateTCPUnsummed(hdr)
	switch {
	case err != nil:
	case len(shared) > header.IPv4MaximumSize-header.IPv4MinimumSize:
		err = header.ErrBadLength
	default:
		hdr = hdr[:header.TCP(hdr).DataOffset()]
	}
	data := shared[len(hdr):]
	switch {
	case err != nil:
	case verified:
		t.c.InVerified++
	case !tcpChecksumValid(hdr, data, src, dst):
		err = header.ErrBadChecksum
	}
	t.inputSplit(hdr, data, src, dst, ecn, err)
}

// tcpChecksumValid reports whether the checksum of the segment of header
// hdr (its length even: a multiple of 4) and payload data verifies.
func tcpChecksumValid(hdr, data []byte, src, dst netip.Addr) bool {
	seed := header.PseudoHeaderChecksum(header.ProtocolTCP, src, dst, uint16(len(hdr)+len(data)))
	return header.Checksum(data, header.Checksum(hdr, seed)) == 0xffff
}

// input is InputECN once the segment has been validated (err).
func (t *Table) input(seg []byte, src, dst netip.Addr, ecn uint8, err error) {
	var off int
	if err == nil {
		off = header.TCP(seg).DataOffset()
	}
	t.inputSplit(seg[:off], seg[off:], src, dst, ecn, err)
}

// inputSplit is input of the segment of header hdr and payload data.
func (t *Table) inputSplit(hdr, data []byte, src, dst netip.Addr, ecn uint8, err error) {
	switch err {
	case nil:
	case header.ErrTruncated:
		t.c.InTruncated++
		return
	case header.ErrBadDataOffset:
		t.c.InBadOffset++
		return
	case header.ErrBadChecksum:
		t.c.InBadChecksum++
		return
	default:
		t.c.InBadLength++
		return
	}
	h := header.TCP(hdr)
	opts, err := header.ParseTCPOptions(h.Options())
	if err != nil {
		t.c.InBadOptions++
		return
	}
	t.c.InSegs++
	s := segment{
		seq: h.Seq(), ack: h.Ack(), flags: h.Flags(), wnd: h.Window(),
		data: data, opts: opts, ecn: ecn & 3,
	}
	id := tuple{localAddr: dst, localPort: h.DstPort(), remoteAddr: src, remotePort: h.SrcPort()}
	now := t.clock.Now()
	if e := t.conns[id]; e != nil {
		t.touch(e)
		e.input(&s, now)
		return
	}
	if c := t.timeWait.byID[id]; c != nil {
		t.touchTW(c)
		t.timeWaitInput(c, &s, now)
		return
	}
	if l := t.listeners[id.localPort]; l != nil && (!l.addr.IsValid() || l.addr.IsUnspecified() || l.addr == dst) {
		t.listen(l, id, &s, now)
		return
	}
	t.c.InNoSocket++
	t.resetFor(id, &s)
}

// listen handles a segment for a listener (RFC 9293 §3.10.7.2).
func (t *Table) listen(l *Listener, id tuple, s *segment, now time.Time) {
	switch {
	case s.flags&header.TCPFlagRST != 0:
		return
	case s.flags&header.TCPFlagACK != 0:
		if !t.cookieAccept(l, id, s, now) {
			t.resetFor(id, s)
		}
		return
	case s.flags&header.TCPFlagSYN == 0:
		return
	}
	if id.remoteAddr.Is4() != id.localAddr.Is4() || id.remoteAddr.IsMulticast() || id.remoteAddr.IsUnspecified() || id.remotePort == 0 {
		return
	}
	if len(l.acceptQ) >= l.backlog {
		t.c.InSynDrops++
		return
	}
	if len(l.synQ) >= t.cfg.SynQueue && !t.cfg.NoSynCookies {
		t.sendCookie(l, id, s, now)
		return
	}
	if len(l.synQ) >= t.cfg.SynQueue {
		old := l.synQ[0]
		l.synQ = l.synQ[1:]
		old.listener = nil
		old.state = Closed
		t.remove(old)
		t.c.InSynEvictions++
	}
	if t.admit() != nil {
		// No room: a cookie keeps no state (its ACK is refused with an
		// RST if there is still none); without cookies, refused now.
		if t.cfg.NoSynCookies {
			t.resetFor(id, s)
		} else {
			t.sendCookie(l, id, s, now)
		}
		return
	}
	e := t.newEndpoint(id)
	e.listener = l
	e.state = SynReceived
	e.irs, e.rcvNxt = s.seq, s.seq+1
	e.peerOptions(&s.opts, true)
	e.ecnSetup(s)
	e.sndWnd = uint32(s.wnd) // unscaled in a SYN
	e.sndWl1, e.sndWl2 = s.seq, 0
	if s.opts.HasTimestamps {
		e.tsRecent, e.tsRecentAt = s.opts.TSVal, now
	}
	l.synQ = append(l.synQ, e)
	t.add(e)
	e.sendSYN(now)
}

// resetFor answers a segment that belongs to no connection (RFC 9293
// §3.10.7.1): an RST is never answered; otherwise an RST that acknowledges
// it, or takes its ACK as sequence number.
func (t *Table) resetFor(id tuple, s *segment) {
	if s.flags&header.TCPFlagRST != 0 {
		return
	}
	if s.flags&header.TCPFlagACK != 0 {
		t.sendRaw(id, s.ack, 0, header.TCPFlagRST, 0, nil)
		return
	}
	t.sendRaw(id, 0, s.seq+s.length(), header.TCPFlagRST|header.TCPFlagACK, 0, nil)
}

// sendRaw sends a segment with no options and no data.
func (t *Table) sendRaw(id tuple, seq, ack uint32, flags uint8, wnd uint16, opts *header.TCPOptions) {
	b := t.scratch
	n := header.TCPMinimumSize
	var ob []byte
	if opts != nil {
		ob = b[header.TCPMinimumSize : header.TCPMinimumSize+opts.Size()]
		opts.Encode(ob)
		n += len(ob)
	}
	h := header.TCP(b[:n])
	h.Encode(&header.TCPFields{SrcPort: id.localPort, DstPort: id.remotePort, Seq: seq, Ack: ack, Flags: flags, Window: wnd, Options: ob})
	h.SetChecksum(h.ComputeChecksum(id.localAddr, id.remoteAddr))
	t.c.OutSegs++
	if flags&header.TCPFlagRST != 0 {
		t.c.OutRSTs++
	}
	t.out.Send(h, id.localAddr, id.remoteAddr, transport.Offload{})
}

// challengeAllowed rate-limits challenge ACKs (RFC 5961 §7).
func (t *Table) challengeAllowed(now time.Time) bool {
	if now.Sub(t.challengeSec) >= time.Second {
		t.challengeSec, t.challengeCount = now, 0
	}
	if t.challengeCount >= t.cfg.ChallengeACKLimit {
		return false
	}
	t.challengeCount++
	t.c.ChallengeACKs++
	return true
}

// segment is a validated incoming segment.
type segment struct {
	seq, ack uint32
	flags    uint8
	wnd      uint16
	data     []byte
	opts     header.TCPOptions
	ecn      uint8 // its IP header's ECN codepoint (ecn.go)
}

func (s *segment) has(f uint8) bool { return s.flags&f != 0 }

// length is SEG.LEN: data plus SYN and FIN.
func (s *segment) length() uint32 {
	n := uint32(len(s.data))
	if s.has(header.TCPFlagSYN) {
		n++
	}
	if s.has(header.TCPFlagFIN) {
		n++
	}
	return n
}
