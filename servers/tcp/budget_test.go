package tcp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// connectFrom runs a passive open with a peer on port from (ISN 100) to
// listener l and returns the established connection.
func (h *harness) connectFrom(l *Listener, from uint16) *Endpoint {
	h.t.Helper()
	h.send(seg{flags: SYN, seq: 100, from: from, opts: noOpts})
	h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, from: from})
	e, err := l.Accept()
	if err != nil {
		h.t.Fatalf("Accept() of the connection from %d = %v", from, err)
	}
	return e
}

// timeWait takes e, from the peer on port from, into TIME-WAIT: our FIN,
// the peer's ACK and FIN.
func (h *harness) timeWait(e *Endpoint, from uint16) {
	h.t.Helper()
	e.CloseWrite()
	h.expect(seg{flags: FIN | ACK, seq: ourISS + 1, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 2, from: from})
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2, from: from})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	wantState(h.t, e, TimeWait)
}

func (h *harness) listen() *Listener {
	h.t.Helper()
	l, err := h.tb.Listen(netip.Addr{}, ourPort, 100)
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// At MaxConns a SYN gets a cookie and no state, the cookie's ACK an RST,
// Connect ErrTooManyConns; the connections there go on.
func TestConnectionCapRefusesNewConnections(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConns = 2 })
	l := h.listen()
	a := h.connectFrom(l, 6000)
	h.connectFrom(l, 6001)

	h.send(seg{flags: SYN, seq: 500, from: 6002, opts: noOpts})
	synack := h.expect(seg{flags: SYN | ACK, anySeq: true, ack: 501})
	if synack.seq == ourISS {
		t.Fatalf("SYN beyond MaxConns answered with a connection's ISN, want a cookie")
	}
	h.send(seg{flags: ACK, seq: 501, ack: synack.seq + 1, from: 6002})
	h.expect(seg{flags: RST, seq: synack.seq + 1})
	if _, err := h.tb.Connect(us, netip.AddrPortFrom(peer, 9)); !errors.Is(err, ErrTooManyConns) {
		t.Errorf("Connect() at MaxConns = %v, want ErrTooManyConns", err)
	}
	if c := h.tb.Counters(); h.tb.Conns() != 2 || c.ConnsRefused != 3 {
		t.Errorf("Conns %d, ConnsRefused %d; want 2, 3", h.tb.Conns(), c.ConnsRefused)
	}
	// The connections there are untouched.
	a.Write([]byte("still here"))
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: "still here"})
}

// Without SYN cookies a SYN beyond MaxConns is refused with an RST.
func TestConnectionCapWithoutCookiesResets(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConns = 1; c.NoSynCookies = true })
	l := h.listen()
	h.connectFrom(l, 6000)
	h.send(seg{flags: SYN, seq: 500, from: 6001, opts: noOpts})
	h.expect(seg{flags: RST | ACK, seq: 0, ack: 501})
	if h.tb.Conns() != 1 || h.tb.Counters().ConnsRefused != 1 {
		t.Errorf("Conns %d, ConnsRefused %d; want 1, 1", h.tb.Conns(), h.tb.Counters().ConnsRefused)
	}
}

// Beyond MaxTimeWait the oldest TIME-WAIT connection goes; at MaxConns a
// TIME-WAIT connection makes room for a new one.
func TestTimeWaitCapRecyclesOldest(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxTimeWait = 2; c.MaxConns = 3 })
	l := h.listen()
	var es []*Endpoint
	for i := range 3 {
		from := uint16(6000 + i)
		e := h.connectFrom(l, from)
		h.timeWait(e, from)
		es = append(es, e)
	}
	if es[0].State() != Closed || es[1].State() != TimeWait || es[2].State() != TimeWait {
		t.Fatalf("states %v %v %v, want the oldest CLOSED, the others TIME-WAIT", es[0].State(), es[1].State(), es[2].State())
	}
	if h.tb.TimeWait() != 2 || h.tb.Counters().TimeWaitRecycled != 1 {
		t.Fatalf("TimeWait %d, TimeWaitRecycled %d; want 2, 1", h.tb.TimeWait(), h.tb.Counters().TimeWaitRecycled)
	}
	// Conns is 2 below MaxConns 3; two more: the second takes the room
	// of the oldest TIME-WAIT connection.
	h.connectFrom(l, 7000)
	h.connectFrom(l, 7001)
	if es[1].State() != Closed || es[2].State() != TimeWait || h.tb.Conns() != 3 || h.tb.Counters().ConnsRefused != 0 {
		t.Errorf("states %v %v, Conns %d, ConnsRefused %d; want CLOSED, TIME-WAIT, 3, 0",
			es[1].State(), es[2].State(), h.tb.Conns(), h.tb.Counters().ConnsRefused)
	}
}

// The buffers of every connection share BufferBudget: a connection's
// receive buffer grows only within it, a new connection is refused when
// its reserve does not fit, and buffers that drain give memory back.
func TestBufferBudgetBoundsBuffers(t *testing.T) {
	const budget = 4 * connReserve
	h := newHarness(t, func(c *Config) { c.BufferBudget = budget; c.RecvBuffer = 64 << 10 })
	l := h.listen()
	e := h.connectFrom(l, 6000)
	seq := uint32(101)
	for range 40 { // 40,000 bytes offered: more than the budget
		h.send(seg{flags: ACK, seq: seq, ack: ourISS + 1, from: 6000, data: strings.Repeat("x", 1000)})
		seq = e.rcvNxt
	}
	if got := h.tb.BufferBytes(); got > budget || e.rcv.Len() < budget/2 {
		t.Fatalf("BufferBytes %d, received %d; want at most %d, at least %d", got, e.rcv.Len(), budget, budget/2)
	}
	if w := e.rcvWindow(); w > budget-h.tb.BufferBytes()+e.rcv.Free() {
		t.Errorf("window %d with %d bytes of the budget left", w, budget-h.tb.BufferBytes())
	}
	h.drain()

	// No room for another connection's reserve: a cookie, and a refusal.
	h.send(seg{flags: SYN, seq: 500, from: 6001, opts: noOpts})
	if synack := h.expect(seg{flags: SYN | ACK, anySeq: true, ack: 501}); synack.seq == ourISS {
		t.Fatalf("SYN beyond the budget answered with a connection's ISN, want a cookie")
	}
	if c := h.tb.Counters(); c.BudgetRefused != 1 || h.tb.Conns() != 1 {
		t.Fatalf("BudgetRefused %d, Conns %d; want 1, 1", c.BudgetRefused, h.tb.Conns())
	}
	// The application reads: the buffer gives back what it grew.
	read(t, e)
	if got := h.tb.BufferBytes(); got != connReserve {
		t.Fatalf("BufferBytes after the read = %d, want the reserve %d", got, connReserve)
	}
	h.drain()
	h.connectFrom(l, 6002)
	if got := h.tb.BufferBytes(); got != 2*connReserve {
		t.Errorf("BufferBytes with two idle connections = %d, want %d", got, 2*connReserve)
	}
}
