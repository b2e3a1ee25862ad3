package tcp

import (
	"time"

	"keepnet/servers/header"
)

// TIME-WAIT (RFC 9293 §3.10.7.4; issue 21). A connection that enters it
// leaves the Table's connections for a small record, timeWaitConn: its
// 4-tuple, the sequence numbers and timestamps it needs to answer what the
// peer may still send (a retransmitted FIN, an old duplicate, an RST, a
// SYN), and when it ends. Its buffers go back to the budget at once.
//
// Every TIME-WAIT lasts 2*MSL, so ending order is entering order: the
// records are a FIFO, oldest first, and the loop looks at its head only
// (NextTimeout, Tick). A retransmitted FIN restarts the 2*MSL (RFC 9293):
// its record moves to the tail, which keeps the order. Beyond
// Config.MaxTimeWait the oldest is recycled (budget.go's bound).
//
// The Endpoint the user may still hold (after CloseWrite, with data to
// read) stays in TIME-WAIT as long as the record, and closes with it; one
// the user closed is not kept.

// timeWaitConn is a connection in TIME-WAIT.
type timeWaitConn struct {
	prev, next *timeWaitConn // the Table's FIFO
	id         tuple
	end        time.Time // when TIME-WAIT ends
	e          *Endpoint // the endpoint while its user holds it; nil once closed

	sndNxt     uint32 // all we sent, our FIN included, is acknowledged
	rcvNxt     uint32 // past the peer's FIN
	rcvWnd     uint32 // the window past rcvNxt the peer was offered
	wnd        uint16 // the window field of our ACKs
	sackOK     bool   // D-SACK for duplicate data
	tsOK       bool
	tsOff      uint32
	tsRecent   uint32 // TS.Recent
	tsRecentAt time.Time
	maxWnd     uint32 // the peer's largest window: RFC 5961 §5.2's ACK check

	slot  int  // its record in the kept memory (keep.go), plus one; 0: none
	dirty bool // changed since the last commit
	gone  bool // removed: the commit frees its slot
}

// timeWaitList is the FIFO of TIME-WAIT records, with an index by 4-tuple.
type timeWaitList struct {
	head, tail *timeWaitConn
	byID       map[tuple]*timeWaitConn
}

func (l *timeWaitList) len() int { return len(l.byID) }

func (l *timeWaitList) pushBack(c *timeWaitConn) {
	c.prev, c.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *timeWaitList) unlink(c *timeWaitConn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// enterTimeWait ends e's part in the Table: its TIME-WAIT is a record.
func (e *Endpoint) enterTimeWait(now time.Time) {
	e.state = TimeWait
	e.stopTimers()
	e.t.timeWaitEnter(e, now)
}

// timeWaitEnter replaces e, just in TIME-WAIT, by its record; beyond
// Config.MaxTimeWait the oldest record goes first.
func (t *Table) timeWaitEnter(e *Endpoint, now time.Time) {
	if t.timeWait.len() >= t.cfg.MaxTimeWait {
		t.recycleTimeWait()
	}
	e.release()
	wnd := min(e.rcvWindow()>>e.rcvShift, 65535)
	c := &timeWaitConn{
		id: e.id, end: now.Add(2 * MSL),
		sndNxt: e.sndNxt, rcvNxt: e.rcvNxt,
		rcvWnd: max(e.rcvAdv-e.rcvNxt, uint32(wnd)<<e.rcvShift), wnd: uint16(wnd),
		sackOK: e.sackOK, tsOK: e.tsOK, tsOff: e.tsOff, tsRecent: e.tsRecent, tsRecentAt: e.tsRecentAt,
		maxWnd: e.maxWnd,
	}
	if seqLT(e.rcvAdv, e.rcvNxt) {
		c.rcvWnd = uint32(wnd) << e.rcvShift
	}
	if !e.userClosed {
		c.e, e.tw = e, c
	}
	delete(t.conns, e.id) // its port stays counted in t.ports
	e.inTable = false
	t.timeWait.byID[c.id] = c
	t.timeWait.pushBack(c)
	t.touch(e)
	t.touchTW(c)
}

// timeWaitRemove forgets c; its endpoint, if held, is no longer tied to it.
func (t *Table) timeWaitRemove(c *timeWaitConn) {
	c.gone = true
	t.touchTW(c)
	t.timeWait.unlink(c)
	delete(t.timeWait.byID, c.id)
	t.unport(c.id.localPort)
	if c.e != nil {
		t.touch(c.e)
		c.e.tw, c.e = nil, nil
	}
}

// timeWaitEnd ends c's TIME-WAIT: expired, recycled, or reset.
func (t *Table) timeWaitEnd(c *timeWaitConn) {
	e := c.e
	t.timeWaitRemove(c)
	if e != nil {
		e.terminate(nil)
	}
}

// recycleTimeWait ends the oldest TIME-WAIT connection before its time.
func (t *Table) recycleTimeWait() {
	t.c.TimeWaitRecycled++
	t.timeWaitEnd(t.timeWait.head)
}

// timeWaitExpire ends every TIME-WAIT due at now.
func (t *Table) timeWaitExpire(now time.Time) {
	for c := t.timeWait.head; c != nil && !c.end.After(now); c = t.timeWait.head {
		t.timeWaitEnd(c)
	}
}

// timeWaitNext is when the oldest TIME-WAIT ends; zero if there is none.
func (t *Table) timeWaitNext() time.Time {
	if c := t.timeWait.head; c != nil {
		return c.end
	}
	return time.Time{}
}

// TimeWait is the number of connections in TIME-WAIT.
func (t *Table) TimeWait() int { return t.timeWait.len() }

// timeWaitInput is a segment for a connection in TIME-WAIT: the steps of
// RFC 9293 §3.10.7.4 that can still apply, as Endpoint.input takes them
// (PAWS, acceptability, RST, SYN, TS.Recent, the ACK's checks). The
// peer's FIN again is acknowledged and restarts the 2*MSL; a new SYN is
// challenged like any SYN in a synchronized state (RFC 5961 §4.2; no
// RFC 6191 reuse).
func (t *Table) timeWaitInput(c *timeWaitConn, s *segment, now time.Time) {
	// PAWS (RFC 7323 §5.3). A segment it drops changes nothing here
	// (there is nothing left to process), so a reordered ACK that
	// Endpoint.input lets through need not be told apart.
	if c.tsOK && s.opts.HasTimestamps && !s.has(flagRST) && seqLT(s.opts.TSVal, c.tsRecent) {
		if now.Sub(c.tsRecentAt) <= pawsIdle {
			t.c.InPAWSDrops++
			if s.length() > 0 {
				t.timeWaitAck(c, now, seqRange{})
			}
			return
		}
		c.tsRecent, c.tsRecentAt = s.opts.TSVal, now
	}
	// 1. Acceptability; what fails it is answered with an ACK.
	ackNow := false
	if !acceptable(s, c.rcvNxt, c.rcvWnd) {
		switch {
		case c.rcvWnd == 0 && s.seq == c.rcvNxt && s.has(flagACK) && !s.has(flagRST|flagSYN):
			ackNow = true // a closed window takes the ACK, not the data
		case s.has(flagRST):
			return
		default:
			if s.has(flagFIN) {
				c.end = now.Add(2 * MSL) // the peer's FIN again: 2*MSL from now
				t.timeWait.unlink(c)
				t.timeWait.pushBack(c)
			}
			var dup seqRange
			if end := s.seq + uint32(len(s.data)); c.sackOK && seqLT(s.seq, end) && seqLEQ(end, c.rcvNxt) {
				dup = seqRange{s.seq, end}
			}
			t.timeWaitAck(c, now, dup)
			return
		}
	}
	// 2. RST: at RCV.NXT it ends TIME-WAIT; elsewhere it is challenged.
	if s.has(flagRST) {
		if s.seq == c.rcvNxt {
			t.timeWaitEnd(c)
		} else if t.challengeAllowed(now) {
			t.timeWaitAck(c, now, seqRange{})
		}
		return
	}
	// 4. SYN: a challenge ACK.
	if s.has(flagSYN) {
		if t.challengeAllowed(now) {
			t.timeWaitAck(c, now, seqRange{})
		}
		return
	}
	if c.tsOK && s.opts.HasTimestamps && seqGEQ(s.opts.TSVal, c.tsRecent) && seqLEQ(s.seq, c.rcvNxt) {
		c.tsRecent, c.tsRecentAt = s.opts.TSVal, now
	}
	// 5. An ACK of what we never sent, or too old, is answered.
	if ackNow || s.has(flagACK) && (seqGT(s.ack, c.sndNxt) || seqLT(s.ack, c.sndNxt-c.maxWnd)) {
		t.timeWaitAck(c, now, seqRange{})
	}
}

// timeWaitAck sends c's ACK: timestamps if on, a D-SACK block for dup.
func (t *Table) timeWaitAck(c *timeWaitConn, now time.Time, dup seqRange) {
	var o header.TCPOptions
	if c.tsOK {
		o.HasTimestamps, o.TSVal, o.TSEcr = true, uint32(now.Sub(t.epoch)/time.Millisecond)+c.tsOff, c.tsRecent
	}
	if dup.size() > 0 {
		o.SACK[0], o.NumSACK = header.TCPSACKBlock{Left: dup.left, Right: dup.right}, 1
	}
	t.sendRaw(c.id, c.sndNxt, c.rcvNxt, flagACK, c.wnd, &o)
}
