package tcp

import (
	"io"
	"net/netip"
	"time"

	"keepnet/servers/header"
)

// Endpoint is one connection. Its methods are the socket layer's calls;
// they never block: a call that cannot proceed returns ErrWouldBlock, and
// the layer retries when Readable or Writable says so (SetNotify tells it
// when to look).
type Endpoint struct {
	t        *Table
	id       tuple
	held     bool // its output waits for Table.Flush
	state    State
	err      error     // why the connection died; sticky
	listener *Listener // until accepted
	notify   func()

	userClosed bool // Close was called: no more reads; data arriving is answered with RST

	// Send sequence space (RFC 9293 §3.3.1). snd holds the bytes from
	// sndUna on (once the SYN is acknowledged): sent-unacknowledged, then
	// unsent.
	iss     uint32
	sndUna  uint32
	sndNxt  uint32 // highest sent + 1; never rewound: retransmissions come from the scoreboard
	sndWnd  uint32 // peer's window, scaled
	maxWnd  uint32 // largest sndWnd seen (RFC 5961 §5.2)
	sndWl1  uint32
	sndWl2  uint32
	snd     ring
	finQ    bool // CloseWrite: a FIN follows the data
	finAckd bool

	// Receive sequence space. rcv holds in-order bytes not yet read.
	irs    uint32
	rcvNxt uint32
	rcvAdv uint32 // right edge of the window last advertised
	rcv    ring
	// rcvLent are the first bytes of rcv handed out by ReadKept but not
	// yet proven received (Consume): a reply lost with a dead SYSCALL
	// server hands them out again after Rewind.
	rcvLent  int
	rcvFin   bool // the peer's FIN is in; EOF after rcv drains
	ooo      []oooSeg
	oooLen   int      // bytes in ooo
	oooLast  uint32   // seq of the last out-of-order segment, for the first SACK block
	rcvDSACK seqRange // duplicate data to report in the next ACK (RFC 2883); empty: none
	rcvMSS   int      // largest segment seen, for delayed ACKs

	// Options negotiated.
	smss       int   // most data bytes per segment we send (peer MSS minus options)
	ourWS      bool  // we offer window scaling
	sndShift   uint8 // peer's shift
	rcvShift   uint8 // ours
	sackOK     bool
	tsOK       bool
	tsRecent   uint32
	tsRecentAt time.Time
	tsOff      uint32
	lastAck    uint32 // Last.ACK.sent (RFC 7323 §4.3)

	// RTT (RFC 6298).
	hasRTT    bool
	srtt      time.Duration
	rttvar    time.Duration
	rto       time.Duration
	rttTiming bool // Karn: timing the segment at rttSeq, sent at rttStart
	rttSeq    uint32
	rttStart  time.Time
	retries   int

	// Congestion control (RFC 5681) and loss recovery (RFC 6675 with SACK,
	// RFC 6582 without; recovery.go).
	cc          Congestion
	cwnd        int
	ssthresh    int
	dupAcks     int
	inRecovery  bool       // fast recovery
	inLoss      bool       // recovery after an RTO: unSACKed data below recover is lost
	partialSeen bool       // a partial ACK came in this NewReno recovery
	recover     uint32     // RecoveryPoint: the episode ends when sndUna reaches it
	sb          scoreboard // what the peer SACKed above sndUna
	sackSeen    bool       // the peer has sent SACK blocks
	highRxt     uint32     // HighRxt: the lost holes below it were retransmitted
	rescued     bool       // NextSeg rule (4) was used in this recovery
	rxt         []rxtSeg   // retransmissions in flight, watched for loss
	relost      []seqRange // retransmissions found lost: they go first
	rack        rackState  // RACK-TLP (rack.go), when Config.RACK

	ecn ecnState // Explicit Congestion Notification (RFC 3168; ecn.go)

	// Undoing a needless reduction (RFC 3522, RFC 3708).
	undoArmed    bool // the last episode's reduction may be undone
	undoEifel    bool // its first retransmission's timestamp can still judge it
	undoCwnd     int
	undoSsthresh int
	undoTS       uint32     // TSval of the episode's first retransmission
	undoRetrans  int        // segments retransmitted in the episode
	undoDSACKs   int        // of those, reported twice by D-SACK
	undoLog      []seqRange // what was retransmitted, for matching D-SACKs
	undoLogFull  bool       // undoLog overflowed: D-SACKs cannot tell any more

	// Timers (timer.go), by timerKind; zero when not armed. Only
	// setTimer and stopTimer change them.
	timers   [numTimers]time.Time
	due      time.Time // the earliest of timers; zero: none
	heapPos  int       // index in the Table's timer heap, plus one; 0: not in it
	persistN int
	// tw is the record of the connection's TIME-WAIT (timewait.go),
	// while the user holds the endpoint.
	tw *timeWaitConn

	// Keeping (keep.go): the connection's record in the kept memory.
	slot         int    // its slot, plus one; 0: none
	identSock    uint64 // the socket the slot's identity names (identWritten)
	identWritten bool
	dirty        bool  // changed since the last commit
	inTable      bool  // in the Table's connections (t.conns)
	unkept       bool  // a buffer is not in kept memory: no record (lost in a crash)
	poisoned     bool  // a test's corruption (HookPoison): its records are written bad
	owned        bool  // a socket holds it: accepted, or connected
	owner        owner // what the socket layer keeps with it

	// The socket options (SetNoDelay, SetKeepAlive, SetLinger), kept
	// with the connection (keep_record.go). The buffers' sizes are
	// snd.limit and rcv.limit (SetSendBuffer, SetRecvBuffer).
	// softErr is the soft error an ICMP message left (icmp.go): what
	// the connection dies with if it times out. Not kept.
	softErr error

	noDelay    bool
	ackNow     bool // send an ACK at the end of this event
	kaOn       bool
	kaIdle     time.Duration
	kaInterval time.Duration
	kaCount    int
	kaProbes   int
	linger     int // seconds: <0 (NoLinger) graceful, 0 abortive close, >0 a close waits for the send queue
}

// owner is what the socket layer keeps with a connection, restored with it
// after a restart (keep.go): its socket, the listener's socket it was
// accepted from, and its stream offsets (servers/ops): how many bytes the
// send buffer took from the application's sends, and how many received
// bytes were consumed (proven received).
type owner struct {
	sock, from  uint64
	sent, rbase uint64
}

// own gives e to the socket layer: a socket holds it from now on.
func (e *Endpoint) own(o owner) {
	e.owner, e.owned = o, true
	e.t.touch(e)
	if k := e.t.keep; k != nil {
		k.newest = e // HookPoison's victim
	}
}

// oooSeg is out-of-order data held for reassembly: a contiguous range,
// with the FIN if it ends there.
type oooSeg struct {
	seq  uint32
	data []byte
	fin  bool
}

func (o oooSeg) end() uint32 { return o.seq + uint32(len(o.data)) }

// newEndpoint makes a connection and charges its reserve: t.admit must
// have said there is room.
func (t *Table) newEndpoint(id tuple) *Endpoint {
	iss := t.isn(id)
	e := &Endpoint{
		t: t, id: id,
		iss: iss, sndUna: iss, sndNxt: iss, recover: iss, highRxt: iss,
		snd:     ring{limit: t.cfg.SendBuffer},
		rcv:     ring{limit: t.cfg.RecvBuffer},
		smss:    536,
		rcvMSS:  536,
		rto:     InitialRTO,
		cc:      t.cfg.Congestion(),
		noDelay: t.cfg.NoDelay,
		tsOff:   t.tsOffset(id),
		kaIdle:  DefaultKeepAliveIdle, kaInterval: DefaultKeepAliveInterval, kaCount: DefaultKeepAliveCount,
		linger: NoLinger,
	}
	e.rcvShift = t.rcvShift()
	e.reserve()
	t.touch(e)
	return e
}

// rcvShift is the window scale we offer: the least that lets the window
// field say the whole receive buffer (RFC 7323 §2.3: at most 14).
func (t *Table) rcvShift() uint8 {
	s := uint8(0)
	for t.cfg.RecvBuffer>>s > 65535 && s < 14 {
		s++
	}
	return s
}

// peerOptions settles the options of the peer's SYN (or SYN-ACK, when
// active: then what we offered and it did not echo is off).
func (e *Endpoint) peerOptions(o *header.TCPOptions, passive bool) {
	mss := 536 // RFC 9293 §3.7.1 default
	if o.HasMSS && o.MSS > 0 {
		mss = int(o.MSS)
	}
	if passive {
		e.ourWS = o.HasWS
		e.sackOK = o.SACKPermitted
		e.tsOK = o.HasTimestamps
	} else {
		e.ourWS = e.ourWS && o.HasWS
		e.sackOK = e.sackOK && o.SACKPermitted
		e.tsOK = e.tsOK && o.HasTimestamps
	}
	if e.ourWS {
		e.sndShift = min(o.WindowScale, 14)
	} else {
		e.sndShift, e.rcvShift = 0, 0
	}
	e.smss = min(mss, e.t.mssFor(e.id.remoteAddr))
	if e.tsOK {
		e.smss -= 12
	}
	e.smss = max(e.smss, 64)
	e.cwnd = initialWindow(e.smss, e.t.cfg.InitialWindow)
	e.ssthresh = 1 << 30
}

// initialWindow is RFC 6928's IW for segs segments,
// min(segs*MSS, max(2*MSS, segs*1460)): with the default ten, ten segments
// of an Ethernet MSS, what Linux starts with, so that a short response
// goes out in the first round trip instead of the third (RFC 5681 §3.1's
// 3 or 4 segments); with 3 or 4, RFC 3390's window.
func initialWindow(mss, segs int) int {
	return min(segs*mss, max(2*mss, segs*1460))
}

// State is the connection's state.
func (e *Endpoint) State() State { return e.state }

// LocalAddr and RemoteAddr are the connection's ends.
func (e *Endpoint) LocalAddr() netip.AddrPort {
	return netip.AddrPortFrom(e.id.localAddr, e.id.localPort)
}
func (e *Endpoint) RemoteAddr() netip.AddrPort {
	return netip.AddrPortFrom(e.id.remoteAddr, e.id.remotePort)
}

// Err is why the connection failed (ErrReset, ErrRefused, ErrTimedOut),
// or nil.
func (e *Endpoint) Err() error { return e.err }

// SetNotify sets f to be called after every event that may have changed
// Readable, Writable, State or Err.
func (e *Endpoint) SetNotify(f func()) { e.notify = f }

// SetNoDelay turns Nagle's algorithm off (true) or on.
func (e *Endpoint) SetNoDelay(v bool) {
	e.t.touch(e)
	e.noDelay = v
	if v {
		e.output(e.t.clock.Now())
	}
}

// Keepalive defaults (Linux's tcp_keepalive_time, _intvl and _probes), and
// the bounds SetKeepAlive takes (Linux's MAX_TCP_KEEPIDLE, _KEEPINTVL and
// _KEEPCNT).
const (
	DefaultKeepAliveIdle     = 2 * time.Hour
	DefaultKeepAliveInterval = 75 * time.Second
	DefaultKeepAliveCount    = 9
	MaxKeepAliveIdle         = 32767 * time.Second
	MaxKeepAliveCount        = 127
)

// SetKeepAlive turns keepalive on or off: after idle without a segment
// from the peer, a probe every interval; count unanswered probes kill the
// connection with ErrTimedOut. Zero durations and count keep the current
// values (at first DefaultKeepAliveIdle, DefaultKeepAliveInterval,
// DefaultKeepAliveCount); larger ones than the maxima are cut to them. A
// change re-arms the timer: the idle time starts again now.
func (e *Endpoint) SetKeepAlive(on bool, idle, interval time.Duration, count int) {
	e.t.touch(e)
	e.kaOn = on
	if idle > 0 {
		e.kaIdle = min(idle, MaxKeepAliveIdle)
	}
	if interval > 0 {
		e.kaInterval = min(interval, MaxKeepAliveIdle)
	}
	if count > 0 {
		e.kaCount = min(count, MaxKeepAliveCount)
	}
	e.kaProbes = 0
	e.stopTimer(timerKeepalive)
	if on && e.synchronized() {
		e.setTimer(timerKeepalive, e.t.clock.Now().Add(e.kaIdle))
	}
}

// KeepAlive is what SetKeepAlive set.
func (e *Endpoint) KeepAlive() (on bool, idle, interval time.Duration, count int) {
	return e.kaOn, e.kaIdle, e.kaInterval, e.kaCount
}

// NoLinger is the linger of a connection that closes gracefully, in the
// background (SetLinger).
const NoLinger = -1

// SetLinger sets what Close does with data not yet sent, as SO_LINGER
// (and Go's TCPConn.SetLinger) does: sec < 0 (the default) closes
// gracefully, the data and the FIN going out in the background; sec == 0
// makes Close abortive, an RST with the queued data discarded; sec > 0
// is graceful, and the socket layer holds the close's answer until the
// send queue has drained (Drained) or sec seconds have passed.
func (e *Endpoint) SetLinger(sec int) {
	e.t.touch(e)
	e.linger = max(sec, NoLinger)
}

// Linger is what SetLinger set.
func (e *Endpoint) Linger() int { return e.linger }

// Drained reports whether everything written, and the FIN if one is
// queued, has been acknowledged, or the connection is gone: what a
// lingering close waits for.
func (e *Endpoint) Drained() bool {
	if e.state == Closed || e.state == TimeWait || e.err != nil {
		return true
	}
	return e.snd.Len() == 0 && (!e.finQ || e.finAckd)
}

// MinBuffer is the least SetSendBuffer and SetRecvBuffer make a buffer.
// The most is the Table's Config.SendBuffer and RecvBuffer (1 MiB by
// default), as Linux bounds SO_SNDBUF and SO_RCVBUF by wmem_max and
// rmem_max: the kept memory's blocks (keep.go) are sized for them, and a
// larger buffer would leave the connection unkept.
const MinBuffer = 4 << 10

// SetSendBuffer sets how many bytes the send buffer holds at most (Go's
// SetWriteBuffer, SO_SNDBUF), within MinBuffer and Config.SendBuffer;
// never less than it holds now. It grows as it fills, within the Table's
// buffer budget.
func (e *Endpoint) SetSendBuffer(n int) {
	e.t.touch(e)
	e.snd.limit = max(min(max(n, MinBuffer), e.t.cfg.SendBuffer), e.snd.Len())
	e.wake() // a writer may have room now
}

// SetRecvBuffer sets how many bytes the receive buffer holds at most (Go's
// SetReadBuffer, SO_RCVBUF), within MinBuffer and Config.RecvBuffer;
// never less than it holds plus the window already advertised (a window
// does not shrink, RFC 9293 §3.8.6).
func (e *Endpoint) SetRecvBuffer(n int) {
	e.t.touch(e)
	promised := e.rcv.Len()
	if e.synchronized() && seqGT(e.rcvAdv, e.rcvNxt) {
		promised += int(e.rcvAdv - e.rcvNxt)
	}
	e.rcv.limit = max(min(max(n, MinBuffer), e.t.cfg.RecvBuffer), promised)
	e.windowUpdate()
}

// Buffers are the send and receive buffers' sizes (SetSendBuffer,
// SetRecvBuffer).
func (e *Endpoint) Buffers() (send, recv int) { return e.snd.limit, e.rcv.limit }

// synchronized reports a state past the handshake (RFC 9293 §3.5.2).
func (e *Endpoint) synchronized() bool {
	return e.state >= Established
}

// Readable reports whether Read would not block: data, EOF or an error.
func (e *Endpoint) Readable() bool {
	return e.rcv.Len() > e.rcvLent || e.rcvFin || e.err != nil || e.state == Closed
}

// Writable reports whether Write would not block: room in the send buffer
// of a connection that may still send, or an error.
func (e *Endpoint) Writable() bool {
	if e.err != nil || e.state == Closed || e.finQ {
		return true // Write returns the error at once
	}
	return (e.state == Established || e.state == CloseWait) && e.snd.Free() > 0
}

// Read moves received bytes into p. It returns io.EOF after the peer's FIN
// once the data before it is read, the connection's error if it failed,
// and ErrWouldBlock if nothing is there yet.
func (e *Endpoint) Read(p []byte) (int, error) {
	if e.userClosed {
		return 0, ErrClosed
	}
	if e.rcv.Len() > 0 {
		e.t.touch(e)
		n := e.rcv.Read(p)
		e.rcvLent = max(e.rcvLent-n, 0)
		e.windowUpdate()
		return n, nil
	}
	return e.nothingToRead(p)
}

// nothingToRead is what a read into p returns when no byte is there for
// it: the connection's error, the end of the stream, or "would block".
func (e *Endpoint) nothingToRead(p []byte) (int, error) {
	switch {
	case e.err != nil:
		return 0, e.err
	case e.rcvFin:
		return 0, io.EOF
	case e.state == Closed:
		return 0, ErrNotConnected
	case len(p) == 0:
		return 0, nil
	}
	return 0, ErrWouldBlock
}

// ReadKept is Read for a reader whose replies may be lost (the socket
// side, servers/ops): the bytes it copies into p stay in the receive
// buffer, lent, until Consume proves them received; Rewind lends them
// again. They count against the window meanwhile.
func (e *Endpoint) ReadKept(p []byte) (int, error) {
	if e.userClosed {
		return 0, ErrClosed
	}
	if e.rcv.Len() > e.rcvLent {
		e.t.touch(e)
		n := e.rcv.Peek(e.rcvLent, p)
		e.rcvLent += n
		return n, nil
	}
	return e.nothingToRead(p)
}

// Consume drops the first n received bytes, which the reader has (n <=
// Unconsumed), lent or not, and opens the window by as much.
func (e *Endpoint) Consume(n int) {
	if n <= 0 {
		return
	}
	e.t.touch(e)
	e.rcv.Discard(n)
	e.rcvLent = max(e.rcvLent-n, 0)
	e.windowUpdate()
}

// Unconsumed is how many received bytes the buffer holds, lent or not.
func (e *Endpoint) Unconsumed() int { return e.rcv.Len() }

// Rewind takes back every byte lent by ReadKept: the next one reads them
// again.
func (e *Endpoint) Rewind() {
	if e.rcvLent != 0 {
		e.t.touch(e)
		e.rcvLent = 0
	}
}

// windowUpdate sends an ACK after a Read when the window has opened by
// two segments or half the buffer (RFC 9293 §3.8.6.2.2, receiver SWS
// avoidance), or from zero.
func (e *Endpoint) windowUpdate() {
	if !e.synchronized() || e.rcvFin {
		return
	}
	adv := e.rcvAdv - e.rcvNxt
	if seqLT(e.rcvAdv, e.rcvNxt) {
		adv = 0
	}
	win := uint32(e.rcvWindow())
	if win > adv && (adv == 0 || win-adv >= uint32(min(2*e.rcvMSS, e.rcv.limit/2))) {
		e.sendAck(e.t.clock.Now())
	}
}

// Write queues as much of p as the send buffer holds and sends what the
// windows allow. It returns ErrWouldBlock if nothing fit, ErrClosed after
// CloseWrite or Close, the connection's error if it failed.
func (e *Endpoint) Write(p []byte) (int, error) {
	switch {
	case e.err != nil:
		return 0, e.err
	case e.finQ || e.userClosed:
		return 0, ErrClosed
	case e.state == Closed:
		return 0, ErrNotConnected
	case e.state != SynSent && e.state != SynReceived && e.state != Established && e.state != CloseWait:
		return 0, ErrClosed
	}
	n := e.snd.Write(p)
	if n == 0 && len(p) > 0 {
		return 0, ErrWouldBlock
	}
	e.t.touch(e)
	e.output(e.t.clock.Now())
	return n, nil
}

// WriteLingering queues all of p even past the send buffer's limit, for the
// last bytes an application handed over before it closed: a caller about to
// Close takes what is still waiting for room (a few buffers at most) rather
// than dropping it, as Linux sends a closed socket's buffered data.
func (e *Endpoint) WriteLingering(p []byte) (int, error) {
	e.t.touch(e)
	e.snd.lingering = true
	if e.snd.Free() < len(p) {
		e.snd.limit = e.snd.Len() + len(p)
	}
	return e.Write(p)
}

// CloseWrite sends a FIN after the queued data (shutdown(SHUT_WR)); the
// connection keeps receiving.
func (e *Endpoint) CloseWrite() error {
	e.t.touch(e)
	if e.err != nil {
		return e.err
	}
	now := e.t.clock.Now()
	switch e.state {
	case SynSent:
		e.terminate(nil)
		return nil
	case SynReceived, Established:
		e.finQ = true
		if e.state == Established {
			e.state = FinWait1
		}
	case CloseWait:
		e.finQ = true
		e.state = LastAck
	case Closed:
		return ErrNotConnected
	default:
		return nil // already closing
	}
	e.output(now)
	return nil
}

// Close closes both directions. Unread data (now or arriving later) makes
// it an abortive close, as in Linux: the peer gets an RST; so does a
// linger of 0 (SetLinger). Otherwise the
// FIN handshake runs on; the Table forgets the connection when it ends.
func (e *Endpoint) Close() error {
	e.t.touch(e)
	if e.userClosed {
		return nil
	}
	e.userClosed = true
	if e.listener != nil {
		e.listener.forget(e)
		e.listener = nil
	}
	if e.rcv.Len() > 0 || len(e.ooo) > 0 || e.linger == 0 {
		e.Abort() // SetLinger(0): abortive, as SO_LINGER's zero
		return nil
	}
	if e.err != nil || e.state == Closed {
		return nil
	}
	err := e.CloseWrite()
	if c := e.tw; c != nil {
		c.e, e.tw = nil, nil // TIME-WAIT runs on without the endpoint
	}
	if e.state == FinWait2 {
		e.setTimer(timerClose, e.t.clock.Now().Add(FinWait2Time))
	}
	return err
}

// Abort resets the connection: an RST to the peer in synchronized states
// (and SYN-RECEIVED), and the connection is gone.
func (e *Endpoint) Abort() {
	e.t.touch(e)
	switch e.state {
	case Closed, TimeWait, SynSent:
	default:
		e.t.sendRaw(e.id, e.sndNxt, 0, header.TCPFlagRST, 0, nil)
	}
	if e.err == nil && !e.userClosed {
		e.err = ErrAborted
	}
	e.terminate(e.err)
}

// terminate closes the connection with err (nil: an orderly end) and
// removes it from the Table.
func (e *Endpoint) terminate(err error) {
	e.t.touch(e)
	if e.err == nil {
		e.err = err
	}
	e.state = Closed
	e.stopTimers()
	if e.listener != nil {
		e.listener.forget(e)
		e.listener = nil
	}
	e.t.remove(e)
	e.wake()
}

func (e *Endpoint) wake() {
	if e.notify != nil {
		e.notify()
	}
}

// rcvWindow is the window to advertise: free receive buffer, up to what
// the window field can say.
func (e *Endpoint) rcvWindow() int {
	if e.state < Established {
		return min(e.rcv.Free(), 65535) // SYNs: never scaled
	}
	return min(e.rcv.Free(), 65535<<e.rcvShift)
}

// unlent is how many received bytes e holds that ReadKept has not handed
// out.
func unlent(e *Endpoint) int { return e.rcv.Len() - e.rcvLent }
