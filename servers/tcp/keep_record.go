package tcp

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"time"
)

// The records of keep.go: a connection's whole state, and a TIME-WAIT's,
// as bytes. Little-endian, fixed order, no field names: the version byte of
// the copy says which layout (keptRecordVersion); a change of layout changes
// it. A restarted tcp reads the records of every version from
// minRecordVersion on — a later version only appends fields, and what an
// older record lacks takes its default — and finds none of another version
// (those connections are lost, never misread).
//
//	version 1  the connection's state up to its keepalive settings
//	version 2  + its linger and its buffers' sizes (the socket options
//	           SetLinger, SetSendBuffer, SetRecvBuffer; issue 19)
//	version 3  + its ECN state (ecn.go): a byte of flags and the end of
//	           the window it reduced for (ecnRecordSize bytes)

const (
	keptRecordVersion = 3
	minRecordVersion  = 1
	ecnRecordSize     = 1 + 4 // version 3's fields
)

// enc writes fields into a record's bytes, b, at n: in place, without
// growing anything (a commit allocates nothing). A record that does not
// fit sets n past len(b), and nothing is written beyond it.
type enc struct {
	b []byte
	n int
}

// room is where the next k bytes go, or nil if they do not fit.
func (w *enc) room(k int) []byte {
	at := w.n
	w.n += k
	if w.n > len(w.b) {
		return nil
	}
	return w.b[at:w.n]
}

// fits reports whether everything written fitted; bytes is what was.
func (w *enc) fits() bool    { return w.n <= len(w.b) }
func (w *enc) bytes() []byte { return w.b[:w.n] }

func (w *enc) u8(v uint8) {
	if b := w.room(1); b != nil {
		b[0] = v
	}
}

func (w *enc) u16(v uint16) {
	if b := w.room(2); b != nil {
		binary.LittleEndian.PutUint16(b, v)
	}
}

func (w *enc) u32(v uint32) {
	if b := w.room(4); b != nil {
		binary.LittleEndian.PutUint32(b, v)
	}
}

func (w *enc) u64(v uint64) {
	if b := w.room(8); b != nil {
		binary.LittleEndian.PutUint64(b, v)
	}
}

func (w *enc) int(v int)           { w.u64(uint64(int64(v))) }
func (w *enc) f64(v float64)       { w.u64(math.Float64bits(v)) }
func (w *enc) dur(v time.Duration) { w.u64(uint64(v)) }

func (w *enc) bool(v bool) {
	if v {
		w.u8(1)
	} else {
		w.u8(0)
	}
}

// time is nanoseconds since the Unix epoch; the zero Time is 0.
func (w *enc) time(v time.Time) {
	if v.IsZero() {
		w.u64(0)
		return
	}
	w.u64(uint64(v.UnixNano()))
}

func (w *enc) tuple(id tuple) {
	l, r := id.localAddr.As16(), id.remoteAddr.As16()
	if b := w.room(16); b != nil {
		copy(b, l[:])
	}
	w.u16(id.localPort)
	if b := w.room(16); b != nil {
		copy(b, r[:])
	}
	w.u16(id.remotePort)
}

func (w *enc) ranges(rs []seqRange) {
	w.u8(uint8(len(rs)))
	for _, r := range rs {
		w.u32(r.left)
		w.u32(r.right)
	}
}

// dec reads fields back; the first short read sets bad and every later
// read returns zero.
type dec struct {
	b   []byte
	bad bool
}

func (r *dec) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *dec) u8() uint8          { return r.take(1)[0] }
func (r *dec) u16() uint16        { return binary.LittleEndian.Uint16(r.take(2)) }
func (r *dec) u32() uint32        { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *dec) u64() uint64        { return binary.LittleEndian.Uint64(r.take(8)) }
func (r *dec) int() int           { return int(int64(r.u64())) }
func (r *dec) f64() float64       { return math.Float64frombits(r.u64()) }
func (r *dec) dur() time.Duration { return time.Duration(r.u64()) }
func (r *dec) bool() bool         { return r.u8() != 0 }

func (r *dec) time() time.Time {
	ns := int64(r.u64())
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (r *dec) tuple() tuple {
	var id tuple
	id.localAddr = netip.AddrFrom16([16]byte(r.take(16))).Unmap()
	id.localPort = r.u16()
	id.remoteAddr = netip.AddrFrom16([16]byte(r.take(16))).Unmap()
	id.remotePort = r.u16()
	return id
}

func (r *dec) ranges(max int) []seqRange {
	n := int(r.u8())
	if n > max {
		r.bad = true
		return nil
	}
	var rs []seqRange
	for range n {
		rs = append(rs, seqRange{r.u32(), r.u32()})
	}
	return rs
}

// errCodes number the errors a connection can die with.
var errCodes = []error{nil, ErrReset, ErrRefused, ErrTimedOut, ErrAborted, ErrClosed, ErrUnreachable}

func errCode(err error) uint8 {
	for i, e := range errCodes {
		if e == err {
			return uint8(i)
		}
	}
	return 1 // any other is a reset
}

// The congestion algorithms a record keeps, by kind (0: another, which
// starts afresh after a restart; its window is kept: cwnd and ssthresh are
// the Endpoint's). A type switch, not an interface, so that encoding a
// record allocates nothing.
const (
	ccOther   = 0
	ccNewReno = 1
	ccCUBIC   = 2
)

func (w *enc) congestion(cc Congestion) {
	switch c := cc.(type) {
	case *NewReno:
		w.u8(ccNewReno)
		w.int(c.bytesAcked)
	case *CUBIC:
		w.u8(ccCUBIC)
		w.f64(c.wMax)
		w.f64(c.k)
		w.time(c.epochStart)
		w.f64(c.wEst)
		w.f64(c.cwndSeg)
	default:
		w.u8(ccOther)
	}
}

// congestion restores what w.congestion wrote into cc, a fresh algorithm
// of this generation's kind; a record of another kind is bad.
func (r *dec) congestion(cc Congestion) {
	kind := r.u8()
	switch c := cc.(type) {
	case *NewReno:
		if kind == ccNewReno {
			c.bytesAcked = r.int()
			return
		}
	case *CUBIC:
		if kind == ccCUBIC {
			c.wMax, c.k, c.epochStart, c.wEst, c.cwndSeg = r.f64(), r.f64(), r.time(), r.f64(), r.f64()
			return
		}
	default:
		if kind == ccOther {
			return
		}
	}
	r.bad = true
}

// ringRec is where a buffer lies in the kept memory and what it holds.
type ringRec struct {
	off, size, head, n int
	lingering          bool
}

func (w *enc) ring(rg *ring) {
	if rg.buf == nil {
		w.int(-1)
		w.int(0)
	} else {
		w.int(rg.off)
		w.int(len(rg.buf))
	}
	w.int(rg.head)
	w.int(rg.n)
	w.bool(rg.lingering)
}

func (r *dec) ring() ringRec {
	return ringRec{off: r.int(), size: r.int(), head: r.int(), n: r.int(), lingering: r.bool()}
}

// encodeEndpoint writes e's record: everything but its out-of-order data
// (keep.go says why), its place in the Table (rebuilt) and its notify.
func encodeEndpoint(w *enc, e *Endpoint) {
	w.tuple(e.id)
	w.u8(uint8(e.state))
	w.u8(errCode(e.err))
	w.bool(e.userClosed)
	w.bool(e.owned)
	w.u64(e.owner.sock)
	w.u64(e.owner.from)
	w.u64(e.owner.sent)
	w.u64(e.owner.rbase)
	var lport uint16
	if e.listener != nil {
		lport = e.listener.port
	}
	w.u16(lport)
	w.bool(e.tw != nil)

	w.u32(e.iss)
	w.u32(e.sndUna)
	w.u32(e.sndNxt)
	w.u32(e.sndWnd)
	w.u32(e.maxWnd)
	w.u32(e.sndWl1)
	w.u32(e.sndWl2)
	w.ring(&e.snd)
	w.bool(e.finQ)
	w.bool(e.finAckd)

	w.u32(e.irs)
	w.u32(e.rcvNxt)
	w.u32(e.rcvAdv)
	w.ring(&e.rcv)
	w.bool(e.rcvFin)
	w.u32(e.rcvDSACK.left)
	w.u32(e.rcvDSACK.right)
	w.int(e.rcvMSS)

	w.int(e.smss)
	w.bool(e.ourWS)
	w.u8(e.sndShift)
	w.u8(e.rcvShift)
	w.bool(e.sackOK)
	w.bool(e.tsOK)
	w.u32(e.tsRecent)
	w.time(e.tsRecentAt)
	w.u32(e.tsOff)
	w.u32(e.lastAck)

	w.bool(e.hasRTT)
	w.dur(e.srtt)
	w.dur(e.rttvar)
	w.dur(e.rto)
	w.bool(e.rttTiming)
	w.u32(e.rttSeq)
	w.time(e.rttStart)
	w.int(e.retries)

	w.congestion(e.cc)
	w.int(e.cwnd)
	w.int(e.ssthresh)
	w.int(e.dupAcks)
	w.bool(e.inRecovery)
	w.bool(e.inLoss)
	w.bool(e.partialSeen)
	w.u32(e.recover)
	w.ranges(e.sb.r)
	w.bool(e.sackSeen)
	w.u32(e.highRxt)
	w.bool(e.rescued)
	w.u8(uint8(len(e.rxt)))
	for _, x := range e.rxt {
		w.u32(x.left)
		w.u32(x.right)
		w.u32(x.mark)
	}
	w.ranges(e.relost)

	w.bool(e.undoArmed)
	w.bool(e.undoEifel)
	w.int(e.undoCwnd)
	w.int(e.undoSsthresh)
	w.u32(e.undoTS)
	w.int(e.undoRetrans)
	w.int(e.undoDSACKs)
	w.ranges(e.undoLog)
	w.bool(e.undoLogFull)

	for _, at := range e.timers[:numKeptTimers] {
		w.time(at)
	}
	w.int(e.persistN)
	w.bool(e.noDelay)
	w.bool(e.kaOn)
	w.dur(e.kaIdle)
	w.dur(e.kaInterval)
	w.int(e.kaCount)
	w.int(e.kaProbes)
	// Version 2.
	w.int(e.linger)
	w.int(e.snd.limit)
	w.int(e.rcv.limit)
	// Version 3.
	w.u8(e.ecn.bits())
	w.u32(e.ecn.end)
}

// keptEndpoint is a decoded record: the Endpoint, and what restoring it
// into the Table needs.
type keptEndpoint struct {
	e          *Endpoint
	snd, rcv   ringRec
	listenPort uint16 // in this listener's queues; 0: none
	inTimeWait bool   // its TIME-WAIT record is kept too
	// The buffers' limits (SetSendBuffer, SetRecvBuffer): the Table's
	// defaults in a version 1 record.
	sndLimit, rcvLimit int
}

var errBadRecord = errors.New("bad record")

// maxKeptLimit bounds a buffer's limit in a record: a sanity bound, far
// above Config's buffers and what WriteLingering adds to them.
const maxKeptLimit = 1 << 30

// decodeEndpoint reads a record written by encodeEndpoint, of the given
// version (minRecordVersion to keptRecordVersion). Its buffers are not
// attached yet (restoreRings does that once they are claimed).
func decodeEndpoint(t *Table, r *dec, version uint8) (keptEndpoint, error) {
	e := &Endpoint{t: t}
	k := keptEndpoint{e: e}
	e.id = r.tuple()
	e.state = State(r.u8())
	if c := int(r.u8()); c < len(errCodes) {
		e.err = errCodes[c]
	} else {
		r.bad = true
	}
	e.userClosed = r.bool()
	e.owned = r.bool()
	e.owner = owner{sock: r.u64(), from: r.u64(), sent: r.u64(), rbase: r.u64()}
	k.listenPort = r.u16()
	k.inTimeWait = r.bool()

	e.iss, e.sndUna, e.sndNxt, e.sndWnd = r.u32(), r.u32(), r.u32(), r.u32()
	e.maxWnd, e.sndWl1, e.sndWl2 = r.u32(), r.u32(), r.u32()
	k.snd = r.ring()
	e.finQ, e.finAckd = r.bool(), r.bool()

	e.irs, e.rcvNxt, e.rcvAdv = r.u32(), r.u32(), r.u32()
	k.rcv = r.ring()
	e.rcvFin = r.bool()
	e.rcvDSACK = seqRange{r.u32(), r.u32()}
	e.rcvMSS = r.int()

	e.smss = r.int()
	e.ourWS = r.bool()
	e.sndShift, e.rcvShift = r.u8(), r.u8()
	e.sackOK, e.tsOK = r.bool(), r.bool()
	e.tsRecent = r.u32()
	e.tsRecentAt = r.time()
	e.tsOff, e.lastAck = r.u32(), r.u32()

	e.hasRTT = r.bool()
	e.srtt, e.rttvar, e.rto = r.dur(), r.dur(), r.dur()
	e.rttTiming = r.bool()
	e.rttSeq = r.u32()
	e.rttStart = r.time()
	e.retries = r.int()

	e.cc = t.cfg.Congestion()
	r.congestion(e.cc)
	e.cwnd, e.ssthresh, e.dupAcks = r.int(), r.int(), r.int()
	e.inRecovery, e.inLoss, e.partialSeen = r.bool(), r.bool(), r.bool()
	e.recover = r.u32()
	e.sb.r = r.ranges(maxSACKRanges + 1)
	e.sackSeen = r.bool()
	e.highRxt = r.u32()
	e.rescued = r.bool()
	if n := int(r.u8()); n <= maxRxtTracked+1 {
		for range n {
			e.rxt = append(e.rxt, rxtSeg{seqRange{r.u32(), r.u32()}, r.u32()})
		}
	} else {
		r.bad = true
	}
	e.relost = r.ranges(2*maxRxtTracked + 2)

	e.undoArmed, e.undoEifel = r.bool(), r.bool()
	e.undoCwnd, e.undoSsthresh = r.int(), r.int()
	e.undoTS = r.u32()
	e.undoRetrans, e.undoDSACKs = r.int(), r.int()
	e.undoLog = r.ranges(maxRxtTracked + 1)
	e.undoLogFull = r.bool()

	var timers [numTimers]time.Time
	for i := range numKeptTimers {
		timers[i] = r.time()
	}
	e.persistN = r.int()
	e.noDelay, e.kaOn = r.bool(), r.bool()
	e.kaIdle, e.kaInterval = r.dur(), r.dur()
	e.kaCount, e.kaProbes = r.int(), r.int()
	e.linger, k.sndLimit, k.rcvLimit = NoLinger, t.cfg.SendBuffer, t.cfg.RecvBuffer
	if version >= 2 {
		e.linger, k.sndLimit, k.rcvLimit = r.int(), r.int(), r.int()
	}
	if version >= 3 { // before it: no ECN
		if !e.ecn.fromBits(r.u8()) {
			r.bad = true
		}
		e.ecn.end = r.u32()
	}
	if r.bad || len(r.b) != 0 {
		return k, errBadRecord
	}
	e.timers = timers // armed into the heap by the restore
	if err := k.check(t); err != nil {
		return k, err
	}
	return k, nil
}

// check is what a record must satisfy to be adopted: a checksum catches a
// torn or scribbled record, this catches one written well from a state a
// fault had already broken.
func (k *keptEndpoint) check(t *Table) error {
	e := k.e
	okRing := func(r ringRec) bool {
		if r.size == 0 {
			return r.off == -1 && r.head == 0 && r.n == 0
		}
		return r.off >= 0 && r.size >= pageSize && r.size&(r.size-1) == 0 &&
			r.head >= 0 && r.head < r.size && r.n >= 0 && r.n <= r.size
	}
	switch {
	case e.state > TimeWait || e.state == Listen:
		return errors.New("bad state")
	case !e.id.localAddr.IsValid() || !e.id.remoteAddr.IsValid() || e.id.localPort == 0 || e.id.remotePort == 0:
		return errors.New("bad addresses")
	case !okRing(k.snd) || !okRing(k.rcv):
		return errors.New("bad buffer")
	case e.state >= Established && seqGT(e.sndUna, e.sndNxt):
		return errors.New("SND.UNA beyond SND.NXT")
	case k.sndLimit <= 0 || k.sndLimit > maxKeptLimit || k.rcvLimit <= 0 || k.rcvLimit > maxKeptLimit:
		return errors.New("bad buffer limits")
	case e.state >= Established && k.snd.n > int(e.sndNxt-e.sndUna)+max(k.sndLimit, t.cfg.SendBuffer)+MaxOffloadData:
		return errors.New("send buffer beyond the window")
	case e.linger < NoLinger || e.kaCount < 0 || e.kaIdle < 0 || e.kaInterval < 0:
		return errors.New("bad socket options")
	case e.smss <= 0 || e.smss > 65535 || e.sndShift > 14 || e.rcvShift > 14:
		return errors.New("bad options")
	case e.cwnd < 0 || e.ssthresh < 0 || e.rto < 0 || e.srtt < 0:
		return errors.New("bad congestion state")
	}
	return nil
}

// encodeTimeWait writes a TIME-WAIT record.
func encodeTimeWait(w *enc, c *timeWaitConn) {
	w.tuple(c.id)
	w.time(c.end)
	w.u32(c.sndNxt)
	w.u32(c.rcvNxt)
	w.u32(c.rcvWnd)
	w.u16(c.wnd)
	w.bool(c.sackOK)
	w.bool(c.tsOK)
	w.u32(c.tsOff)
	w.u32(c.tsRecent)
	w.time(c.tsRecentAt)
	w.u32(c.maxWnd)
	w.bool(c.e != nil)
}

// decodeTimeWait reads one back; held says its endpoint is kept too.
func decodeTimeWait(r *dec) (c *timeWaitConn, held bool, err error) {
	c = &timeWaitConn{}
	c.id = r.tuple()
	c.end = r.time()
	c.sndNxt, c.rcvNxt, c.rcvWnd = r.u32(), r.u32(), r.u32()
	c.wnd = r.u16()
	c.sackOK, c.tsOK = r.bool(), r.bool()
	c.tsOff, c.tsRecent = r.u32(), r.u32()
	c.tsRecentAt = r.time()
	c.maxWnd = r.u32()
	held = r.bool()
	if r.bad || len(r.b) != 0 || c.end.IsZero() || !c.id.localAddr.IsValid() || !c.id.remoteAddr.IsValid() {
		return nil, false, errBadRecord
	}
	return c, held, nil
}
