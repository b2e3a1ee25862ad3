package tcp

import (
	"strings"
	"testing"
	"time"
)

// RACK-TLP dialogues (rack.go, RFC 8985). The path's RTT is 10 ms, far
// below MinRTO, as on a LAN: what TLP and RACK gain is the wait for the
// RTO. Segment i is as in recovery_test.go.

const rackRTT = 10 * time.Millisecond

// rackSender is sender with RACK-TLP on and an SRTT of rackRTT.
func rackSender(t *testing.T, cwnd, n int) (*harness, *Endpoint, string) {
	t.Helper()
	h := newHarness(t, func(c *Config) { c.Congestion = newReno; c.RACK = true })
	e := h.accept(sackPeer)
	e.cwnd = cwnd * e.smss
	e.srtt, e.rttvar, e.hasRTT, e.rto = rackRTT, rackRTT/2, true, MinRTO
	data := strings.Repeat("0123456789", 100*n)
	if w, err := e.Write([]byte(data)); w != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", w, err)
	}
	for i := range min(cwnd, n) {
		h.expect(dataSeg(data, i))
	}
	h.expectNone()
	return h, e, data
}

func TestTLPRepairsTailLoss(t *testing.T) {
	h, e, data := rackSender(t, 10, 10)
	// Segments 8 and 9, the tail, are lost: the ACK of 0-7 is the last.
	h.advance(rackRTT)
	h.send(sackAck(seqOf(8)))
	h.expectNone()
	// PTO = 2·SRTT later the last segment goes again: a probe, not an RTO
	// (which is MinRTO, 200 ms, away).
	h.advance(2*rackRTT - time.Millisecond)
	h.expectNone()
	h.advance(time.Millisecond)
	h.expect(dataSeg(data, 9))
	h.expectNone()
	// Its SACK shows segment 8 missing; it went before the probe that
	// arrived, RACK.rtt + reo_wnd ago: lost, sent again at once.
	h.advance(rackRTT)
	h.send(sackAck(seqOf(8), blk(9, 10)))
	h.expect(dataSeg(data, 8))
	h.expectNone()
	h.advance(rackRTT)
	h.send(sackAck(seqOf(10)))
	h.expectNone()
	if c := h.tb.Counters(); c.Timeouts != 0 || c.TailLossProbes != 1 || c.Retransmits != 2 {
		t.Errorf("Timeouts %d TailLossProbes %d Retransmits %d; want 0, 1, 2", c.Timeouts, c.TailLossProbes, c.Retransmits)
	}
	if e.armed(timerRTO) || e.armed(timerTLP) || e.armed(timerRACK) {
		t.Errorf("timers armed with nothing outstanding: %v", e.timers)
	}
}

func TestNoTLPWithoutRACK(t *testing.T) {
	// The same tail loss with RACK off waits for the RTO.
	h, _, data := sender(t, sackPeer, newReno, 10, 10)
	h.advance(rackRTT)
	h.send(sackAck(seqOf(8)))
	h.advance(MinRTO - time.Millisecond)
	h.expectNone()
	h.advance(time.Millisecond)
	h.expect(dataSeg(data, 8))
}

func TestRACKMarksLostAfterReorderWindow(t *testing.T) {
	h, _, data := rackSender(t, 4, 4)
	// Segment 1, sent with segment 0, is SACKed: one SACKed segment, too
	// few for RFC 6675. Segment 0 is lost only RACK.rtt + reo_wnd
	// (min_RTT/4 = 2.5 ms) after it went.
	h.advance(rackRTT)
	h.send(sackAck(seqOf(0), blk(1, 2)))
	h.expectNone()
	h.advance(rackRTT/4 - time.Microsecond)
	h.expectNone()
	h.advance(time.Microsecond)
	h.expect(dataSeg(data, 0))
	h.expectNone()
	if c := h.tb.Counters(); c.Timeouts != 0 || c.FastRetransmits != 1 {
		t.Errorf("Timeouts %d FastRetransmits %d; want 0, 1", c.Timeouts, c.FastRetransmits)
	}
}

func TestRACKToleratesReorderingInWindow(t *testing.T) {
	h, e, _ := rackSender(t, 4, 4)
	h.advance(rackRTT)
	h.send(sackAck(seqOf(0), blk(1, 2)))
	h.expectNone()
	// Segment 0 was only late: it arrives inside the window.
	h.advance(rackRTT / 8)
	h.send(sackAck(seqOf(2)))
	h.advance(time.Second / 100)
	h.expectNone()
	h.send(sackAck(seqOf(4)))
	h.expectNone()
	if c := h.tb.Counters(); c.Retransmits != 0 || e.inRecovery {
		t.Errorf("Retransmits %d inRecovery %v; want 0, false", c.Retransmits, e.inRecovery)
	}
}

func TestDSACKWidensReorderWindow(t *testing.T) {
	h, e, data := rackSender(t, 4, 4)
	// As above, segment 0 goes again once the window (2.5 ms) passed...
	h.advance(rackRTT)
	h.send(sackAck(seqOf(0), blk(1, 2)))
	h.advance(rackRTT / 4)
	h.expect(dataSeg(data, 0))
	// ... but the original arrives, and then the retransmission, which
	// the peer reports with a D-SACK: the retransmission was needless.
	h.advance(rackRTT / 20)
	h.send(sackAck(seqOf(4)))
	h.advance(rackRTT)
	h.send(sackAck(seqOf(4), blk(0, 1)))
	h.expectNone()
	// The window is now 2·min_RTT/4 = 5 ms: segment 4 waits for it.
	more := strings.Repeat("abcdefghij", 200)
	if _, err := e.Write([]byte(more)); err != nil {
		t.Fatal(err)
	}
	data += more
	h.expect(dataSeg(data, 4))
	h.expect(dataSeg(data, 5))
	h.advance(rackRTT)
	h.send(sackAck(seqOf(4), blk(5, 6)))
	h.advance(rackRTT/4 + time.Millisecond) // past the old window
	h.expectNone()
	h.advance(rackRTT/4 - time.Millisecond - time.Microsecond)
	h.expectNone()
	h.advance(time.Microsecond)
	h.expect(dataSeg(data, 4))
	h.expectNone()
}

// TestRACKKeptConnectionFallsBack: RACK-TLP's transmit times and timers
// are not in a kept record (the record's layout is unchanged); a restarted
// tcp adopts the connection knowing none of them, and its RTO recovers
// the tail as without RACK.
func TestRACKKeptConnectionFallsBack(t *testing.T) {
	h, mem := keptHarness(t)
	h.tb.cfg.RACK = true
	e := h.accept(sackPeer)
	e.own(owner{sock: 7})
	e.srtt, e.rttvar, e.hasRTT, e.rto = rackRTT, rackRTT/2, true, MinRTO
	data := strings.Repeat("0123456789", 400)
	if _, err := e.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		h.expect(dataSeg(data, i))
	}
	h.advance(rackRTT)
	h.send(sackAck(seqOf(2)))
	if !e.armed(timerTLP) || len(e.rack.segs) != 2 {
		t.Fatalf("before the restart: TLP armed %v, %d transmissions watched; want true, 2", e.armed(timerTLP), len(e.rack.segs))
	}
	h.tb.Commit()

	e = h.restart(mem, 7) // with the same Config: RACK on
	if e.armed(timerTLP) || e.armed(timerRACK) || len(e.rack.segs) != 0 || !e.armed(timerRTO) {
		t.Fatalf("after the restart: TLP %v RACK %v watched %d RTO %v; want false, false, 0, true",
			e.armed(timerTLP), e.armed(timerRACK), len(e.rack.segs), e.armed(timerRTO))
	}
	// Segments 2 and 3 were lost: the RTO finds them.
	h.advance(MinRTO)
	h.expect(dataSeg(data, 2))
	h.expectNone()
}
