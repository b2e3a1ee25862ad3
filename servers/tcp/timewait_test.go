package tcp

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// activeClose opens a connection from our port 80 to the peer's port from
// (its ISN 100), closes it as a server does after a reply, and takes it to
// TIME-WAIT: our FIN, the peer's ACK and FIN, our ACK.
func (h *harness) activeClose(from uint16) *Endpoint {
	h.t.Helper()
	e, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, ourPort), netip.AddrPortFrom(peer, from))
	if err != nil {
		h.t.Fatalf("ConnectFrom(port %d) = %v", from, err)
	}
	h.expect(seg{flags: SYN, seq: ourISS})
	h.send(seg{flags: SYN | ACK, seq: 100, ack: ourISS + 1, from: from, opts: noOpts})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101})
	e.Close()
	h.expect(seg{flags: FIN | ACK, seq: ourISS + 1, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 2, from: from})
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2, from: from})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	return e
}

// A connection the user closed is a record in TIME-WAIT, not an endpoint:
// its buffers are back in the budget, its tuple still taken. It answers
// the peer's FIN, an old duplicate and a SYN with an ACK; an RST at
// RCV.NXT ends it.
func TestTimeWaitRecordAnswersThePeer(t *testing.T) {
	h := newHarness(t, nil)
	e := h.activeClose(peerPort)
	wantState(t, e, TimeWait)
	c := h.tb.timeWait.byID[e.id]
	if c == nil || c.e != nil || e.tw != nil {
		t.Fatalf("record %v, tied to endpoint %v; want a record, not tied to the closed endpoint", c, c != nil && c.e != nil)
	}
	if h.tb.Conns() != 1 || h.tb.TimeWait() != 1 || h.tb.BufferBytes() != 0 || len(h.tb.conns) != 0 {
		t.Fatalf("Conns %d, TimeWait %d, BufferBytes %d, endpoints %d; want 1, 1, 0, 0",
			h.tb.Conns(), h.tb.TimeWait(), h.tb.BufferBytes(), len(h.tb.conns))
	}
	if _, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, ourPort), netip.AddrPortFrom(peer, peerPort)); !errors.Is(err, ErrInUse) {
		t.Fatalf("ConnectFrom() on the TIME-WAIT tuple = %v, want ErrInUse", err)
	}
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	h.send(seg{flags: ACK | PSH, seq: 90, ack: ourISS + 2, data: "old"})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	h.send(seg{flags: ACK, seq: 102, ack: ourISS + 2}) // nothing to say
	h.expectNone()
	h.send(seg{flags: ACK, seq: 102, ack: ourISS + 9}) // acknowledges what we never sent
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	h.send(seg{flags: SYN, seq: 5000, opts: noOpts}) // a new SYN: no reuse
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	h.send(seg{flags: SYN, seq: 102, opts: noOpts}) // in the window: challenged
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	h.send(seg{flags: RST, seq: 103}) // not at RCV.NXT: challenged
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	if h.tb.TimeWait() != 1 {
		t.Fatalf("TimeWait() = %d after the RST out of place, want 1", h.tb.TimeWait())
	}
	h.send(seg{flags: RST, seq: 102})
	h.expectNone()
	if h.tb.Conns() != 0 || h.tb.TimeWait() != 0 || len(h.tb.ports) != 0 || !h.tb.NextTimeout().IsZero() {
		t.Fatalf("after the RST: Conns %d, TimeWait %d, ports %v, NextTimeout %v; want all gone",
			h.tb.Conns(), h.tb.TimeWait(), h.tb.ports, h.tb.NextTimeout())
	}
	if _, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, ourPort), netip.AddrPortFrom(peer, peerPort)); err != nil {
		t.Fatalf("ConnectFrom() on the tuple after TIME-WAIT = %v", err)
	}
}

// TIME-WAITs end 2*MSL after they began, in order; the peer's FIN again
// restarts one, which then ends after those that began later.
func TestTimeWaitExpiresInOrder(t *testing.T) {
	h := newHarness(t, nil)
	start := h.clock.now
	var es []*Endpoint
	for i := range 3 {
		es = append(es, h.activeClose(uint16(6000+i)))
		h.advance(10 * time.Second)
	}
	// At +30 s the first one's peer sends its FIN again: it ends at +90 s.
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2, from: 6000})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	if got, want := h.tb.NextTimeout(), start.Add(10*time.Second+2*MSL); !got.Equal(want) {
		t.Fatalf("NextTimeout() = +%v, want +%v", got.Sub(start), want.Sub(start))
	}
	for _, step := range []struct {
		at   time.Duration
		left int
	}{
		{10*time.Second + 2*MSL - time.Millisecond, 3},
		{10*time.Second + 2*MSL, 2}, // the second went
		{20*time.Second + 2*MSL, 1},
		{30*time.Second + 2*MSL - time.Millisecond, 1},
		{30*time.Second + 2*MSL, 0},
	} {
		h.advance(start.Add(step.at).Sub(h.clock.now))
		if h.tb.TimeWait() != step.left || h.tb.Conns() != step.left {
			t.Fatalf("at +%v: TimeWait %d, Conns %d; want %d", step.at, h.tb.TimeWait(), h.tb.Conns(), step.left)
		}
	}
	if !h.tb.NextTimeout().IsZero() || len(h.tb.ports) != 0 {
		t.Errorf("NextTimeout %v, ports %v after every TIME-WAIT ended; want none", h.tb.NextTimeout(), h.tb.ports)
	}
	h.expectNone()
	for _, e := range es {
		wantState(t, e, TimeWait) // closed by the user: not told
	}
}

// Config.MaxTimeWait holds with connections closed by the user: the
// oldest records go, and the peers of those get an RST for their FIN.
func TestTimeWaitCapWithRecords(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxTimeWait = 4 })
	for i := range 10 {
		h.activeClose(uint16(6000 + i))
	}
	if h.tb.TimeWait() != 4 || h.tb.Conns() != 4 || h.tb.Counters().TimeWaitRecycled != 6 {
		t.Fatalf("TimeWait %d, Conns %d, TimeWaitRecycled %d; want 4, 4, 6",
			h.tb.TimeWait(), h.tb.Conns(), h.tb.Counters().TimeWaitRecycled)
	}
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2, from: 6005}) // recycled
	h.expect(seg{flags: RST, seq: ourISS + 2})
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2, from: 6006}) // kept
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
}

// PAWS in TIME-WAIT: a segment with data and an old timestamp is dropped
// and answered with an ACK echoing TS.Recent.
func TestTimeWaitPAWS(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(linuxSYN(1000))
	e.CloseWrite()
	h.expect(seg{flags: FIN | ACK, seq: ourISS + 1, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 2, opts: tsOpt(1002, h.ts())})
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2, opts: tsOpt(1003, h.ts())})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102, opts: tsOpt(0, 1003)})
	wantState(t, e, TimeWait)
	h.send(seg{flags: ACK | PSH, seq: 102, ack: ourISS + 2, data: "x", opts: tsOpt(900, h.ts())})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102, opts: tsOpt(0, 1003)})
	if h.tb.Counters().InPAWSDrops != 1 {
		t.Errorf("InPAWSDrops = %d, want 1", h.tb.Counters().InPAWSDrops)
	}
	// The endpoint its user holds closes when TIME-WAIT ends.
	h.advance(2 * MSL)
	wantState(t, e, Closed)
}
