package nic

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/drivers/netdev/netdevtest"
)

// stepClock is a clock that moves step at every reading, and lets the
// test act on the device then (a frame arriving) as the generator runs.
type stepClock struct {
	t      time.Time
	step   time.Duration
	onTick func(time.Time)
}

func (c *stepClock) now() time.Time {
	c.t = c.t.Add(c.step)
	if c.onTick != nil {
		c.onTick(c.t)
	}
	return c.t
}

// ledger is a fake device that also notes, per buffer, every hand-over
// and every return, and when each frame was queued by the clock.
type ledger struct {
	*netdevtest.Device
	clock          *stepClock
	txOut, rxOut   map[uint64]int // buffers on the device, by cookie: how many times
	txBack, rxBack int            // returns, through Poll or Reset
	firstQueued    time.Time      // by the clock's last reading
	lastQueued     time.Time
	flushes        int
}

func newLedger(cfg netdevtest.Config, clock *stepClock) *ledger {
	l := &ledger{Device: netdevtest.New(cfg), clock: clock, txOut: map[uint64]int{}, rxOut: map[uint64]int{}}
	l.Device.Reset()
	return l
}

func (l *ledger) Transmit(b netdev.Buffer, n int) bool {
	if !l.Device.Transmit(b, n) {
		return false
	}
	l.txOut[b.Cookie]++
	if l.firstQueued.IsZero() {
		l.firstQueued = l.clock.t
	}
	l.lastQueued = l.clock.t
	return true
}

func (l *ledger) PostRX(b netdev.Buffer) bool {
	if !l.Device.PostRX(b) {
		return false
	}
	l.rxOut[b.Cookie]++
	return true
}

func (l *ledger) FlushTX() {
	l.flushes++
	l.Device.FlushTX()
}

func (l *ledger) PollTX(fn func(uint64)) int {
	return l.Device.PollTX(func(c uint64) {
		l.txOut[c]--
		l.txBack++
		fn(c)
	})
}

func (l *ledger) PollRX(fn func(uint64, []byte, netdev.RxCheck)) int {
	return l.Device.PollRX(func(c uint64, frame []byte, bad netdev.RxCheck) {
		l.rxOut[c]--
		l.rxBack++
		fn(c, frame, bad)
	})
}

func (l *ledger) Reset() (netdev.Forgotten, error) {
	f, err := l.Device.Reset()
	for _, c := range f.TX {
		l.txOut[c]--
		l.txBack++
	}
	for _, c := range f.RX {
		l.rxOut[c]--
		l.rxBack++
	}
	return f, err
}

// held lists the cookies the device still holds, or holds more than once.
func held(out map[uint64]int) []uint64 {
	var cs []uint64
	for c, n := range out {
		if n != 0 {
			cs = append(cs, c)
		}
	}
	return cs
}

// buffers makes n DMA buffers of size bytes in ordinary memory (the fake
// device never reads Addr).
func buffers(n, size int) []netdev.Buffer {
	bs := make([]netdev.Buffer, n)
	for i := range bs {
		bs[i] = netdev.Buffer{Mem: make([]byte, size), Addr: uint64(i * size)}
	}
	return bs
}

// A run sends frames of the asked length to PktGenDst from the device's
// MAC, EtherType 0x88B5, the magic and sequence numbers 0, 1, 2... in
// order; every frame the device sent is counted, at the right rate.
func TestPktGenFrames(t *testing.T) {
	for _, size := range []int{60, 1514} {
		clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
		dev := newLedger(netdevtest.Config{MAC: testMAC, TxRing: 16, RxRing: 16}, clock)
		r, err := Generate(context.Background(), dev, buffers(24, 2048), buffers(16, 2048), PktGenConfig{Duration: 100 * time.Millisecond, Size: size}, clock.now)
		if err != nil {
			t.Fatalf("Generate(size %d) = %v", size, err)
		}
		if len(dev.Wire) == 0 || r.TxFrames != uint64(len(dev.Wire)) || r.TxBytes != uint64(size*len(dev.Wire)) {
			t.Fatalf("size %d: TxFrames %d, TxBytes %d; the wire has %d frames", size, r.TxFrames, r.TxBytes, len(dev.Wire))
		}
		for i, s := range dev.Wire {
			f := s.Frame
			want := make([]byte, size)
			copy(want, PktGenDst[:])
			copy(want[6:], testMAC[:])
			want[12], want[13] = 0x88, 0xb5
			copy(want[14:], "KNPG")
			binary.BigEndian.PutUint64(want[18:], uint64(i))
			if !bytes.Equal(f, want) {
				t.Fatalf("size %d: frame %d = % x, want % x", size, i, f, want)
			}
			if s.Offload != nil {
				t.Errorf("frame %d asked for offload %+v", i, *s.Offload)
			}
		}
		if want := float64(r.TxFrames) / r.Seconds; r.Size != size || r.TxFPS != want {
			t.Errorf("size %d: result %+v, want Size %d and TxFPS %v", size, r, size, want)
		}
	}
}

// The run stops queueing at the deadline, and the time it reports runs
// until the last frame came back; every buffer came back exactly once, and
// the device holds none afterwards.
func TestPktGenStopsOnTimeAndReclaimsAll(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	dev := newLedger(netdevtest.Config{MAC: testMAC, TxRing: 8, RxRing: 8}, clock)
	tx, rx := buffers(12, 2048), buffers(10, 2048)
	r, err := Generate(context.Background(), dev, tx, rx, PktGenConfig{Duration: 50 * time.Millisecond, Size: 60}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	// Frames go out from the first reading of the window to its last.
	if d := dev.lastQueued.Sub(dev.firstQueued); d >= 50*time.Millisecond || d < 49*time.Millisecond {
		t.Errorf("frames queued for %v, want the 50 ms window and not beyond", d)
	}
	if d := time.Duration(r.Seconds * float64(time.Second)); d < 50*time.Millisecond || d > 60*time.Millisecond {
		t.Errorf("Seconds = %v, want the 50 ms window and at most a few readings of drain", d)
	}
	if c := held(dev.txOut); len(c) > 0 {
		t.Errorf("transmit buffers not back exactly once: %v", c)
	}
	if c := held(dev.rxOut); len(c) > 0 {
		t.Errorf("receive buffers not back exactly once: %v", c)
	}
	if dev.TxFree() != 8 || dev.RxFree() != 8 {
		t.Errorf("after the run the device has TxFree %d, RxFree %d; want 8 and 8 (empty)", dev.TxFree(), dev.RxFree())
	}
	if dev.Resets != 2 { // newLedger's, and the one that takes the receive buffers back
		t.Errorf("%d resets, want the generator's one after the run", dev.Resets-1)
	}
	// One tail write per batch: a batch is what the ring had room for.
	if batches := int(r.TxFrames) / 8; dev.flushes > batches+1 {
		t.Errorf("%d flushes for %d frames on an 8-frame ring, want one per batch (about %d)", dev.flushes, r.TxFrames, batches)
	}
}

// Frames that arrive during the run are counted (good, bad, and none for a
// buffer the device hands back empty), and their buffers go back to the
// device at once, so the ring never runs dry.
func TestPktGenCountsReceived(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	dev := newLedger(netdevtest.Config{MAC: testMAC, TxRing: 8, RxRing: 4}, clock)
	var delivered, bad, refused int
	frame := make([]byte, 60)
	clock.onTick = func(time.Time) {
		// Three frames every millisecond, every tenth flagged bad: more
		// than the 4-buffer ring holds unless buffers go back at once.
		for range 3 {
			isBad := (delivered+refused)%10 == 9
			if dev.Deliver(frame, isBad) {
				delivered++
				if isBad {
					bad++
				}
			} else {
				refused++
			}
		}
	}
	r, err := Generate(context.Background(), dev, buffers(8, 2048), buffers(4, 2048), PktGenConfig{Duration: 200 * time.Millisecond, Size: 60}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	// Frames delivered after the last poll are in buffers Reset took back:
	// not received by the driver.
	if r.RxFrames+r.RxBad == 0 || int(r.RxFrames+r.RxBad) > delivered || delivered-int(r.RxFrames+r.RxBad) > 4 {
		t.Errorf("received %d good and %d bad; the device filled %d buffers (%d bad), want all but at most a ring's worth counted", r.RxFrames, r.RxBad, delivered, bad)
	}
	if r.RxBad == 0 || r.RxBad > uint64(bad) {
		t.Errorf("RxBad = %d, want some of the %d bad frames", r.RxBad, bad)
	}
	// The rate is over the time frames came in, less the first poll's
	// (at most a ring's worth).
	if lo, hi := float64(r.RxFrames-4)/r.RxSeconds, float64(r.RxFrames)/r.RxSeconds; r.RxBytes != 60*r.RxFrames || r.RxFPS < lo || r.RxFPS > hi {
		t.Errorf("result %+v: RxBytes or RxFPS do not follow RxFrames (want RxFPS in [%v, %v])", r, lo, hi)
	}
	if r.RxSeconds > r.Seconds || r.RxSeconds < 0.19 {
		t.Errorf("RxSeconds = %v of a %v-second run; frames came in all along", r.RxSeconds, r.Seconds)
	}
	// With buffers going back at once, most frames found one: a ring of 4
	// filled by 3 a millisecond, polled every reading.
	if refused > delivered {
		t.Errorf("%d frames found no buffer, %d did: buffers are not posted again at once", refused, delivered)
	}
	if c := held(dev.rxOut); len(c) > 0 {
		t.Errorf("receive buffers not back exactly once: %v", c)
	}
}

// A device that stops transmitting cannot hold the driver: the drain gives
// up after pktgenDrain, the reset takes the frames back, and the run
// reports what was sent (nothing).
func TestPktGenStuckDevice(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0), step: 10 * time.Millisecond}
	dev := newLedger(netdevtest.Config{MAC: testMAC, TxRing: 8, RxRing: 8}, clock)
	dev.StuckTX = true
	r, err := Generate(context.Background(), dev, buffers(8, 2048), buffers(8, 2048), PktGenConfig{Duration: time.Second, Size: 60}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	if r.TxFrames != 0 || len(dev.Wire) != 0 {
		t.Errorf("a stuck device sent %d frames (the wire has %d)", r.TxFrames, len(dev.Wire))
	}
	if d := time.Duration(r.Seconds * float64(time.Second)); d < time.Second+pktgenDrain || d > time.Second+pktgenDrain+50*time.Millisecond {
		t.Errorf("Seconds = %v, want the window and the drain's limit", d)
	}
	if c := held(dev.txOut); len(c) > 0 {
		t.Errorf("transmit buffers not back: %v", c)
	}
}

// A cancelled context ends the run early, with the device emptied.
func TestPktGenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	start := clock.t
	clock.onTick = func(now time.Time) {
		if now.Sub(start) >= 10*time.Millisecond {
			cancel()
		}
	}
	dev := newLedger(netdevtest.Config{MAC: testMAC}, clock)
	_, err := Generate(ctx, dev, buffers(16, 2048), buffers(16, 2048), PktGenConfig{Duration: time.Hour, Size: 60}, clock.now)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Generate with a cancelled context = %v, want context.Canceled", err)
	}
	if clock.t.Sub(start) > time.Second {
		t.Errorf("ran %v of an hour's window after the cancel", clock.t.Sub(start))
	}
	if c := append(held(dev.txOut), held(dev.rxOut)...); len(c) > 0 {
		t.Errorf("buffers not back: %v", c)
	}
}

// What the generator cannot do is refused before the device sees a
// buffer.
func TestPktGenRefuses(t *testing.T) {
	for _, tt := range []struct {
		name   string
		tx, rx []netdev.Buffer
		size   int
	}{
		{"a runt", buffers(4, 2048), buffers(4, 2048), 59},
		{"a jumbo", buffers(4, 2048), buffers(4, 2048), 1515},
		{"no transmit buffer", nil, buffers(4, 2048), 60},
		{"a short transmit buffer", buffers(4, 64), buffers(4, 2048), 100},
		{"a short receive buffer", buffers(4, 2048), buffers(4, 1024), 60},
	} {
		clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
		dev := newLedger(netdevtest.Config{MAC: testMAC}, clock)
		if _, err := Generate(context.Background(), dev, tt.tx, tt.rx, PktGenConfig{Duration: time.Second, Size: tt.size}, clock.now); err == nil {
			t.Errorf("%s: Generate = nil error, want a refusal", tt.name)
		}
		if len(dev.txOut)+len(dev.rxOut) != 0 {
			t.Errorf("%s: the device was handed buffers", tt.name)
		}
	}
}

// A device that hands back a buffer it was never given (or twice) breaks
// netdev.Device's contract: the run fails rather than serve on it.
func TestPktGenContractBroken(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	dev := &twice{ledger: newLedger(netdevtest.Config{MAC: testMAC}, clock)}
	_, err := Generate(context.Background(), dev, buffers(16, 2048), buffers(16, 2048), PktGenConfig{Duration: 10 * time.Millisecond, Size: 60}, clock.now)
	if !errors.Is(err, ErrPktGenBuffers) {
		t.Errorf("Generate on a device that returns a buffer twice = %v, want ErrPktGenBuffers", err)
	}
}

// twice returns every transmit buffer twice.
type twice struct{ *ledger }

func (d *twice) PollTX(fn func(uint64)) int {
	return d.ledger.PollTX(func(c uint64) { fn(c); fn(c) })
}

func TestMbps(t *testing.T) {
	// 1,488,095 minimum frames a second fill gigabit Ethernet with its
	// preamble and gap; without them, 64 bytes each make 761.9 Mbit/s.
	if got := Mbps(1488095, 60); got < 761.9 || got > 762 {
		t.Errorf("Mbps(1488095, 60) = %v, want 761.9", got)
	}
}

// The receive rate is taken over the time frames came in: a device that
// refuses frames for the first part of the window (QEMU's e1000, a second
// after its receiver is set up) or a sender that starts late does not
// dilute it.
func TestPktGenRxRateFromFirstFrame(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	start := clock.t
	dev := newLedger(netdevtest.Config{MAC: testMAC, TxRing: 8, RxRing: 8}, clock)
	frame := make([]byte, 60)
	clock.onTick = func(now time.Time) {
		if now.Sub(start) >= 600*time.Millisecond { // two frames a millisecond from 0.6 s on
			dev.Deliver(frame, false)
			dev.Deliver(frame, false)
		}
	}
	r, err := Generate(context.Background(), dev, buffers(8, 2048), buffers(8, 2048), PktGenConfig{Duration: time.Second, Size: 60}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	if r.RxSeconds < 0.38 || r.RxSeconds > 0.41 {
		t.Errorf("RxSeconds = %v, want the 0.4 s frames came in", r.RxSeconds)
	}
	if r.RxFPS < 1990 || r.RxFPS > 2010 {
		t.Errorf("RxFPS = %v, want the 2000 frames/s they came at", r.RxFPS)
	}
}

// A device whose link does not come up holds the generator for
// pktgenLinkWait at most.
func TestPktGenNoLink(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	start := clock.t
	dev := newLedger(netdevtest.Config{MAC: testMAC, LinkDown: true}, clock)
	if _, err := Generate(context.Background(), dev, buffers(8, 2048), buffers(8, 2048), PktGenConfig{Duration: 100 * time.Millisecond, Size: 60}, clock.now); err != nil {
		t.Fatal(err)
	}
	if d := clock.t.Sub(start); d < pktgenLinkWait || d > pktgenLinkWait+100*time.Millisecond+pktgenDrain+10*time.Millisecond {
		t.Errorf("ran %v without a link, want the link wait, then the window and at most the drain", d)
	}
}

// Receiving only, the generator sends one frame, which shows the window
// has begun, and counts what arrives all the window long.
func TestPktGenRxOnly(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0), step: time.Millisecond}
	dev := newLedger(netdevtest.Config{MAC: testMAC, TxRing: 8, RxRing: 8}, clock)
	frame := make([]byte, 60)
	delivered := 0
	clock.onTick = func(time.Time) {
		if dev.Deliver(frame, false) {
			delivered++
		}
	}
	r, err := Generate(context.Background(), dev, buffers(8, 2048), buffers(8, 2048), PktGenConfig{Duration: 100 * time.Millisecond, Size: 60, RxOnly: true}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	if len(dev.Wire) != 1 || r.TxFrames != 1 || binary.BigEndian.Uint64(dev.Wire[0].Frame[18:]) != 0 {
		t.Errorf("receiving only, the generator sent %d frames (TxFrames %d), want the one that marks the window", len(dev.Wire), r.TxFrames)
	}
	if r.RxFrames == 0 || int(r.RxFrames) > delivered || delivered-int(r.RxFrames) > 8 {
		t.Errorf("received %d of the %d frames delivered", r.RxFrames, delivered)
	}
	if d := time.Duration(r.Seconds * float64(time.Second)); d < 100*time.Millisecond || d > 102*time.Millisecond {
		t.Errorf("Seconds = %v, want the 100 ms window", d)
	}
}
