package tcp

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// The timer heap against a brute-force model: random deadlines set and
// stopped on many connections; after each change NextTimeout is the
// earliest of them all, and Tick fires exactly the connections due.
func TestTimerHeapMatchesModel(t *testing.T) {
	h := newHarness(t, nil)
	tb := h.tb
	r := rand.New(rand.NewPCG(21, 21))
	es := make([]*Endpoint, 200)
	for i := range es {
		es[i] = &Endpoint{t: tb, state: Established}
	}
	base := h.clock.now
	earliestOf := func() time.Time {
		var m time.Time
		for _, e := range es {
			for _, d := range e.timers {
				m = earliest(m, d)
			}
		}
		return m
	}
	for step := range 20000 {
		e := es[r.IntN(len(es))]
		k := timerKind(r.IntN(int(numTimers)))
		if r.IntN(3) == 0 {
			e.stopTimer(k)
		} else {
			e.setTimer(k, base.Add(time.Duration(1+r.IntN(1000))*time.Millisecond))
		}
		if got, want := tb.NextTimeout(), earliestOf(); !got.Equal(want) {
			t.Fatalf("step %d: NextTimeout() = %v, want %v", step, got, want)
		}
		for i, x := range tb.timers {
			if x.heapPos != i+1 {
				t.Fatalf("step %d: heapPos of element %d = %d", step, i, x.heapPos)
			}
			if p := (i - 1) / 2; i > 0 && tb.timers[i].due.Before(tb.timers[p].due) {
				t.Fatalf("step %d: element %d earlier than its parent", step, i)
			}
		}
	}
	n := 0
	for _, e := range es {
		if !e.due.IsZero() {
			n++
		}
	}
	if len(tb.timers) != n {
		t.Fatalf("%d connections in the heap, want the %d with a timer", len(tb.timers), n)
	}
}

// A retransmission timer still fires after many other connections' timers
// came, moved and went.
func TestRetransmissionFiresAmongManyTimers(t *testing.T) {
	h := newHarness(t, nil)
	l := h.listen()
	e := h.connectFrom(l, 6000)
	e.Write([]byte("lost"))
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: "lost"})
	rto := e.timers[timerRTO]
	if rto.IsZero() {
		t.Fatal("no retransmission timer after sending data")
	}
	// 300 other connections, 0.5 ms apart: each receives data (a delayed
	// ACK is armed), answers (the ACK goes with its data, the delayed
	// ACK is stopped, an RTO armed), its data is acknowledged (the RTO
	// stops); every third one is left with data unacknowledged, every
	// fifth reset while its timer runs.
	for i := range 300 {
		from := uint16(7000 + i)
		o := h.connectFrom(l, from)
		h.send(seg{flags: ACK | PSH, seq: 101, ack: ourISS + 1, from: from, data: "ping"})
		if got := read(t, o); got != "ping" {
			t.Fatalf("connection %d read %q", i, got)
		}
		o.Write([]byte("pong"))
		h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 105, data: "pong"})
		switch {
		case i%5 == 0:
			o.Abort()
			h.expect(seg{flags: RST, seq: ourISS + 5})
		case i%3 != 0:
			h.send(seg{flags: ACK, seq: 105, ack: ourISS + 5, from: from})
		}
		h.clock.now = h.clock.now.Add(500 * time.Microsecond)
		if !h.clock.now.Before(rto) {
			t.Fatalf("the test outlived the RTO of %v", rto.Sub(h.clock.now))
		}
	}
	h.drain()
	h.advance(rto.Sub(h.clock.now) - time.Millisecond)
	for _, s := range h.out.segs {
		if s := string(s.b[20:]); s == "lost" {
			t.Fatalf("retransmitted before the RTO")
		}
	}
	h.advance(time.Millisecond)
	found := false
	for _, s := range h.out.segs {
		found = found || string(s.b[20:]) == "lost"
	}
	if !found {
		t.Fatalf("no retransmission at the RTO; sent %d other segments", len(h.out.segs))
	}
	if c := h.tb.Counters(); c.Timeouts == 0 {
		t.Errorf("Timeouts = 0 after the RTO")
	}
}

// A connection closed while its timers run sends nothing more, and leaves
// nothing in the heap.
func TestClosedConnectionTimersDoNotFire(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.send(seg{flags: ACK | PSH, seq: 101, ack: ourISS + 1, data: "x"}) // a delayed ACK
	e.Write([]byte("y"))                                                // the ACK goes with it; an RTO
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 102, data: "y"})
	e.SetKeepAlive(true, time.Second, time.Second, 3)
	if !e.armed(timerRTO) || !e.armed(timerKeepalive) {
		t.Fatalf("timers %v, want the RTO and keepalive armed", e.timers)
	}
	e.Abort()
	h.expect(seg{flags: RST, seq: ourISS + 2})
	if !h.tb.NextTimeout().IsZero() || len(h.tb.timers) != 0 {
		t.Fatalf("NextTimeout() = %v with %d in the heap after Abort, want none", h.tb.NextTimeout(), len(h.tb.timers))
	}
	h.advance(time.Hour)
	h.expectNone()

	// A SYN-SENT connection aborted: its SYN is not retransmitted.
	c, err := h.tb.Connect(us, netip.AddrPortFrom(peer, 9))
	if err != nil {
		t.Fatal(err)
	}
	h.expect(seg{flags: SYN, seq: ourISS})
	c.Abort()
	h.advance(time.Hour)
	h.expectNone()
}

// Idle connections are not in the heap: they cost nothing per event.
func TestIdleConnectionsHaveNoTimers(t *testing.T) {
	h := newHarness(t, nil)
	l := h.listen()
	for i := range 100 {
		h.connectFrom(l, uint16(6000+i))
	}
	if h.tb.Conns() != 100 || len(h.tb.timers) != 0 || !h.tb.NextTimeout().IsZero() {
		t.Fatalf("Conns %d, in the heap %d, NextTimeout %v; want 100, 0, none", h.tb.Conns(), len(h.tb.timers), h.tb.NextTimeout())
	}
}
