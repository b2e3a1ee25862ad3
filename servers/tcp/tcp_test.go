package tcp

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
)

func TestSeqArithmeticWraps(t *testing.T) {
	for _, tc := range []struct {
		a, b uint32
		lt   bool
	}{
		{1, 2, true}, {2, 1, false}, {0xffffffff, 0, true}, {0, 0xffffffff, false},
		{0xfffffff0, 0x10, true}, {0x10, 0xfffffff0, false}, {0x7fffffff, 0x80000000, true},
	} {
		if got := seqLT(tc.a, tc.b); got != tc.lt {
			t.Errorf("seqLT(%#x, %#x) = %v, want %v", tc.a, tc.b, got, tc.lt)
		}
		if got := seqGT(tc.b, tc.a); got != tc.lt {
			t.Errorf("seqGT(%#x, %#x) = %v, want %v", tc.b, tc.a, got, tc.lt)
		}
	}
	if !seqLEQ(5, 5) || !seqGEQ(5, 5) || seqLT(5, 5) {
		t.Error("seqLEQ/seqGEQ/seqLT at equality wrong")
	}
	if !seqInWindow(2, 0xfffffffe, 8) || seqInWindow(6, 0xfffffffe, 8) {
		t.Error("seqInWindow across the wrap wrong")
	}
}

func TestPassiveOpenNegotiatesOptions(t *testing.T) {
	h := newHarness(t, nil)
	l, _ := h.tb.Listen(netip.Addr{}, ourPort, 4)
	// Peer: <SEQ=100><CTL=SYN> MSS 1460, SACK-OK, TS 5000, WS 7.
	h.send(seg{flags: SYN, seq: 100, opts: linuxSYN(5000)})
	// Us: <SEQ=ISS><ACK=101><CTL=SYN,ACK>, our MSS, scale 5 (1 MiB buffer), TS echo.
	h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 101, wnd: 65535, opts: header.TCPOptions{
		MSS: 1460, HasMSS: true, SACKPermitted: true, WindowScale: 5, HasWS: true,
		HasTimestamps: true, TSVal: h.ts(), TSEcr: 5000}})
	if l.Readable() || l.Pending() != 1 {
		t.Fatalf("Readable, Pending = %v, %d; want false, 1", l.Readable(), l.Pending())
	}
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, wnd: 100, opts: tsOpt(5001, h.ts())})
	e, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept() = %v", err)
	}
	wantState(t, e, Established)
	if e.smss != 1448 || e.sndShift != 7 || e.rcvShift != 5 || !e.sackOK || !e.tsOK || e.sndWnd != 100<<7 {
		t.Errorf("smss %d, shifts %d/%d, sack %v, ts %v, sndWnd %d; want 1448, 7/5, true, true, 12800",
			e.smss, e.sndShift, e.rcvShift, e.sackOK, e.tsOK, e.sndWnd)
	}
}

func TestActiveOpen(t *testing.T) {
	h := newHarness(t, nil)
	e, err := h.tb.Connect(us, netip.AddrPortFrom(peer, peerPort))
	if err != nil {
		t.Fatal(err)
	}
	p := e.LocalAddr().Port()
	if p < EphemeralFirst {
		t.Errorf("local port %d, want ephemeral", p)
	}
	syn := h.expect(seg{flags: SYN, seq: ourISS, opts: header.TCPOptions{MSS: 1460, HasMSS: true, SACKPermitted: true,
		HasWS: true, WindowScale: 5, HasTimestamps: true}})
	_ = syn
	wantState(t, e, SynSent)
	if e.Writable() {
		t.Error("Writable() in SYN-SENT")
	}
	// The peer answers without scaling or timestamps: both are off.
	h.tb.Input(peerSeg(p, seg{flags: SYN | ACK, seq: 7000, ack: ourISS + 1, wnd: 8000, opts: noOpts}), peer, us)
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 7001, wnd: 65535})
	wantState(t, e, Established)
	if e.sndShift != 0 || e.rcvShift != 0 || e.tsOK || e.sackOK || e.smss != 1000 || e.sndWnd != 8000 {
		t.Errorf("shifts %d/%d ts %v sack %v smss %d wnd %d", e.sndShift, e.rcvShift, e.tsOK, e.sackOK, e.smss, e.sndWnd)
	}
	if !e.Writable() {
		t.Error("not Writable() when established")
	}
}

// peerSeg builds a segment from the peer to our port p (the harness's send
// is for port ourPort).
func peerSeg(p uint16, s seg) []byte {
	ol := s.opts.Size()
	b := make([]byte, header.TCPMinimumSize+ol+len(s.data))
	s.opts.Encode(b[header.TCPMinimumSize:])
	th := header.TCP(b)
	th.Encode(&header.TCPFields{SrcPort: peerPort, DstPort: p, Seq: s.seq, Ack: s.ack, Flags: s.flags, Window: s.wnd,
		Options: b[header.TCPMinimumSize : header.TCPMinimumSize+ol]})
	copy(th.Payload(), s.data)
	th.SetChecksum(th.ComputeChecksum(peer, us))
	return b
}

func TestConnectRefused(t *testing.T) {
	h := newHarness(t, nil)
	e, _ := h.tb.Connect(us, netip.AddrPortFrom(peer, peerPort))
	h.expect(seg{flags: SYN, seq: ourISS})
	h.tb.Input(peerSeg(e.LocalAddr().Port(), seg{flags: RST | ACK, ack: ourISS + 1}), peer, us)
	if !errors.Is(e.Err(), ErrRefused) || e.State() != Closed || h.tb.Conns() != 0 {
		t.Fatalf("Err, State, Conns = %v, %v, %d; want refused, CLOSED, 0", e.Err(), e.State(), h.tb.Conns())
	}
}

func TestSYNRetriesThenTimeout(t *testing.T) {
	h := newHarness(t, nil)
	e, _ := h.tb.Connect(us, netip.AddrPortFrom(peer, peerPort))
	h.expect(seg{flags: SYN, seq: ourISS})
	d := time.Second
	for range maxSynRetries {
		h.advance(d - time.Millisecond)
		h.expectNone()
		h.advance(time.Millisecond)
		h.expect(seg{flags: SYN, seq: ourISS})
		d *= 2
	}
	h.advance(d)
	if !errors.Is(e.Err(), ErrTimedOut) {
		t.Fatalf("Err() = %v, want ErrTimedOut", e.Err())
	}
}

func TestDataBothWaysWithWindowScaling(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(linuxSYN(1))
	// The peer's window is 10<<7 = 1280 bytes: one short segment fits.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, wnd: 10, opts: tsOpt(2, h.ts())})
	msg := strings.Repeat("x", 5000)
	if n, err := e.Write([]byte(msg)); n != 5000 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: msg[:1280], opts: tsOpt(h.ts(), 2)})
	h.expectNone()
	// It opens its window to 1000<<7: the rest, limited by cwnd (3 segments
	// of 1448 at first, less the 1280 acknowledged: slow start gave 1280).
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1 + 1280, wnd: 1000, opts: tsOpt(3, h.ts())})
	h.expect(seg{flags: ACK, seq: ourISS + 1 + 1280, ack: 101, data: msg[1280 : 1280+1448]})
	h.expect(seg{flags: ACK, seq: ourISS + 1 + 2728, ack: 101, data: msg[2728 : 2728+1448]})
	h.expectNone() // Nagle holds the short tail while data is in flight
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1 + 4176, wnd: 1000, opts: tsOpt(3, h.ts())})
	h.expect(seg{flags: ACK, seq: ourISS + 1 + 4176, ack: 101, data: msg[4176:]})
	// The peer sends two full segments: we ACK at once, with our window
	// scaled by 5.
	in := strings.Repeat("y", 2*1448)
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 5001, wnd: 1000, data: in[:1448], opts: tsOpt(4, h.ts())})
	h.expectNone()
	h.send(seg{flags: ACK, seq: 101 + 1448, ack: ourISS + 5001, wnd: 1000, data: in[1448:], opts: tsOpt(5, h.ts())})
	// The echo is the first unacknowledged segment's TSval (RFC 7323 §4.3).
	h.expect(seg{flags: ACK, seq: ourISS + 5001, ack: 101 + 2896, wnd: uint16((1<<20 - 2896) >> 5), opts: tsOpt(h.ts(), 4)})
	if got := read(t, e); got != in {
		t.Fatalf("Read %d bytes, want %d", len(got), len(in))
	}
}

func TestRTORetransmitWithBackoff(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.Write([]byte("hello"))
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: "hello"})
	// No RTT sample yet without timestamps (the SYN-ACK's was taken: 0 ms),
	// so the RTO is the 200 ms floor; it doubles each time.
	rto := e.rto
	if rto != MinRTO {
		t.Fatalf("rto = %v, want %v", rto, MinRTO)
	}
	for i := range 3 {
		h.advance(rto - time.Millisecond)
		h.expectNone()
		h.advance(time.Millisecond)
		h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: "hello"})
		rto *= 2
		if e.rto != rto {
			t.Fatalf("after %d timeouts rto = %v, want %v", i+1, e.rto, rto)
		}
	}
	if e.cwnd != e.smss {
		t.Errorf("cwnd after RTO = %d, want one segment %d", e.cwnd, e.smss)
	}
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 6})
	if e.armed(timerRTO) || e.retries != 0 {
		t.Errorf("after the ACK: RTO timer %v retries %d, want disarmed, 0", e.timers[timerRTO], e.retries)
	}
	if h.tb.Counters().Timeouts != 3 {
		t.Errorf("Timeouts = %d, want 3", h.tb.Counters().Timeouts)
	}
}

// TestInitialWindowIsTen: a new connection sends ten full segments
// before the first ACK (RFC 6928), and no more.
func TestInitialWindowIsTen(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	data := strings.Repeat("0123456789", 1200) // 12 segments of 1000
	e.Write([]byte(data))
	for i := range 10 {
		h.expect(seg{flags: ACK, seq: ourISS + 1 + uint32(i*1000), ack: 101, data: data[i*1000 : (i+1)*1000]})
	}
	h.expectNone()
	if got := initialWindow(1460, 10); got != 14600 {
		t.Errorf("initialWindow(1460, 10) = %d, want 14600", got)
	}
	if got := initialWindow(8960, 10); got != 17920 {
		t.Errorf("initialWindow(8960, 10) = %d, want 2 segments, 17920", got)
	}
}

func TestFastRetransmitNewReno(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Congestion = func() Congestion { return &NewReno{} } })
	e := h.accept(noOpts)
	e.cwnd = 4 * e.smss                       // RFC 5681's IW, a flight this test can count
	data := strings.Repeat("abcdefghij", 600) // 6000 bytes, 6 segments
	e.Write([]byte(data))
	for i := range 4 {
		h.expect(seg{flags: ACK, seq: ourISS + 1 + uint32(i*1000), ack: 101, data: data[i*1000 : (i+1)*1000]})
	}
	h.expectNone()
	// Segment 1 (bytes 1000-2000) is lost; the peer ACKs 0-1000, slow
	// start lets two more out.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1001})
	h.expect(seg{flags: ACK, seq: ourISS + 4001, ack: 101, data: data[4000:5000]})
	h.expect(seg{flags: ACK, seq: ourISS + 5001, ack: 101, data: data[5000:6000]})
	// Three duplicate ACKs for 1000: fast retransmit of the hole.
	for range 2 {
		h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1001})
		h.expectNone()
	}
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1001})
	h.expect(seg{flags: ACK, seq: ourISS + 1001, ack: 101, data: data[1000:2000]})
	if !e.inRecovery || e.ssthresh != 2500 || e.cwnd != 2500+3000 {
		t.Fatalf("inRecovery %v ssthresh %d cwnd %d; want true, 2500 (flight 5000/2), 5500", e.inRecovery, e.ssthresh, e.cwnd)
	}
	// Segment 3 was lost too: the ACK for the retransmission is partial,
	// NewReno sends the next hole at once.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 3001})
	h.expect(seg{flags: ACK, seq: ourISS + 3001, ack: 101, data: data[3000:4000]})
	// The full ACK ends recovery with cwnd = ssthresh.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 6001})
	if e.inRecovery || e.cwnd != 1000 {
		// min(ssthresh, flight 0 -> smss + smss) = min(2500, 2000)
		if e.inRecovery || e.cwnd != 2000 {
			t.Fatalf("after the full ACK: inRecovery %v cwnd %d, want false, 2000", e.inRecovery, e.cwnd)
		}
	}
	if c := h.tb.Counters(); c.FastRetransmits != 1 {
		t.Errorf("FastRetransmits = %d, want 1", c.FastRetransmits)
	}
}

func TestPAWSDropsOldTimestamp(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(linuxSYN(1000))
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: "new", opts: tsOpt(1005, h.ts())})
	// A segment with an older TSval (a wrapped, old duplicate): dropped
	// and answered with an ACK.
	h.send(seg{flags: ACK, seq: 104, ack: ourISS + 1, data: "old", opts: tsOpt(900, h.ts())})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 104, opts: tsOpt(h.ts(), 1005)})
	if got := read(t, e); got != "new" {
		t.Fatalf("Read = %q, want %q", got, "new")
	}
	if h.tb.Counters().InPAWSDrops != 1 {
		t.Errorf("InPAWSDrops = %d, want 1", h.tb.Counters().InPAWSDrops)
	}
}

func TestRSTInWindowNotExactIsChallenged(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.send(seg{flags: RST, seq: 101 + 500})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101})
	wantState(t, e, Established)
	// Outside the window: silently dropped.
	h.send(seg{flags: RST, seq: 101 + 2<<20})
	h.expectNone()
	wantState(t, e, Established)
}

func TestExactRSTResets(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.send(seg{flags: RST, seq: 101})
	h.expectNone()
	wantState(t, e, Closed)
	if _, err := e.Read(make([]byte, 1)); !errors.Is(err, ErrReset) {
		t.Errorf("Read() error = %v, want ErrReset", err)
	}
	if _, err := e.Write([]byte("x")); !errors.Is(err, ErrReset) {
		t.Errorf("Write() error = %v, want ErrReset", err)
	}
	if h.tb.Conns() != 0 {
		t.Errorf("Conns() = %d, want 0", h.tb.Conns())
	}
}

func TestSYNInEstablishedIsChallenged(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.send(seg{flags: SYN, seq: 101})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101})
	h.send(seg{flags: SYN, seq: 9999})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101})
	wantState(t, e, Established)
	if h.tb.Counters().ChallengeACKs != 2 {
		t.Errorf("ChallengeACKs = %d, want 2", h.tb.Counters().ChallengeACKs)
	}
}

func TestSimultaneousOpen(t *testing.T) {
	h := newHarness(t, nil)
	e, _ := h.tb.Connect(us, netip.AddrPortFrom(peer, peerPort))
	p := e.LocalAddr().Port()
	h.expect(seg{flags: SYN, seq: ourISS})
	// The peer's SYN crosses ours.
	h.tb.Input(peerSeg(p, seg{flags: SYN, seq: 300, wnd: 5000, opts: noOpts}), peer, us)
	h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 301})
	wantState(t, e, SynReceived)
	// Its SYN-ACK arrives: established, nothing more to say.
	h.tb.Input(peerSeg(p, seg{flags: SYN | ACK, seq: 300, ack: ourISS + 1, wnd: 5000}), peer, us)
	h.expectNone()
	wantState(t, e, Established)
	e.Write([]byte("hi"))
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 301, data: "hi"})
}

func TestSimultaneousCloseAndTimeWait(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.CloseWrite()
	h.expect(seg{flags: FIN | ACK, seq: ourISS + 1, ack: 101})
	wantState(t, e, FinWait1)
	// The peer's FIN crosses ours.
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 1})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	wantState(t, e, Closing)
	h.send(seg{flags: ACK, seq: 102, ack: ourISS + 2})
	wantState(t, e, TimeWait)
	// A retransmitted FIN is acknowledged again and restarts the 2*MSL.
	h.advance(MSL)
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 2})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 102})
	h.advance(2*MSL - time.Second)
	wantState(t, e, TimeWait)
	h.advance(time.Second)
	wantState(t, e, Closed)
	if e.Err() != nil || h.tb.Conns() != 0 {
		t.Errorf("Err, Conns = %v, %d; want nil, 0", e.Err(), h.tb.Conns())
	}
	if _, err := e.Read(nil); err != io.EOF {
		t.Errorf("Read() = %v, want EOF", err)
	}
}

func TestPassiveClose(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.send(seg{flags: FIN | ACK, seq: 101, ack: ourISS + 1})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 102})
	wantState(t, e, CloseWait)
	if n, err := e.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read() = %d, %v; want 0, EOF", n, err)
	}
	// We may still send, then close.
	e.Write([]byte("bye"))
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 102, data: "bye"})
	e.Close()
	h.expect(seg{flags: FIN | ACK, seq: ourISS + 4, ack: 102})
	wantState(t, e, LastAck)
	h.send(seg{flags: ACK, seq: 102, ack: ourISS + 5})
	wantState(t, e, Closed)
	if h.tb.Conns() != 0 {
		t.Errorf("Conns() = %d, want 0", h.tb.Conns())
	}
}

func TestHalfCloseStillReceives(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.CloseWrite()
	h.expect(seg{flags: FIN | ACK, seq: ourISS + 1, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 2})
	wantState(t, e, FinWait2)
	if _, err := e.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after CloseWrite = %v, want ErrClosed", err)
	}
	h.send(seg{flags: ACK | PSH, seq: 101, ack: ourISS + 2, data: "still here"})
	if got := read(t, e); got != "still here" {
		t.Fatalf("Read = %q", got)
	}
	h.send(seg{flags: FIN | ACK, seq: 111, ack: ourISS + 2})
	h.expect(seg{flags: ACK, seq: ourISS + 2, ack: 112})
	wantState(t, e, TimeWait)
	h.advance(2 * MSL)
	wantState(t, e, Closed)
}

func TestCloseWithUnreadDataResets(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: "unread"})
	e.Close()
	h.expect(seg{flags: RST, seq: ourISS + 1})
	wantState(t, e, Closed)
}

func TestZeroWindowPersistProbe(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, zeroWnd: true})
	e.Write([]byte("blocked"))
	h.expectNone()
	// The persist timer (the RTO, 200 ms) sends a probe: an old sequence
	// number, no data.
	h.advance(MinRTO)
	h.expect(seg{flags: ACK, seq: ourISS, ack: 101})
	// Still closed: the next probe waits twice as long.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, zeroWnd: true})
	h.advance(2*MinRTO - time.Millisecond)
	h.expectNone()
	h.advance(time.Millisecond)
	h.expect(seg{flags: ACK, seq: ourISS, ack: 101})
	// The window opens: the data goes.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, wnd: 100})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: "blocked"})
}

func TestOurZeroWindowAndUpdate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RecvBuffer = 4000 })
	e := h.accept(noOpts)
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: strings.Repeat("a", 1000)})
	h.send(seg{flags: ACK, seq: 1101, ack: ourISS + 1, data: strings.Repeat("a", 1000)})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 2101, wnd: 2000})
	h.send(seg{flags: ACK, seq: 2101, ack: ourISS + 1, data: strings.Repeat("a", 1000)})
	h.send(seg{flags: ACK, seq: 3101, ack: ourISS + 1, data: strings.Repeat("a", 1000)})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 4101, zeroWnd: true})
	// Beyond the window: dropped, acknowledged.
	h.send(seg{flags: ACK, seq: 4101, ack: ourISS + 1, data: "z"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 4101, zeroWnd: true})
	// Reading opens the window: an update goes out.
	if got := read(t, e); len(got) != 4000 {
		t.Fatalf("Read %d bytes, want 4000", len(got))
	}
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 4101, wnd: 4000})
}

func TestDelayedACK(t *testing.T) {
	h := newHarness(t, nil)
	h.accept(noOpts)
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: "one"})
	h.advance(DelayedACK - time.Millisecond)
	h.expectNone()
	h.advance(time.Millisecond)
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 104})
}

func TestNagle(t *testing.T) {
	for _, noDelay := range []bool{false, true} {
		h := newHarness(t, nil)
		e := h.accept(noOpts)
		e.SetNoDelay(noDelay)
		e.Write([]byte("first"))
		h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: "first"})
		e.Write([]byte("second"))
		e.Write([]byte("third"))
		if noDelay {
			h.expect(seg{flags: ACK, seq: ourISS + 6, ack: 101, data: "second"})
			h.expect(seg{flags: ACK, seq: ourISS + 12, ack: 101, data: "third"})
			continue
		}
		h.expectNone() // a small segment is in flight
		h.send(seg{flags: ACK, seq: 101, ack: ourISS + 6})
		h.expect(seg{flags: ACK, seq: ourISS + 6, ack: 101, data: "secondthird"})
	}
}

func TestListenerBacklogFull(t *testing.T) {
	h := newHarness(t, nil)
	l, _ := h.tb.Listen(netip.Addr{}, ourPort, 1)
	h.send(seg{flags: SYN, seq: 100, from: 6000})
	h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, from: 6000})
	// The accept queue is full: the next SYN is dropped (the peer retries).
	h.send(seg{flags: SYN, seq: 500, from: 6001})
	h.expectNone()
	if h.tb.Counters().InSynDrops != 1 {
		t.Errorf("InSynDrops = %d, want 1", h.tb.Counters().InSynDrops)
	}
	l.Accept()
	h.send(seg{flags: SYN, seq: 500, from: 6001})
	h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 501})
}

func TestSYNQueueDropsOldestWithoutCookies(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SynQueue, c.NoSynCookies = 2, true })
	l, _ := h.tb.Listen(netip.Addr{}, ourPort, 10)
	for i := range 3 {
		h.send(seg{flags: SYN, seq: 100, from: uint16(6000 + i)})
		h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 101})
	}
	if l.Pending() != 2 || h.tb.Conns() != 2 || h.tb.Counters().InSynEvictions != 1 {
		t.Fatalf("Pending %d Conns %d evictions %d; want 2, 2, 1", l.Pending(), h.tb.Conns(), h.tb.Counters().InSynEvictions)
	}
	// The oldest's ACK now finds nothing: RST.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, from: 6000})
	h.expect(seg{flags: RST, seq: ourISS + 1})
}

func TestSegmentsToNothingGetRST(t *testing.T) {
	h := newHarness(t, nil)
	// RFC 9293 §3.10.7.1.
	h.send(seg{flags: SYN, seq: 100})
	h.expect(seg{flags: RST | ACK, seq: 0, ack: 101})
	h.send(seg{flags: ACK, seq: 100, ack: 777})
	h.expect(seg{flags: RST, seq: 777})
	h.send(seg{flags: PSH, seq: 100, data: "abc"})
	h.expect(seg{flags: RST | ACK, seq: 0, ack: 103})
	h.send(seg{flags: RST, seq: 100})
	h.expectNone()
}

func TestBadSegmentsDroppedAndCounted(t *testing.T) {
	h := newHarness(t, nil)
	h.tb.Listen(netip.Addr{}, ourPort, 1)
	b := peerSeg(ourPort, seg{flags: SYN, seq: 100, opts: noOpts})
	b[16] ^= 0xff // checksum
	h.tb.Input(b, peer, us)
	b = peerSeg(ourPort, seg{flags: SYN, seq: 100, opts: header.TCPOptions{HasMSS: true, MSS: 1}})
	b[21] = 3 // MSS length 3: malformed
	header.TCP(b).SetChecksum(header.TCP(b).ComputeChecksum(peer, us))
	h.tb.Input(b, peer, us)
	h.expectNone()
	c := h.tb.Counters()
	if c.InBadChecksum != 1 || c.InBadOptions != 1 || h.tb.Conns() != 0 {
		t.Errorf("InBadChecksum %d InBadOptions %d Conns %d; want 1, 1, 0", c.InBadChecksum, c.InBadOptions, h.tb.Conns())
	}
}

// A segment whose checksum the device verified (InputVerified) is taken
// without computing it again: a SYN with a checksum that would not verify
// here is answered, where Input drops it.
func TestInputVerified(t *testing.T) {
	h := newHarness(t, nil)
	h.tb.Listen(netip.Addr{}, ourPort, 1)
	b := peerSeg(ourPort, seg{flags: SYN, seq: 100, opts: noOpts})
	b[16] ^= 0xff // checksum
	h.tb.Input(b, peer, us)
	h.expectNone()
	h.tb.InputVerified(b, peer, us, 0)
	if got, ok := h.next(); !ok || got.flags != SYN|ACK {
		t.Errorf("after a verified SYN sent %+v (%v), want a SYN-ACK", got, ok)
	}
	if c := h.tb.Counters(); c.InBadChecksum != 1 || c.InVerified != 1 {
		t.Errorf("InBadChecksum %d InVerified %d; want 1, 1", c.InBadChecksum, c.InVerified)
	}
}

// InputShared (a segment in IP's buffer) decides on its own copy of the
// header and reads the payload where it is: the data reaches the receive
// buffer whole, after a header with options too; the checksum is checked
// unless the device did; malformed segments are counted as Input counts
// them.
func TestInputShared(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(tsOpt(1000, 0))
	tsNow := func() header.TCPOptions { return tsOpt(1001, h.ts()) }
	b := peerSeg(ourPort, seg{flags: ACK, seq: 101, ack: ourISS + 1, opts: tsNow(), data: "hello"})
	h.tb.InputShared(b, peer, us, 0, false)
	b = peerSeg(ourPort, seg{flags: ACK, seq: 106, ack: ourISS + 1, opts: tsNow(), data: "world"})
	b[len(b)-1] ^= 0xff // the payload no longer matches the checksum
	h.tb.InputShared(b, peer, us, 0, false)
	h.tb.InputShared(b[:10], peer, us, 0, true)                                          // truncated
	h.tb.InputShared(append(b[:12:12], 0xf0, 0x10, 0, 0, 0, 0, 0, 0), peer, us, 0, true) // data offset 60 of 20 bytes
	b[len(b)-1] ^= 0xff ^ 0x20                                                           // "worlD"... as the device verified it
	h.tb.InputShared(b, peer, us, 0, true)
	got := make([]byte, 16)
	n, err := e.Read(got)
	if err != nil || string(got[:n]) != "helloworlD" {
		t.Errorf("read %q, %v; want helloworlD", got[:n], err)
	}
	c := h.tb.Counters()
	if c.InBadChecksum != 1 || c.InTruncated != 1 || c.InBadOffset != 1 || c.InVerified != 1 {
		t.Errorf("InBadChecksum %d InTruncated %d InBadOffset %d InVerified %d; want 1 each", c.InBadChecksum, c.InTruncated, c.InBadOffset, c.InVerified)
	}
}

func TestSequenceWraparound(t *testing.T) {
	h := newHarness(t, nil)
	h.tb.isn = func(tuple) uint32 { return 0xfffffff0 }
	l, _ := h.tb.Listen(netip.Addr{}, ourPort, 1)
	var peerISN uint32 = 0xfffffff8
	h.send(seg{flags: SYN, seq: peerISN, opts: noOpts})
	h.expect(seg{flags: SYN | ACK, seq: 0xfffffff0, ack: peerISN + 1})
	h.send(seg{flags: ACK, seq: peerISN + 1, ack: 0xfffffff1})
	e, _ := l.Accept()
	// 32 bytes each way cross 2^32.
	msg := strings.Repeat("w", 32)
	e.Write([]byte(msg))
	h.expect(seg{flags: ACK, seq: 0xfffffff1, ack: peerISN + 1, data: msg})
	h.send(seg{flags: ACK, seq: peerISN + 1, ack: 0x11, data: msg})
	if got := read(t, e); got != msg {
		t.Fatalf("Read = %q", got)
	}
	// Out of order across the wrap: the second half first.
	h.send(seg{flags: ACK, seq: peerISN + 1 + 48, ack: 0x11, data: "BBBB"})
	h.expect(seg{flags: ACK, seq: 0x11, ack: peerISN + 1 + 32})
	h.send(seg{flags: ACK, seq: peerISN + 1 + 32, ack: 0x11, data: strings.Repeat("A", 16)})
	h.expect(seg{flags: ACK, seq: 0x11, ack: peerISN + 1 + 52})
	if e.sndUna != 0x11 || e.State() != Established {
		t.Fatalf("sndUna %#x state %v", e.sndUna, e.State())
	}
}

func TestReassemblyWithSACK(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(header.TCPOptions{MSS: 1000, HasMSS: true, SACKPermitted: true})
	h.send(seg{flags: ACK, seq: 111, ack: ourISS + 1, data: "BBBBBBBBBB"}) // 111-121
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, opts: header.TCPOptions{NumSACK: 1, SACK: [4]header.TCPSACKBlock{{Left: 111, Right: 121}}}})
	h.send(seg{flags: ACK, seq: 131, ack: ourISS + 1, data: "DDDDDDDDDD"}) // 131-141
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, opts: header.TCPOptions{NumSACK: 2, SACK: [4]header.TCPSACKBlock{{Left: 131, Right: 141}, {Left: 111, Right: 121}}}})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: "AAAAAAAAAA"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 121, opts: header.TCPOptions{NumSACK: 1, SACK: [4]header.TCPSACKBlock{{Left: 131, Right: 141}}}})
	h.send(seg{flags: ACK | FIN, seq: 121, ack: ourISS + 1, data: "CCCCCCCCCC"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 142})
	if got := read(t, e); got != "AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDDDD" {
		t.Fatalf("Read = %q", got)
	}
	wantState(t, e, CloseWait)
}

func TestReassemblyQueueIsBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxOutOfOrder = 4 })
	e := h.accept(noOpts)
	for i := range 10 {
		h.send(seg{flags: ACK, seq: uint32(102 + 2*i), ack: ourISS + 1, data: "x"})
	}
	if len(e.ooo) != 4 || h.tb.Counters().InOOODrops != 6 {
		t.Fatalf("ooo %d, drops %d; want 4, 6", len(e.ooo), h.tb.Counters().InOOODrops)
	}
}

func TestKeepalive(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.SetKeepAlive(true, 10*time.Second, time.Second, 2)
	h.advance(10 * time.Second)
	h.expect(seg{flags: ACK, seq: ourISS, ack: 101})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1}) // alive
	h.advance(10 * time.Second)
	h.expect(seg{flags: ACK, seq: ourISS, ack: 101})
	h.advance(time.Second)
	h.expect(seg{flags: ACK, seq: ourISS, ack: 101})
	h.advance(time.Second)
	if !errors.Is(e.Err(), ErrTimedOut) {
		t.Fatalf("Err() = %v, want ErrTimedOut", e.Err())
	}
}

func TestAbortSendsRST(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.Abort()
	h.expect(seg{flags: RST, seq: ourISS + 1})
	if h.tb.Conns() != 0 {
		t.Errorf("Conns() = %d", h.tb.Conns())
	}
}

func TestPAWSAcceptsReorderedDuplicateACK(t *testing.T) {
	// Two duplicate ACKs cross on the way: the later (TSval 1003) first.
	// The earlier fails PAWS, but it is an ACK overtaken, not an old
	// duplicate: it is taken without an answer, which the peer would count
	// as a duplicate ACK of ours (Linux's tcp_disordered_ack).
	h := newHarness(t, func(c *Config) { c.Congestion = newReno })
	e := h.accept(header.TCPOptions{MSS: 1012, HasMSS: true, SACKPermitted: true, HasTimestamps: true, TSVal: 1000})
	h.advance(time.Millisecond)
	e.Write([]byte(strings.Repeat("a", 4000)))
	for range 4 {
		h.next()
	}
	later := sackAck(seqOf(0), blk(1, 3))
	later.opts.HasTimestamps, later.opts.TSVal, later.opts.TSEcr = true, 1003, 1
	earlier := sackAck(seqOf(0), blk(1, 2))
	earlier.opts.HasTimestamps, earlier.opts.TSVal, earlier.opts.TSEcr = true, 1002, 1
	h.send(later)
	h.send(earlier)
	h.expectNone()
	if c := h.tb.Counters(); c.InPAWSDrops != 0 || e.tsRecent != 1003 {
		t.Fatalf("InPAWSDrops %d, TS.Recent %d; want 0, 1003", c.InPAWSDrops, e.tsRecent)
	}
	// A reordered ACK of less than SND.UNA fails PAWS and is dropped,
	// silently: an ACK is never answered with an ACK.
	h.send(sackAck(seqOf(1), blk(2, 3)))
	h.send(seg{flags: ACK, seq: 101, ack: seqOf(0), opts: tsOpt(1002, 1)})
	h.expectNone()
	if c := h.tb.Counters(); c.InPAWSDrops != 1 {
		t.Errorf("InPAWSDrops = %d, want 1", c.InPAWSDrops)
	}
	// Data with an old timestamp still is dropped and acknowledged (R1).
	h.send(seg{flags: ACK, seq: 101, ack: seqOf(1), data: "old", opts: tsOpt(1001, 1)})
	h.expect(seg{flags: ACK, seq: seqOf(4), ack: 101})
}

func TestReceiverReportsDuplicatesWithDSACK(t *testing.T) {
	// RFC 2883 §4: a duplicate segment is reported in the first SACK
	// block of the ACK it causes, then the block holding it if it was out
	// of order.
	h := newHarness(t, nil)
	h.accept(sackPeer)
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: "AAAAAAAAAA"})
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: "AAAAAAAAAA"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 111, opts: sackOpts([2]uint32{101, 111})})
	h.send(seg{flags: ACK, seq: 121, ack: ourISS + 1, data: "CCCCCCCCCC"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 111, opts: sackOpts([2]uint32{121, 131})})
	h.send(seg{flags: ACK, seq: 121, ack: ourISS + 1, data: "CCCCCCCCCC"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 111, opts: sackOpts([2]uint32{121, 131}, [2]uint32{121, 131})})
	// Part old, part new: the old part is the duplicate.
	h.send(seg{flags: ACK, seq: 106, ack: ourISS + 1, data: "AAAAABBBBBBBBBB"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 131, opts: sackOpts([2]uint32{106, 111})})
}

func TestReassemblyKeepsContiguousDataAsOneRange(t *testing.T) {
	// The bound counts islands between holes, not segments: a long run
	// after one hole all waits for the hole (it was 2 segments).
	h := newHarness(t, func(c *Config) { c.MaxOutOfOrder = 2 })
	e := h.accept(sackPeer)
	for i := range 10 {
		h.send(seg{flags: ACK, seq: uint32(111 + 10*i), ack: ourISS + 1, data: strings.Repeat(string(rune('B'+i)), 10)})
	}
	if len(e.ooo) != 1 || e.oooLen != 100 || h.tb.Counters().InOOODrops != 0 {
		t.Fatalf("ooo %d ranges, %d bytes, drops %d; want 1, 100, 0", len(e.ooo), e.oooLen, h.tb.Counters().InOOODrops)
	}
	// Out of order within the out of order: merged too.
	h.send(seg{flags: ACK, seq: 231, ack: ourISS + 1, data: "MMMMMMMMMM"})
	h.send(seg{flags: ACK, seq: 221, ack: ourISS + 1, data: "LLLLLLLLLL"})
	if len(e.ooo) != 2 {
		t.Fatalf("ooo %d ranges, want 2", len(e.ooo))
	}
	h.send(seg{flags: ACK, seq: 206, ack: ourISS + 1, data: "KKKKKXXXXXXXXXX"}) // fills 211-221, overlapping
	if len(e.ooo) != 1 || e.oooLen != 130 {
		t.Fatalf("ooo %v ranges, %d bytes; want 1, 130", len(e.ooo), e.oooLen)
	}
	h.drain() // the ACKs with SACK blocks
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, data: "AAAAAAAAAA"})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 241})
	want := "AAAAAAAAAA" + "BBBBBBBBBBCCCCCCCCCCDDDDDDDDDDEEEEEEEEEEFFFFFFFFFFGGGGGGGGGGHHHHHHHHHHIIIIIIIIIIJJJJJJJJJJKKKKKKKKKK" +
		"XXXXXXXXXXLLLLLLLLLLMMMMMMMMMM"
	if got := read(t, e); got != want {
		t.Fatalf("Read = %q, want %q", got, want)
	}
}

func TestConnectFromBoundPort(t *testing.T) {
	h := newHarness(t, nil)
	e, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, 4242), netip.AddrPortFrom(peer, peerPort))
	if err != nil {
		t.Fatal(err)
	}
	if p := e.LocalAddr().Port(); p != 4242 {
		t.Errorf("local port %d, want the bound 4242", p)
	}
	h.expect(seg{flags: SYN, seq: ourISS, from: 4242})
	// The same 4-tuple again, or a port that has a listener: in use.
	if _, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, 4242), netip.AddrPortFrom(peer, peerPort)); !errors.Is(err, ErrInUse) {
		t.Errorf("second ConnectFrom(:4242) = %v, want ErrInUse", err)
	}
	h.tb.Listen(netip.Addr{}, 8080, 1)
	if _, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, 8080), netip.AddrPortFrom(peer, peerPort)); !errors.Is(err, ErrInUse) {
		t.Errorf("ConnectFrom(:8080) with a listener there = %v, want ErrInUse", err)
	}
	// The same port to another peer is another connection.
	if _, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, 4242), netip.AddrPortFrom(peer, peerPort+1)); err != nil {
		t.Errorf("ConnectFrom(:4242) to another port = %v", err)
	}
	// Port 0: ephemeral, as Connect.
	if e, err := h.tb.ConnectFrom(netip.AddrPortFrom(us, 0), netip.AddrPortFrom(peer, peerPort)); err != nil || e.LocalAddr().Port() < EphemeralFirst {
		t.Errorf("ConnectFrom(:0) = %v, %v; want an ephemeral port", e.LocalAddr(), err)
	}
}

// FuzzReassembly sends the peer's stream as segments in any order, sizes
// and overlaps, duplicates among them, then the whole of it in order: what
// is read must be the stream, and the out-of-order queue must stay sorted,
// apart and within its bounds.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{10, 5, 0, 10, 30, 20, 15, 20})
	f.Add([]byte{200, 10, 100, 50, 150, 60, 0, 255})
	f.Fuzz(func(t *testing.T, segs []byte) {
		h := newHarness(t, func(c *Config) { c.MaxOutOfOrder = 4; c.RecvBuffer = 1000 })
		e := h.accept(sackPeer)
		const size = 600
		stream := make([]byte, size)
		for i := range stream {
			stream[i] = byte('a' + i%26)
		}
		for len(segs) >= 2 {
			off, n := int(segs[0])*2, int(segs[1])
			segs = segs[2:]
			end := min(off+n, size)
			if off >= end {
				continue
			}
			h.send(seg{flags: ACK, seq: 101 + uint32(off), ack: ourISS + 1, data: string(stream[off:end])})
			for k, o := range e.ooo {
				if len(o.data) == 0 || k > 0 && !seqLT(e.ooo[k-1].end(), o.seq) || string(o.data) != string(stream[o.seq-101:o.end()-101]) {
					t.Fatalf("out-of-order queue %d wrong after [%d, %d)", k, off, end)
				}
			}
			if len(e.ooo) > 4 || e.oooLen > 1000 {
				t.Fatalf("out-of-order queue: %d ranges, %d bytes; bounds 4, 1000", len(e.ooo), e.oooLen)
			}
		}
		got := read(t, e)
		h.send(seg{flags: ACK, seq: 101 + uint32(len(got)), ack: ourISS + 1, data: string(stream[len(got):])})
		got += read(t, e)
		if got != string(stream) {
			t.Fatalf("read %q, want the stream", got)
		}
	})
}
