package tcp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/transport"
)

// The harness plays the peer: tests send it segments as the peer would
// and expect what the Table puts on the wire, so that each test reads as
// the dialogue of RFC 9293's figures.

var (
	us   = netip.MustParseAddr("10.0.0.1")
	peer = netip.MustParseAddr("10.0.0.2")
)

const (
	ourPort  = 80
	peerPort = 5000
	ourISS   = 1000 // every connection of the harness starts here
)

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

type sent struct {
	b        []byte
	src, dst netip.Addr
	ecn      uint8 // the codepoint asked of IP
}

type recorder struct{ segs []sent }

func (r *recorder) Buffer(int) []byte { return nil } // the Table never builds in place

func (r *recorder) Send(seg []byte, src, dst netip.Addr, o transport.Offload) error {
	r.segs = append(r.segs, sent{append([]byte(nil), seg...), src, dst, o.ECN})
	return nil
}

// seg is a segment as a test writes it. Fields left zero are not checked
// by expect, except flags, seq, ack and data, which always are (PSH aside).
type seg struct {
	flags    uint8
	seq, ack uint32
	wnd      uint16 // 0: 65535 when sent, not checked when expected
	zeroWnd  bool   // the window is 0 (sent or expected)
	data     string
	opts     header.TCPOptions
	from     uint16 // peer's port; 0: peerPort
	anySeq   bool   // expected: seq is not checked (a SYN cookie)
	ecn      uint8  // its IP header's ECN codepoint (sent or expected; ecn.go)
}

const (
	SYN = header.TCPFlagSYN
	ACK = header.TCPFlagACK
	FIN = header.TCPFlagFIN
	RST = header.TCPFlagRST
	PSH = header.TCPFlagPSH
	ECE = header.TCPFlagECE
	CWR = header.TCPFlagCWR
)

func flagString(f uint8) string {
	var s []string
	for _, x := range []struct {
		f uint8
		n string
	}{{SYN, "SYN"}, {RST, "RST"}, {FIN, "FIN"}, {PSH, "PSH"}, {ACK, "ACK"}, {ECE, "ECE"}, {CWR, "CWR"}} {
		if f&x.f != 0 {
			s = append(s, x.n)
		}
	}
	return strings.Join(s, "|")
}

func (s seg) String() string {
	return fmt.Sprintf("<SEQ=%d><ACK=%d><CTL=%s><WND=%d> %d bytes, ECN %d", s.seq, s.ack, flagString(s.flags), s.wnd, len(s.data), s.ecn)
}

type harness struct {
	t     *testing.T
	clock *fakeClock
	out   *recorder
	tb    *Table
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{time.Unix(1_700_000_000, 0)}, out: &recorder{}}
	cfg := Config{Clock: h.clock, Output: h.out, Seed: 1}
	if mod != nil {
		mod(&cfg)
	}
	h.tb = NewTable(cfg)
	h.tb.isn = func(tuple) uint32 { return ourISS }
	h.tb.tsOffset = func(tuple) uint32 { return 0 }
	return h
}

// ts is our timestamp clock now (offset 0: ms since the Table's start).
func (h *harness) ts() uint32 { return uint32(h.clock.now.Sub(h.tb.epoch) / time.Millisecond) }

// send delivers s from the peer to us.
func (h *harness) send(s seg) {
	h.t.Helper()
	from := s.from
	if from == 0 {
		from = peerPort
	}
	ol := s.opts.Size()
	b := make([]byte, header.TCPMinimumSize+ol+len(s.data))
	s.opts.Encode(b[header.TCPMinimumSize:])
	wnd := s.wnd
	if wnd == 0 && !s.zeroWnd {
		wnd = 65535
	}
	th := header.TCP(b)
	th.Encode(&header.TCPFields{SrcPort: from, DstPort: ourPort, Seq: s.seq, Ack: s.ack, Flags: s.flags, Window: wnd,
		Options: b[header.TCPMinimumSize : header.TCPMinimumSize+ol]})
	copy(th.Payload(), s.data)
	th.SetChecksum(th.ComputeChecksum(peer, us))
	h.tb.InputECN(b, peer, us, s.ecn)
}

// next pops the next segment we sent, parsed.
func (h *harness) next() (seg, bool) {
	h.t.Helper()
	if len(h.out.segs) == 0 {
		return seg{}, false
	}
	r := h.out.segs[0]
	h.out.segs = h.out.segs[1:]
	if err := header.ValidateTCP(r.b, r.src, r.dst); err != nil {
		h.t.Fatalf("we sent an invalid segment: %v", err)
	}
	th := header.TCP(r.b)
	o, err := header.ParseTCPOptions(th.Options())
	if err != nil {
		h.t.Fatalf("we sent bad options % x: %v", th.Options(), err)
	}
	return seg{flags: th.Flags(), seq: th.Seq(), ack: th.Ack(), wnd: th.Window(), zeroWnd: th.Window() == 0,
		data: string(th.Payload()), opts: o, from: th.SrcPort(), ecn: r.ecn}, true
}

// expect checks that the next segment we sent is want.
func (h *harness) expect(want seg) seg {
	h.t.Helper()
	got, ok := h.next()
	if !ok {
		h.t.Fatalf("sent nothing, want %v", want)
	}
	if got.flags&^PSH != want.flags&^PSH || got.seq != want.seq && !want.anySeq || got.ack != want.ack || got.data != want.data || got.ecn != want.ecn {
		h.t.Fatalf("sent %v, want %v", got, want)
	}
	if want.wnd != 0 && got.wnd != want.wnd || want.zeroWnd && got.wnd != 0 {
		h.t.Fatalf("sent %v: window %d, want %d", got, got.wnd, want.wnd)
	}
	w, g := want.opts, got.opts
	switch {
	case w.HasMSS && (!g.HasMSS || g.MSS != w.MSS):
		h.t.Fatalf("sent %v: MSS %v %d, want %d", got, g.HasMSS, g.MSS, w.MSS)
	case w.HasWS && (!g.HasWS || g.WindowScale != w.WindowScale):
		h.t.Fatalf("sent %v: window scale %v %d, want %d", got, g.HasWS, g.WindowScale, w.WindowScale)
	case w.SACKPermitted && !g.SACKPermitted:
		h.t.Fatalf("sent %v without SACK-permitted", got)
	case w.HasTimestamps && (!g.HasTimestamps || g.TSEcr != w.TSEcr || w.TSVal != 0 && g.TSVal != w.TSVal):
		h.t.Fatalf("sent %v: timestamps %v %d/%d, want %d/%d", got, g.HasTimestamps, g.TSVal, g.TSEcr, w.TSVal, w.TSEcr)
	case w.NumSACK > 0 && (g.NumSACK != w.NumSACK || g.SACK != w.SACK):
		h.t.Fatalf("sent %v: SACK %v, want %v", got, g.SACK[:g.NumSACK], w.SACK[:w.NumSACK])
	}
	return got
}

// expectNone checks that we sent nothing more.
func (h *harness) expectNone() {
	h.t.Helper()
	if got, ok := h.next(); ok {
		h.t.Fatalf("sent %v, want nothing", got)
	}
}

// advance moves the clock by d and fires due timers.
func (h *harness) advance(d time.Duration) {
	h.clock.now = h.clock.now.Add(d)
	h.tb.Tick(h.clock.now)
}

// wantState checks e's state.
func wantState(t *testing.T, e *Endpoint, want State) {
	t.Helper()
	if e.State() != want {
		t.Fatalf("State() = %v, want %v", e.State(), want)
	}
}

// read reads everything readable from e.
func read(t *testing.T, e *Endpoint) string {
	t.Helper()
	var buf bytes.Buffer
	p := make([]byte, 4096)
	for {
		n, err := e.Read(p)
		buf.Write(p[:n])
		if err != nil || n == 0 {
			return buf.String()
		}
	}
}

// Options a Linux peer puts in its SYN.
func linuxSYN(tsval uint32) header.TCPOptions {
	return header.TCPOptions{MSS: 1460, HasMSS: true, SACKPermitted: true, WindowScale: 7, HasWS: true,
		HasTimestamps: true, TSVal: tsval}
}

func tsOpt(val, ecr uint32) header.TCPOptions {
	return header.TCPOptions{HasTimestamps: true, TSVal: val, TSEcr: ecr}
}

// accept runs a passive open with a peer whose ISN is 100 and whose SYN
// carries opts, and returns our established endpoint. The peer's next
// sequence number is 101, ours ourISS+1.
func (h *harness) accept(opts header.TCPOptions) *Endpoint {
	h.t.Helper()
	l, err := h.tb.Listen(netip.Addr{}, ourPort, 8)
	if err != nil {
		h.t.Fatal(err)
	}
	h.send(seg{flags: SYN, seq: 100, opts: opts})
	h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 101})
	ack := seg{flags: ACK, seq: 101, ack: ourISS + 1}
	if opts.HasTimestamps {
		ack.opts = tsOpt(opts.TSVal+1, h.ts())
	}
	h.send(ack)
	e, err := l.Accept()
	if err != nil {
		h.t.Fatalf("Accept() = %v", err)
	}
	wantState(h.t, e, Established)
	return e
}

// noOpts is a peer that sends MSS 1000 and nothing else: no scaling, no
// timestamps, so sequence numbers and windows are easy to follow.
var noOpts = header.TCPOptions{MSS: 1000, HasMSS: true}

// sackPeer is noOpts with SACK: MSS 1000, SACK-permitted, no scaling, no
// timestamps.
var sackPeer = header.TCPOptions{MSS: 1000, HasMSS: true, SACKPermitted: true}

// sackOpts is a SACK option with blocks, as [left, right) pairs.
func sackOpts(blocks ...[2]uint32) header.TCPOptions {
	var o header.TCPOptions
	for i, b := range blocks {
		o.SACK[i] = header.TCPSACKBlock{Left: b[0], Right: b[1]}
	}
	o.NumSACK = len(blocks)
	return o
}

// countingCC is NewReno that counts the loss events it is told of.
type countingCC struct {
	NewReno
	losses int
}

func (c *countingCC) OnLoss(cwnd, flight, mss int, now time.Time) int {
	c.losses++
	return c.NewReno.OnLoss(cwnd, flight, mss, now)
}

// drain forgets what we sent so far.
func (h *harness) drain() { h.out.segs = nil }
