package tcp

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"keepnet/servers/ops"
)

const ect0, ce = ops.ECNECT0, ops.ECNCE

// ecnAccept is accept with a peer that asks for ECN (ECE|CWR in its SYN,
// as Linux with net.ipv4.tcp_ecn=1 sends it): our SYN-ACK says yes with
// ECE alone.
func (h *harness) ecnAccept(cc func() Congestion) *Endpoint {
	h.t.Helper()
	l, err := h.tb.Listen(netip.Addr{}, ourPort, 8)
	if err != nil {
		h.t.Fatal(err)
	}
	h.send(seg{flags: SYN | ECE | CWR, seq: 100, opts: noOpts})
	h.expect(seg{flags: SYN | ACK | ECE, seq: ourISS, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1})
	e, err := l.Accept()
	if err != nil {
		h.t.Fatalf("Accept() = %v", err)
	}
	return e
}

// TestECNNegotiation: ECN is agreed to only for a Not-ECT SYN with ECE and
// CWR, only when enabled, never for a cookie; we never ask for it.
func TestECNNegotiation(t *testing.T) {
	for _, c := range []struct {
		name    string
		noECN   bool
		syn     seg
		synack  uint8
		agreed  bool
		dataECN uint8
	}{
		{"asked", false, seg{flags: SYN | ECE | CWR, seq: 100, opts: noOpts}, SYN | ACK | ECE, true, ect0},
		{"off", true, seg{flags: SYN | ECE | CWR, seq: 100, opts: noOpts}, SYN | ACK, false, 0},
		{"not asked", false, seg{flags: SYN, seq: 100, opts: noOpts}, SYN | ACK, false, 0},
		{"ECE alone", false, seg{flags: SYN | ECE, seq: 100, opts: noOpts}, SYN | ACK, false, 0},
		{"ECT SYN", false, seg{flags: SYN | ECE | CWR, seq: 100, opts: noOpts, ecn: ect0}, SYN | ACK, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(cfg *Config) { cfg.NoECN = c.noECN })
			l, _ := h.tb.Listen(netip.Addr{}, ourPort, 8)
			h.send(c.syn)
			h.expect(seg{flags: c.synack, seq: ourISS, ack: 101}) // Not-ECT
			h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1})
			e, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			e.Write([]byte("hello"))
			h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: "hello", ecn: c.dataECN})
			if got := h.tb.Counters().ECNConnections; got != map[bool]uint64{true: 1}[c.agreed] {
				t.Errorf("ECNConnections = %d, want %v", got, c.agreed)
			}
		})
	}

	t.Run("cookie", func(t *testing.T) {
		h, _ := cookieListener(t)
		h.send(seg{flags: SYN | ECE | CWR, seq: 500, from: 6001})
		h.expect(seg{flags: SYN | ACK, anySeq: true, ack: 501})
	})

	t.Run("active open", func(t *testing.T) {
		h := newHarness(t, nil)
		e, _ := h.tb.Connect(us, netip.AddrPortFrom(peer, peerPort))
		p := e.LocalAddr().Port()
		syn, _ := h.next()
		if syn.flags != SYN || syn.ecn != 0 {
			t.Fatalf("our SYN %v, want SYN alone, Not-ECT", syn)
		}
		// A peer's ECE in its SYN-ACK (it cannot mean setup: we did not
		// ask) changes nothing.
		h.tb.Input(peerSeg(p, seg{flags: SYN | ACK | ECE, seq: 7000, ack: ourISS + 1, opts: noOpts}), peer, us)
		h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 7001})
		e.Write([]byte("x"))
		if s, _ := h.next(); s.ecn != 0 || s.flags&(ECE|CWR) != 0 {
			t.Errorf("data of an active open %v, want Not-ECT without ECN flags", s)
		}
	})
}

// TestECNMarksNewDataOnly: ECT(0) on new data; pure ACKs, a FIN alone and
// retransmissions go Not-ECT (RFC 3168 §6.1.4-6.1.5).
func TestECNMarksNewDataOnly(t *testing.T) {
	h := newHarness(t, nil)
	e := h.ecnAccept(nil)
	e.Write([]byte("hello"))
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: "hello", ecn: ect0})
	h.advance(InitialRTO) // lost: the retransmission is Not-ECT
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: "hello"})
	h.send(seg{flags: ACK | PSH, seq: 101, ack: ourISS + 6, data: "ping"})
	h.advance(time.Second) // the delayed ACK: Not-ECT
	h.expect(seg{flags: ACK, seq: ourISS + 6, ack: 105})
	read(t, e)
	e.Close()
	h.expect(seg{flags: ACK | FIN, seq: ourISS + 6, ack: 105})
}

// TestECNEchoUntilCWR: a CE mark is acknowledged at once with ECE, and
// ECE stays on every segment until one with CWR arrives (§6.1.3).
func TestECNEchoUntilCWR(t *testing.T) {
	h := newHarness(t, nil)
	e := h.ecnAccept(nil)
	h.send(seg{flags: ACK | PSH, seq: 101, ack: ourISS + 1, data: "a", ecn: ce})
	h.expect(seg{flags: ACK | ECE, seq: ourISS + 1, ack: 102}) // at once
	h.send(seg{flags: ACK | PSH, seq: 102, ack: ourISS + 1, data: "b", ecn: ect0})
	h.advance(time.Second)
	h.expect(seg{flags: ACK | ECE, seq: ourISS + 1, ack: 103})
	e.Write([]byte("data"))
	h.expect(seg{flags: ACK | PSH | ECE, seq: ourISS + 1, ack: 103, data: "data", ecn: ect0})
	h.send(seg{flags: ACK | PSH | CWR, seq: 103, ack: ourISS + 5, data: "c", ecn: ect0})
	h.advance(time.Second)
	h.expect(seg{flags: ACK, seq: ourISS + 5, ack: 104})
	h.send(seg{flags: ACK | PSH, seq: 104, ack: ourISS + 5, data: "d", ecn: ce})
	h.expect(seg{flags: ACK | ECE, seq: ourISS + 5, ack: 105})
	// CWR and CE in one segment: the CWR ends the old echo, the CE starts
	// a new one.
	h.send(seg{flags: ACK | PSH | CWR, seq: 105, ack: ourISS + 5, data: "e", ecn: ce})
	h.advance(time.Second)
	h.expect(seg{flags: ACK | ECE, seq: ourISS + 5, ack: 106})
	if c := h.tb.Counters(); c.ECNCEIn != 3 || c.ECNCWRIn != 2 {
		t.Errorf("ECNCEIn %d ECNCWRIn %d, want 3, 2", c.ECNCEIn, c.ECNCWRIn)
	}
}

// TestECNReducesOncePerWindow: an ECE reduces cwnd and ssthresh as a loss
// would, once for the window of data in flight; the next new segment
// carries CWR; an ECE for a later window reduces again.
func TestECNReducesOncePerWindow(t *testing.T) {
	cc := &countingCC{}
	h := newHarness(t, func(c *Config) { c.Congestion = func() Congestion { return cc } })
	e := h.ecnAccept(nil)
	e.cwnd = 8 * e.smss
	data := strings.Repeat("0123456789", 100*20)
	e.Write([]byte(data))
	for i := range 8 {
		h.expect(seg{flags: ACK, seq: seqOf(i), ack: 101, data: data[i*1000 : (i+1)*1000], ecn: ect0})
	}
	h.expectNone()
	// The peer saw CE on segment 0: its ACK has ECE. ssthresh = cwnd =
	// FlightSize/2 (NewReno) = 7000/2, after the ACK of segment 0.
	h.send(seg{flags: ACK | ECE, seq: 101, ack: seqOf(1)})
	if cc.losses != 1 || e.ssthresh != 3500 || e.cwnd != 3500 {
		t.Fatalf("after ECE: %d reductions, ssthresh %d cwnd %d; want 1, 3500, 3500", cc.losses, e.ssthresh, e.cwnd)
	}
	h.expectNone() // 6000 in flight, cwnd 3500
	// More ECEs for the same window: no more reductions.
	for i := 2; i <= 5; i++ {
		h.send(seg{flags: ACK | ECE, seq: 101, ack: seqOf(i)})
	}
	if cc.losses != 1 || e.ssthresh != 3500 {
		t.Fatalf("ECEs in the same window: %d reductions, ssthresh %d; want 1, 3500", cc.losses, e.ssthresh)
	}
	// The window opened: the first new segment has CWR, one MSS, and only
	// it.
	first, _ := h.next()
	if first.seq != seqOf(8) || first.flags&CWR == 0 || first.ecn != ect0 || len(first.data) != 1000 {
		t.Fatalf("first segment after the reduction %v, want segment 8 with CWR, ECT(0)", first)
	}
	for s, ok := h.next(); ok; s, ok = h.next() {
		if s.flags&CWR != 0 {
			t.Errorf("CWR again on %v", s)
		}
	}
	// Everything sent before the reduction acknowledged, with ECE still
	// (the peer has not seen the CWR yet): still the same window.
	h.send(seg{flags: ACK | ECE, seq: 101, ack: seqOf(8)})
	if cc.losses != 1 {
		t.Fatalf("ECE up to the reduction's window end: %d reductions, want 1", cc.losses)
	}
	// A new CE past it: a second reduction, and CWR again.
	h.drain()
	h.send(seg{flags: ACK | ECE, seq: 101, ack: seqOf(9)})
	if cc.losses != 2 {
		t.Fatalf("ECE for a later window: %d reductions, want 2", cc.losses)
	}
	if c := h.tb.Counters(); c.ECNReductions != 2 || c.ECNCWROut != 1 {
		t.Errorf("ECNReductions %d ECNCWROut %d, want 2, 1 (the second CWR waits for the window)", c.ECNReductions, c.ECNCWROut)
	}
	if !e.ecn.cwr {
		t.Error("no CWR pending after the second reduction")
	}
}

// TestECNKept: the ECN state goes with the connection across a restart.
func TestECNKept(t *testing.T) {
	h, mem := keptHarness(t)
	l, _ := h.tb.Listen(netip.Addr{}, ourPort, 8)
	h.send(seg{flags: SYN | ECE | CWR, seq: 100, opts: noOpts})
	h.expect(seg{flags: SYN | ACK | ECE, seq: ourISS, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1})
	e, _ := l.Accept()
	e.own(owner{sock: 7})
	h.send(seg{flags: ACK | PSH, seq: 101, ack: ourISS + 1, data: "a", ecn: ce})
	h.expect(seg{flags: ACK | ECE, seq: ourISS + 1, ack: 102})
	h.tb.Commit()
	e = h.restart(mem, 7)
	if !e.ecn.on || !e.ecn.echo {
		t.Fatalf("ECN state after a restart %+v, want on and echoing", e.ecn)
	}
	e.Write([]byte("x"))
	h.expect(seg{flags: ACK | PSH | ECE, seq: ourISS + 1, ack: 102, data: "x", ecn: ect0})
}

// The ECN flags of a kept record: anything but the four flags, or flags
// without ECN on, is refused.
func TestECNStateBits(t *testing.T) {
	for b := range 256 {
		var s ecnState
		ok := s.fromBits(uint8(b))
		if want := b < 16 && (b&1 != 0 || b == 0); ok != want {
			t.Errorf("fromBits(%#x) = %v, want %v", b, ok, want)
		}
		if ok && s.bits() != uint8(b) {
			t.Errorf("bits(fromBits(%#x)) = %#x", b, s.bits())
		}
	}
}

// A version 2 record (before ECN) is read as a connection without ECN.
func TestECNKeptVersion2(t *testing.T) {
	h, mem := keptHarness(t)
	e := h.ecnAccept(nil)
	e.own(owner{sock: 7})
	e.SetLinger(0)
	h.tb.Commit()
	k := h.tb.keep
	i := e.slot - 1
	_, rec, _, c, ok := k.newestCopy(i)
	if !ok {
		t.Fatal("no record")
	}
	cp := k.copyOf(i, c)
	n := len(rec) - ecnRecordSize
	binary.LittleEndian.PutUint16(cp[12:], uint16(n))
	cp[15] = 2
	binary.LittleEndian.PutUint32(cp[8:], k.sum(cp, n))
	e = h.restart(mem, 7)
	if e.ecn != (ecnState{}) || e.Linger() != 0 {
		t.Errorf("from a version 2 record: ECN %+v, linger %d; want none, 0", e.ecn, e.Linger())
	}
	e.Write([]byte("x"))
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: "x"})
}
