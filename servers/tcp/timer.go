package tcp

import "time"

// Timers (issue 21). A connection has seven timers (timerKind); the server
// loop asks the Table after every round when the next one is due
// (NextTimeout) and calls Tick then. Neither may look at every connection:
// with thousands of idle ones that cost tcp most of its CPU. So:
//
//   - a connection's timers change only through setTimer and stopTimer,
//     which keep e.due, its earliest deadline, and its place in the
//     Table's heap of connections keyed by due (a binary min-heap; each
//     connection knows its index, so a deadline that moves is re-keyed in
//     O(log n));
//   - a connection with no timer armed is not in the heap: an idle
//     connection costs nothing per event;
//   - NextTimeout reads the root, O(1); Tick takes out the connections
//     due, O(log n) each, and fires only those;
//   - a closed connection has no timers (terminate stops them all), and
//     setTimer refuses to arm one on it, or on one in TIME-WAIT: nothing
//     fires for a connection that is gone.
//
// A heap rather than a timing wheel: deadlines here are exact (a delayed
// ACK 40 ms away, an RTO of a few hundred ms, keepalive in hours), a heap
// keeps them so without a tick granularity, and n is bounded by
// Config.MaxConns. TIME-WAIT connections are not in it at all: they are
// records in a FIFO (timewait.go).

// timerKind names one of a connection's timers.
type timerKind uint8

const (
	timerRTO       timerKind = iota // retransmission (RFC 6298), of a SYN too
	timerDelack                     // delayed ACK
	timerPersist                    // zero-window probe
	timerKeepalive                  // keepalive probe, or the idle time before it
	timerClose                      // FIN-WAIT-2 of a connection the user closed
	timerTLP                        // tail loss probe (RFC 8985 §7)
	timerRACK                       // RACK's reorder timer (RFC 8985 §6.2 step 5)
	numTimers

	// numKeptTimers are the timers a kept record holds (keep_record.go):
	// those before timerTLP. RACK-TLP's are not kept: a restarted tcp
	// knows no transmit times and falls back to RFC 6675 and the RTO.
	numKeptTimers = timerTLP
)

// armed reports whether timer k is set.
func (e *Endpoint) armed(k timerKind) bool { return !e.timers[k].IsZero() }

// setTimer arms timer k for at, or stops it if at is zero. It is the one
// place a connection's deadlines change, so that its place in the heap
// always follows them.
func (e *Endpoint) setTimer(k timerKind, at time.Time) {
	if e.state == Closed || e.state == TimeWait {
		at = time.Time{} // gone, or its TIME-WAIT is a record (timewait.go)
	}
	e.timers[k] = at
	e.retime()
}

// stopTimer stops timer k.
func (e *Endpoint) stopTimer(k timerKind) {
	if e.armed(k) {
		e.setTimer(k, time.Time{})
	}
}

// stopTimers stops every timer.
func (e *Endpoint) stopTimers() {
	e.timers = [numTimers]time.Time{}
	e.retime()
}

// retime recomputes e.due from the timers and moves e in the heap to
// match: in at its place, out when no timer is armed.
func (e *Endpoint) retime() {
	var due time.Time
	for _, d := range e.timers {
		due = earliest(due, d)
	}
	h := &e.t.timers
	switch {
	case due.IsZero():
		e.due = due
		if e.heapPos > 0 {
			h.remove(e)
		}
	case e.heapPos == 0:
		e.due = due
		h.push(e)
	case !due.Equal(e.due):
		e.due = due
		h.fix(e.heapPos - 1)
	}
}

// earliest is the earlier of two times, the zero time meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// timerHeap is a binary min-heap of the connections with a timer armed,
// keyed by their earliest deadline (Endpoint.due). Each connection keeps
// its index plus one in heapPos (0: not in the heap).
type timerHeap []*Endpoint

func (h timerHeap) less(i, j int) bool { return h[i].due.Before(h[j].due) }

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapPos, h[j].heapPos = i+1, j+1
}

// up moves element i towards the root while it is earlier than its parent.
func (h timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down moves element i towards the leaves while a child is earlier; it
// reports whether it moved.
func (h timerHeap) down(i int) bool {
	start := i
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if r := c + 1; r < len(h) && h.less(r, c) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

// fix restores the order after element i's key changed.
func (h timerHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *timerHeap) push(e *Endpoint) {
	*h = append(*h, e)
	e.heapPos = len(*h)
	h.up(len(*h) - 1)
}

func (h *timerHeap) remove(e *Endpoint) {
	i, last := e.heapPos-1, len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	e.heapPos = 0
	if i != last {
		h.fix(i)
	}
}

// NextTimeout is when Tick must next be called; the zero time if no timer
// is armed.
func (t *Table) NextTimeout() time.Time {
	next := t.timeWaitNext()
	if len(t.timers) > 0 {
		next = earliest(next, t.timers[0].due)
	}
	return next
}

// Tick fires every timer due at now.
func (t *Table) Tick(now time.Time) {
	// Take the due connections out first: a connection's timers may
	// re-arm as they fire, and each is looked at once per Tick.
	due := t.due[:0]
	for len(t.timers) > 0 && !t.timers[0].due.After(now) {
		e := t.timers[0]
		t.timers.remove(e)
		due = append(due, e)
	}
	for i, e := range due {
		due[i] = nil
		if e.state == Closed {
			continue
		}
		t.touch(e)
		e.tick(now)
		if e.heapPos == 0 {
			e.retime() // no timer changed: back in at its place
		}
	}
	t.due = due[:0]
	t.timeWaitExpire(now)
}
