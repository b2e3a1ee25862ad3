package tcp

import (
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
)

// Loss recovery dialogues. The peer sends MSS 1000; segment i of the data
// we send is the 1000 bytes at seqOf(i).

func seqOf(i int) uint32 { return ourISS + 1 + uint32(i*1000) }

// blk is the SACK block of segments [i, j).
func blk(i, j int) [2]uint32 { return [2]uint32{seqOf(i), seqOf(j)} }

// sender sets up a connection to a SACK peer (opts) with cwnd grown to
// cwnd segments, queues n segments of data and checks the first flight.
func sender(t *testing.T, opts header.TCPOptions, cc func() Congestion, cwnd, n int) (*harness, *Endpoint, string) {
	t.Helper()
	h := newHarness(t, func(c *Config) { c.Congestion = cc })
	e := h.accept(opts)
	e.cwnd = cwnd * e.smss // as slow start would have grown it
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

// dataSeg is our segment i of data.
func dataSeg(data string, i int) seg {
	return seg{flags: ACK, seq: seqOf(i), ack: 101, data: data[i*1000 : (i+1)*1000]}
}

// sackAck is the peer's ACK of ack with SACK blocks.
func sackAck(ack uint32, blocks ...[2]uint32) seg {
	return seg{flags: ACK, seq: 101, ack: ack, opts: sackOpts(blocks...)}
}

func newReno() Congestion { return &NewReno{} }

func TestSACKRecoveryRetransmitsOnlyHoles(t *testing.T) {
	h, e, data := sender(t, sackPeer, newReno, 10, 15)
	// Segment 0 is lost. Each duplicate ACK SACKs one more segment, which
	// leaves the network: pipe falls and new data goes (RFC 6675's pipe
	// does what Limited Transmit, RFC 3042, does).
	h.send(sackAck(seqOf(0), blk(1, 2)))
	h.expect(dataSeg(data, 10))
	h.send(sackAck(seqOf(0), blk(1, 3)))
	h.expect(dataSeg(data, 11))
	// Segment 3 was lost too. The third duplicate ACK starts recovery:
	// ssthresh = cwnd = FlightSize/2 = 6000, and the first hole goes again.
	// Pipe is 9000: nothing else.
	h.send(sackAck(seqOf(0), blk(4, 5), blk(1, 3)))
	h.expect(dataSeg(data, 0))
	h.expectNone()
	if !e.inRecovery || e.ssthresh != 6000 || e.cwnd != 6000 {
		t.Fatalf("inRecovery %v ssthresh %d cwnd %d; want true, 6000, 6000", e.inRecovery, e.ssthresh, e.cwnd)
	}
	// Segment 3 is lost once more than 2*SMSS are SACKed above it (IsLost);
	// it goes when pipe leaves room for it.
	h.send(sackAck(seqOf(0), blk(4, 6), blk(1, 3)))
	h.expectNone()
	h.send(sackAck(seqOf(0), blk(4, 7), blk(1, 3)))
	h.expectNone() // lost now, but pipe = 1000 (segment 0 again) + 5000 = cwnd
	h.send(sackAck(seqOf(0), blk(4, 8), blk(1, 3)))
	h.expect(dataSeg(data, 3))
	h.expectNone()
	// Segment 0 arrives: a partial ACK; no more holes, new data.
	h.send(sackAck(seqOf(3), blk(4, 8)))
	h.expect(dataSeg(data, 12))
	h.send(sackAck(seqOf(8)))
	h.expect(dataSeg(data, 13))
	// The ACK past the RecoveryPoint (segment 12) ends recovery; cwnd is
	// min(ssthresh, FlightSize + SMSS).
	h.send(sackAck(seqOf(13)))
	h.expect(dataSeg(data, 14))
	if e.inRecovery || e.cwnd != 2000 {
		t.Errorf("after recovery: inRecovery %v cwnd %d, want false, 2000", e.inRecovery, e.cwnd)
	}
	if c := h.tb.Counters(); c.Retransmits != 2 || c.FastRetransmits != 1 || c.Timeouts != 0 {
		t.Errorf("Retransmits %d FastRetransmits %d Timeouts %d; want 2, 1, 0", c.Retransmits, c.FastRetransmits, c.Timeouts)
	}
}

func TestSACKRecoveryStartsWhenFirstSegmentIsLost(t *testing.T) {
	// The duplicate ACKs before were lost: one ACK SACKs three segments
	// above the first, which IsLost by itself (RFC 6675 §5).
	h, e, data := sender(t, sackPeer, newReno, 10, 10)
	h.send(sackAck(seqOf(0), blk(1, 4)))
	h.expect(dataSeg(data, 0))
	if !e.inRecovery || e.dupAcks != 1 {
		t.Fatalf("inRecovery %v dupAcks %d; want true, 1", e.inRecovery, e.dupAcks)
	}
}

func TestDSACKIsNoDuplicateACK(t *testing.T) {
	// Three ACKs of SND.UNA that only report duplicates (D-SACK blocks
	// below it, RFC 2883) say nothing about loss: no fast retransmit. Old
	// NewReno counted them.
	h, e, _ := sender(t, sackPeer, newReno, 4, 4)
	h.send(sackAck(seqOf(1)))
	for range 3 {
		h.send(sackAck(seqOf(1), blk(0, 1)))
	}
	h.expectNone()
	if e.inRecovery || e.dupAcks != 0 {
		t.Fatalf("inRecovery %v dupAcks %d; want false, 0", e.inRecovery, e.dupAcks)
	}
}

func TestLostRetransmissionIsSentAgain(t *testing.T) {
	h, e, data := sender(t, sackPeer, newReno, 10, 20)
	// Recovery: segment 0 again, sent when SND.NXT is segment 10's.
	h.send(sackAck(seqOf(0), blk(1, 4)))
	h.expect(dataSeg(data, 0))
	h.send(sackAck(seqOf(0), blk(1, 6)))
	h.expectNone()
	h.send(sackAck(seqOf(0), blk(1, 8)))
	h.expect(dataSeg(data, 10))
	h.expect(dataSeg(data, 11))
	h.send(sackAck(seqOf(0), blk(1, 10)))
	h.expect(dataSeg(data, 12))
	h.expect(dataSeg(data, 13))
	// Segments 10-12, sent after the retransmission, arrive and it does
	// not: it was lost too. It goes again at once, first, and pipe no
	// longer counts it: new data follows.
	h.send(sackAck(seqOf(0), blk(1, 13)))
	h.expect(dataSeg(data, 0))
	h.expect(dataSeg(data, 14))
	h.expect(dataSeg(data, 15))
	h.expect(dataSeg(data, 16))
	h.expectNone()
	if c := h.tb.Counters(); c.LostRetransmits != 1 || c.Timeouts != 0 || c.FastRetransmits != 1 {
		t.Errorf("LostRetransmits %d Timeouts %d FastRetransmits %d; want 1, 0, 1", c.LostRetransmits, c.Timeouts, c.FastRetransmits)
	}
	h.send(sackAck(seqOf(17)))
	if e.inRecovery {
		t.Error("still in recovery after the ACK of everything")
	}
}

func TestRTORetransmitsHoleByHole(t *testing.T) {
	// RFC 6675 §5.1: after a timeout the scoreboard is kept; all unSACKed
	// data is lost and goes as slow start allows, SACKed data never.
	h, e, data := sender(t, sackPeer, newReno, 6, 6)
	h.send(sackAck(seqOf(0), blk(2, 3)))
	h.send(sackAck(seqOf(0), blk(4, 5), blk(2, 3)))
	h.expectNone() // two duplicate ACKs, 2000 bytes SACKed: no recovery yet
	h.advance(MinRTO)
	h.expect(dataSeg(data, 0))
	h.expectNone()
	if !e.inLoss || e.cwnd != 1000 || e.ssthresh != 3000 {
		t.Fatalf("inLoss %v cwnd %d ssthresh %d; want true, 1000, 3000", e.inLoss, e.cwnd, e.ssthresh)
	}
	h.send(sackAck(seqOf(1), blk(4, 5), blk(2, 3)))
	h.expect(dataSeg(data, 1))
	h.expect(dataSeg(data, 3)) // segment 2 was SACKed
	h.expectNone()
	h.send(sackAck(seqOf(3), blk(4, 5)))
	h.expect(dataSeg(data, 5))
	h.expectNone()
	h.send(sackAck(seqOf(6)))
	if e.inLoss || e.sndUna != e.sndNxt {
		t.Errorf("inLoss %v, una %d nxt %d; want false, all acknowledged", e.inLoss, e.sndUna, e.sndNxt)
	}
	if c := h.tb.Counters(); c.Retransmits != 4 || c.Timeouts != 1 {
		t.Errorf("Retransmits %d Timeouts %d; want 4, 1", c.Retransmits, c.Timeouts)
	}
}

func TestOneLossResponsePerEpisode(t *testing.T) {
	cc := &countingCC{}
	h, e, data := sender(t, sackPeer, func() Congestion { return cc }, 10, 10)
	h.send(sackAck(seqOf(0), blk(1, 4)))
	h.expect(dataSeg(data, 0))
	// The retransmission is lost and nothing after it tells: the timer
	// fires inside the episode. cwnd falls to one segment, ssthresh stays.
	ssthresh := e.ssthresh
	h.advance(MinRTO)
	h.expect(dataSeg(data, 0))
	if cc.losses != 1 || e.ssthresh != ssthresh || e.cwnd != 1000 {
		t.Fatalf("after the RTO: OnLoss calls %d, ssthresh %d, cwnd %d; want 1, %d, 1000", cc.losses, e.ssthresh, e.cwnd, ssthresh)
	}
	// And again: RFC 5681 §3.1 holds ssthresh on repeated timeouts.
	h.advance(2 * MinRTO)
	h.expect(dataSeg(data, 0))
	h.send(sackAck(seqOf(10)))
	if cc.losses != 1 || e.inLoss {
		t.Fatalf("OnLoss calls %d, inLoss %v; want 1, false", cc.losses, e.inLoss)
	}
	// A later loss is a new episode.
	e.cwnd = 10000
	e.Write([]byte(strings.Repeat("x", 5000)))
	for range 5 {
		h.next()
	}
	h.send(sackAck(seqOf(10), blk(11, 14)))
	h.expect(seg{flags: ACK, seq: seqOf(10), ack: 101, data: strings.Repeat("x", 1000)})
	if cc.losses != 2 {
		t.Errorf("OnLoss calls %d, want 2", cc.losses)
	}
}

func TestNewRenoPartialACKWithoutSACK(t *testing.T) {
	// A peer without SACK: RFC 6582 NewReno, one hole per partial ACK.
	h, e, data := sender(t, noOpts, newReno, 6, 6)
	for range 3 {
		h.send(seg{flags: ACK, seq: 101, ack: seqOf(0)})
	}
	h.expect(dataSeg(data, 0))
	if !e.inRecovery || e.cwnd != 3000+3000 {
		t.Fatalf("inRecovery %v cwnd %d; want true, 6000 (ssthresh + 3*SMSS)", e.inRecovery, e.cwnd)
	}
	h.send(seg{flags: ACK, seq: 101, ack: seqOf(3)})
	h.expect(dataSeg(data, 3))
	h.send(seg{flags: ACK, seq: 101, ack: seqOf(6)})
	if e.inRecovery {
		t.Error("still in recovery after the full ACK")
	}
}

func TestEifelUndoesSpuriousRecovery(t *testing.T) {
	// Timestamps (MSS 1012 less 12 bytes of them: segments of 1000). The
	// segments leave at TSval 5; three are SACKed above segment 0, which
	// is only late: recovery sends it again at TSval 15.
	opts := header.TCPOptions{MSS: 1012, HasMSS: true, SACKPermitted: true, HasTimestamps: true, TSVal: 500}
	h := newHarness(t, func(c *Config) { c.Congestion = newReno })
	e := h.accept(opts)
	e.cwnd = 6000
	h.advance(5 * time.Millisecond)
	data := strings.Repeat("0123456789", 600)
	e.Write([]byte(data))
	for i := range 6 {
		h.expect(dataSeg(data, i))
	}
	h.advance(10 * time.Millisecond)
	ack := sackAck(seqOf(0), blk(1, 4))
	ack.opts.HasTimestamps, ack.opts.TSVal, ack.opts.TSEcr = true, 502, 5
	h.send(ack)
	h.expect(dataSeg(data, 0))
	if !e.inRecovery || e.cwnd != 3000 {
		t.Fatalf("inRecovery %v cwnd %d; want true, 3000", e.inRecovery, e.cwnd)
	}
	// The original arrives: the ACK of everything echoes its TSval, 5,
	// older than the retransmission's (RFC 3522). The reduction is undone.
	h.send(seg{flags: ACK, seq: 101, ack: seqOf(6), opts: tsOpt(503, 5)})
	if e.inRecovery || e.cwnd < 6000 || e.ssthresh != 1<<30 {
		t.Errorf("inRecovery %v cwnd %d ssthresh %d; want false, >= 6000, unchanged", e.inRecovery, e.cwnd, e.ssthresh)
	}
	if c := h.tb.Counters(); c.SpuriousRecoveries != 1 {
		t.Errorf("SpuriousRecoveries = %d, want 1", c.SpuriousRecoveries)
	}
}

func TestEifelKeepsNeededRecovery(t *testing.T) {
	// The same, but the ACK echoes the retransmission's TSval: it was
	// needed, the reduction stays.
	opts := header.TCPOptions{MSS: 1012, HasMSS: true, SACKPermitted: true, HasTimestamps: true, TSVal: 500}
	h := newHarness(t, func(c *Config) { c.Congestion = newReno })
	e := h.accept(opts)
	e.cwnd = 6000
	h.advance(5 * time.Millisecond)
	e.Write([]byte(strings.Repeat("0123456789", 600)))
	for range 6 {
		h.next()
	}
	h.advance(10 * time.Millisecond)
	ack := sackAck(seqOf(0), blk(1, 4))
	ack.opts.HasTimestamps, ack.opts.TSVal, ack.opts.TSEcr = true, 502, 5
	h.send(ack)
	h.next()
	h.send(seg{flags: ACK, seq: 101, ack: seqOf(6), opts: tsOpt(503, 15)})
	if e.ssthresh != 3000 || h.tb.Counters().SpuriousRecoveries != 0 {
		t.Errorf("ssthresh %d SpuriousRecoveries %d; want 3000, 0", e.ssthresh, h.tb.Counters().SpuriousRecoveries)
	}
}

func TestDSACKUndoesSpuriousRecovery(t *testing.T) {
	// Without timestamps: segment 0 was only late, and the peer reports
	// our retransmission of it as a duplicate (D-SACK below the ACK, RFC
	// 2883) after recovery ended. Every retransmission of the episode was
	// needless: the window comes back (RFC 3708).
	h, e, data := sender(t, sackPeer, newReno, 6, 6)
	h.send(sackAck(seqOf(0), blk(1, 4)))
	h.expect(dataSeg(data, 0))
	h.send(sackAck(seqOf(6)))
	if e.inRecovery || e.cwnd > 3000 {
		t.Fatalf("inRecovery %v cwnd %d; want false, at most ssthresh 3000", e.inRecovery, e.cwnd)
	}
	h.send(sackAck(seqOf(6), blk(0, 1)))
	if e.cwnd != 6000 || e.ssthresh != 1<<30 || h.tb.Counters().SpuriousRecoveries != 1 {
		t.Errorf("cwnd %d ssthresh %d SpuriousRecoveries %d; want 6000, unchanged, 1", e.cwnd, e.ssthresh, h.tb.Counters().SpuriousRecoveries)
	}
}

func TestRenegingClearsScoreboard(t *testing.T) {
	// The peer SACKed segments 2-3 and then acknowledges up to their left
	// edge only: it dropped them (RFC 2018 §8). Their SACK is forgotten.
	h, e, _ := sender(t, sackPeer, newReno, 6, 6)
	h.send(sackAck(seqOf(0), blk(2, 4)))
	h.send(sackAck(seqOf(2)))
	if len(e.sb.r) != 0 {
		t.Fatalf("scoreboard %v, want empty", e.sb.r)
	}
}

func TestScoreboard(t *testing.T) {
	var sb scoreboard
	for _, tc := range []struct {
		add   seqRange
		newly int
		want  []seqRange
	}{
		{seqRange{100, 200}, 100, []seqRange{{100, 200}}},
		{seqRange{300, 400}, 100, []seqRange{{100, 200}, {300, 400}}},
		{seqRange{150, 250}, 50, []seqRange{{100, 250}, {300, 400}}},
		{seqRange{250, 300}, 50, []seqRange{{100, 400}}}, // adjacent: one range
		{seqRange{120, 180}, 0, []seqRange{{100, 400}}},
		{seqRange{0xfffffff0, 50}, 66, []seqRange{{0xfffffff0, 50}, {100, 400}}}, // across 2^32
	} {
		if n := sb.add(tc.add); n != tc.newly || !slicesEqual(sb.r, tc.want) {
			t.Errorf("add(%v) = %d, ranges %v; want %d, %v", tc.add, n, sb.r, tc.newly, tc.want)
		}
	}
	if b, n := sb.above(200); b != 200 || n != 1 {
		t.Errorf("above(200) = %d, %d; want 200, 1", b, n)
	}
	var holes []seqRange
	sb.holes(0xffffffe0, 500, func(h seqRange) bool { holes = append(holes, h); return true })
	if want := []seqRange{{0xffffffe0, 0xfffffff0}, {50, 100}, {400, 500}}; !slicesEqual(holes, want) {
		t.Errorf("holes = %v, want %v", holes, want)
	}
	if sb.advance(60) || !slicesEqual(sb.r, []seqRange{{100, 400}}) {
		t.Errorf("advance(60): ranges %v, want [{100 400}]", sb.r)
	}
	if !sb.advance(100) || sb.r != nil {
		t.Errorf("advance(100) to a SACKed range's edge: ranges %v, want reneged and empty", sb.r)
	}
	// Bounded: past maxSACKRanges the smallest range below the highest goes.
	sb = scoreboard{}
	for i := range maxSACKRanges + 1 {
		size := uint32(10)
		if i == 5 {
			size = 5
		}
		sb.add(seqRange{uint32(100 * i), uint32(100*i) + size})
	}
	if len(sb.r) != maxSACKRanges || sb.r[5].left == 500 || sb.r[len(sb.r)-1].left != 100*maxSACKRanges {
		t.Errorf("after %d ranges: %d kept, [5] = %v, last %v; want %d, range 500 gone, the highest kept",
			maxSACKRanges+1, len(sb.r), sb.r[5], sb.r[len(sb.r)-1], maxSACKRanges)
	}
}

func slicesEqual(a, b []seqRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzScoreboard adds SACK blocks and advances SND.UNA at random, across
// 2^32, and checks the scoreboard against a byte map: ranges sorted,
// disjoint and apart, never more than maxSACKRanges, never claiming a
// byte not SACKed, and exact while under the bound.
func FuzzScoreboard(f *testing.F) {
	f.Add([]byte{10, 20, 40, 10, 0, 5, 100, 50})
	f.Add([]byte{0, 255, 1, 1, 3, 3, 5, 5, 7, 7, 9, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const base, size = 0xffffff00, 512
		var sb scoreboard
		sacked := make([]bool, size)
		una := 0
		forgot := false
		for len(ops) >= 2 {
			a, b := int(ops[0])*2, int(ops[1])
			ops = ops[2:]
			if b == 0 { // advance SND.UNA to a
				if a > una {
					una = a
					reneged := sb.advance(base + uint32(una))
					if reneged {
						clear(sacked)
						forgot = true
					}
				}
				continue
			}
			l, r := max(a, una), min(a+b, size)
			if l >= r {
				continue
			}
			want := 0
			for i := l; i < r; i++ {
				if !sacked[i] {
					want++
				}
				sacked[i] = true
			}
			n0 := len(sb.r)
			got := sb.add(seqRange{base + uint32(l), base + uint32(r)})
			if n0 == maxSACKRanges {
				forgot = true // it may have forgotten one
			}
			if !forgot && got != want {
				t.Fatalf("add [%d, %d) = %d newly SACKed, want %d", l, r, got, want)
			}
		}
		if len(sb.r) > maxSACKRanges {
			t.Fatalf("%d ranges, bound %d", len(sb.r), maxSACKRanges)
		}
		in := make([]bool, size)
		for k, x := range sb.r {
			if !seqLT(x.left, x.right) || k > 0 && !seqLT(sb.r[k-1].right, x.left) {
				t.Fatalf("ranges %v not sorted, disjoint and apart", sb.r)
			}
			for s := x.left; s != x.right; s++ {
				i := int(s - base)
				if i < una || i >= size || !sacked[i] {
					t.Fatalf("range %v claims byte %d, not SACKed above SND.UNA %d", x, i, una)
				}
				in[i] = true
			}
		}
		if !forgot {
			for i := una; i < size; i++ {
				if sacked[i] != in[i] {
					t.Fatalf("byte %d: SACKed %v, in the scoreboard %v (%v)", i, sacked[i], in[i], sb.r)
				}
			}
		}
	})
}

func TestSACKPeerWhoseBlocksNeverCome(t *testing.T) {
	// SACK was negotiated but no block reaches us (a middlebox strips
	// them): duplicate ACKs count the old way, and a partial ACK tells the
	// next hole, as with NewReno.
	h, e, data := sender(t, sackPeer, newReno, 6, 6)
	for range 3 {
		h.send(sackAck(seqOf(0)))
	}
	h.expect(dataSeg(data, 0))
	h.send(sackAck(seqOf(3)))
	h.expect(dataSeg(data, 3))
	h.send(sackAck(seqOf(6)))
	if e.inRecovery || h.tb.Counters().Timeouts != 0 {
		t.Errorf("inRecovery %v, Timeouts %d; want false, 0", e.inRecovery, h.tb.Counters().Timeouts)
	}
}

func TestReorderingBelowDupThreshIsNoLoss(t *testing.T) {
	// Segment 0 arrives after segments 1 and 2: two duplicate ACKs, no
	// retransmission, no reduction, and the timer stays off its course.
	h, e, data := sender(t, sackPeer, newReno, 4, 6)
	h.send(sackAck(seqOf(0), blk(1, 2)))
	h.expect(dataSeg(data, 4)) // pipe fell by the SACKed segment
	h.send(sackAck(seqOf(0), blk(1, 3)))
	h.expect(dataSeg(data, 5))
	h.send(sackAck(seqOf(3)))
	h.send(sackAck(seqOf(6)))
	h.expectNone()
	if c := h.tb.Counters(); c.Retransmits != 0 || e.ssthresh != 1<<30 || e.inRecovery {
		t.Errorf("Retransmits %d, ssthresh %d, inRecovery %v; want 0, unchanged, false", c.Retransmits, e.ssthresh, e.inRecovery)
	}
}
