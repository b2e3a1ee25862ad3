package nic

// Frame generator (keepnet.pktgen): before it serves IP, the driver alone,
// with no stack above it, puts frames on the wire as fast as the device
// takes them and counts the frames that arrive meanwhile. What it moves is
// the emulated NIC's ceiling on this machine, the figure make bench reads
// every other ratio against (issue 14). Like Linux's pktgen and ixy's
// generator it prepares its transmit buffers once and then writes only a
// sequence number into each frame; it keeps the transmit ring full, tells
// the device about a batch with one tail write (FlushTX), takes completions
// back as they come, and posts every received buffer again at once.
//
// The frames go to PktGenDst, a locally administered address, from the
// device's own, with EtherType PktGenType: no host on the link takes them
// for its own or answers them. Their payload is PktGenMagic and a
// big-endian sequence number, zeros after it; the device appends the CRC.
//
// The generator speaks only netdev.Device, so every NIC family has it. Its
// buffers are DMA memory init holds (a region, like the rings: boot/pid1
// gives the first driver one when keepnet.pktgen is set), so a driver that
// dies mid-run leaves the device writing into memory nobody else was given;
// the next generation quiesces the device and serves at once.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/kernel/wiring"
)

// The generator's frames and memory.
const (
	// PktGenType is IEEE 802's local experimental EtherType 1: a frame of
	// it means nothing to any protocol a host runs.
	PktGenType = 0x88B5
	// PktGenMagic opens every generated frame's payload.
	PktGenMagic = "KNPG"
	// MinFrame is the shortest Ethernet frame without its CRC.
	MinFrame = 60
	// PktGenRegion is the suffix of the generator's DMA region's name: the
	// driver e1000.0's is e1000.0.pktgen.
	PktGenRegion = ".pktgen"
	// PktGenBuffers is the region's size in buffers: a 256-entry ring's
	// worth for each direction (one slot of each ring stays empty).
	PktGenBuffers = 511
	// pktgenDrain bounds the wait for the device to finish the frames still
	// on the ring when the time is up: a device that stopped does not stop
	// the driver from serving.
	pktgenDrain = time.Second
	// pktgenLinkWait bounds the wait for the link before the window: a
	// device without one sends nothing, and one that never gets it must
	// not keep the driver from serving (the result then shows nothing
	// sent).
	pktgenLinkWait = 3 * time.Second
)

// PktGenDst is where the generated frames go: locally administered
// (02:...), unicast, and nobody's.
var PktGenDst = [6]byte{0x02, 'k', 'n', 'p', 'g', 0x01}

// Offsets in a generated frame.
const (
	pktgenMagicOff = 14 // behind the Ethernet header
	pktgenSeqOff   = pktgenMagicOff + len(PktGenMagic)
)

// PktGenConfig is what the generator does.
type PktGenConfig struct {
	Duration time.Duration // how long it transmits; 0: no generator
	Size     int           // frame length without CRC, MinFrame to 1514
	// RxOnly: only count what arrives, after one frame that shows
	// whoever waits on the link that the window has begun (so a sender
	// can start then). The receive rate alone, with no transmission
	// sharing the device and the loop.
	RxOnly bool
}

// PktGen is what one run of the generator moved, published in the driver's
// Stats. Seconds runs from the first frame queued until the last frame
// queued came back (or the drain gave up on it), so that TxFrames is every
// frame the device sent, the count a host on the link sees.
//
// The receive rate is taken over the time frames arrived (RxSeconds), not
// the whole window: a sender reacts to the window only once it sees it,
// and a device may not receive at once (QEMU's e1000 refuses frames for a
// second after its receiver is configured, the first time a boot's driver
// does it: e1000/dev.go's Reset).
type PktGen struct {
	Size              int     // frame bytes, without CRC
	Seconds           float64 // how long it ran
	TxFrames, TxBytes uint64  // frames the device reported sent
	TxFPS             float64 // TxFrames per second
	RxFrames, RxBytes uint64  // good frames received, of any kind
	RxBad             uint64  // frames the device flagged bad (not in RxFrames)
	// RxSeconds runs from the first poll that found a received frame to
	// the last; RxFPS is the frames the polls after the first found, per
	// second of it.
	RxSeconds float64
	RxFPS     float64
}

// Mbps is frames per second fps of size-byte frames in megabits per
// second, counting the 4-byte CRC the device appends (as a link's frame
// counters do), not the preamble and gap between frames.
func Mbps(fps float64, size int) float64 { return fps * float64(size+4) * 8 / 1e6 }

// String is the result as the driver logs it.
func (g PktGen) String() string {
	return fmt.Sprintf("%.2f s of %d-byte frames: sent %d (%.0f frames/s, %.1f Mbit/s), received %d (%.0f frames/s over %.2f s), %d bad",
		g.Seconds, g.Size, g.TxFrames, g.TxFPS, Mbps(g.TxFPS, g.Size), g.RxFrames, g.RxFPS, g.RxSeconds, g.RxBad)
}

// ErrPktGenBuffers: a buffer the generator handed the device did not come
// back from it, or one came back twice: the device broke netdev.Device's
// contract, and the driver should not serve on it.
var ErrPktGenBuffers = errors.New("pktgen: the device did not give every buffer back exactly once")

// Generate runs the generator on dev, which must be Reset and hold no
// buffer: it transmits cfg.Size-byte frames from the buffers tx for
// cfg.Duration by the clock now, with rx's buffers posted to count what
// arrives, waits (at most pktgenDrain) for the frames still on the ring,
// and Resets dev, which then holds none of these buffers. The context ends
// it early, with ctx's error.
//
// Cookies are indexes: the i-th buffer of tx or of rx.
func Generate(ctx context.Context, dev netdev.Device, tx, rx []netdev.Buffer, cfg PktGenConfig, now func() time.Time) (PktGen, error) {
	if cfg.Size < MinFrame || cfg.Size > maxFrame {
		return PktGen{}, fmt.Errorf("pktgen: frames of %d bytes, want %d to %d", cfg.Size, MinFrame, maxFrame)
	}
	if len(tx) == 0 {
		return PktGen{}, errors.New("pktgen: no transmit buffer")
	}
	g := &generator{dev: dev, tx: tx, rx: rx, size: cfg.Size, res: PktGen{Size: cfg.Size}}
	if cfg.RxOnly {
		g.limit = 1
	}
	if err := g.prepare(); err != nil {
		return PktGen{}, err
	}
	g.onTX, g.onRX = g.sent, g.received

	for g.post() {
	}
	dev.FlushRX()
	for giveUp := now().Add(pktgenLinkWait); !dev.LinkUp() && now().Before(giveUp); {
	}
	start := now()
	deadline := start.Add(cfg.Duration)
	for g.at = start; ctx.Err() == nil && g.at.Before(deadline); g.at = now() {
		g.fill()
		g.reclaim()
	}
	// The frames on the ring count as long as the device sends them: the
	// host counts them too.
	for giveUp := g.at.Add(pktgenDrain); g.txOnRing > 0 && g.at.Before(giveUp); g.at = now() {
		g.reclaim()
	}
	end := g.at
	forgotten, err := dev.Reset()
	if err != nil {
		return PktGen{}, fmt.Errorf("pktgen: reset after the run: %w", err)
	}
	if err := g.takeBack(forgotten); err != nil {
		return PktGen{}, err
	}
	if err := ctx.Err(); err != nil {
		return PktGen{}, err
	}
	r := g.res
	r.Seconds = end.Sub(start).Seconds()
	if r.Seconds > 0 {
		r.TxFPS = float64(r.TxFrames) / r.Seconds
	}
	if r.RxFrames > 0 {
		r.RxSeconds = g.rxLast.Sub(g.rxFirst).Seconds()
	}
	if r.RxSeconds > 0 {
		r.RxFPS = float64(r.RxFrames-g.rxFirstPoll) / r.RxSeconds
	}
	return r, nil
}

// generator is one run's state. Every buffer is in exactly one place: on
// the device (onRing/rxOnRing true) or with the generator (freeTX, or
// waiting in repost for the next PostRX).
type generator struct {
	dev    netdev.Device
	tx, rx []netdev.Buffer
	size   int
	seq    uint64
	limit  uint64 // frames to send in all; 0: no limit

	freeTX     []uint64 // transmit buffers not on the ring, by cookie
	txOnRing   int
	onRing     []bool // by transmit cookie
	rxOnRing   []bool // by receive cookie
	rxPosted   int    // receive buffers handed to post so far (the first round)
	repost     []uint64
	onTX       func(cookie uint64)
	onRX       func(cookie uint64, frame []byte, check netdev.RxCheck)
	res        PktGen
	contractOK bool // false once a buffer came back that was not on the device

	// at is the clock's last reading. rxFirst and rxLast are the readings
	// at the first and the last poll that found frames received, and
	// rxFirstPoll how many the first found.
	at              time.Time
	rxFirst, rxLast time.Time
	rxFirstPoll     uint64
}

// prepare writes every transmit buffer's frame but its sequence number,
// and checks each buffer holds what it must.
func (g *generator) prepare() error {
	mac := g.dev.MAC()
	for i, b := range g.tx {
		if len(b.Mem) < g.size {
			return fmt.Errorf("pktgen: transmit buffer %d of %d bytes, frames of %d", i, len(b.Mem), g.size)
		}
		f := b.Mem[:g.size]
		clear(f)
		copy(f[0:6], PktGenDst[:])
		copy(f[6:12], mac[:])
		binary.BigEndian.PutUint16(f[12:14], PktGenType)
		copy(f[pktgenMagicOff:], PktGenMagic)
		g.tx[i].Cookie = uint64(i)
		g.freeTX = append(g.freeTX, uint64(i))
	}
	for i, b := range g.rx {
		if len(b.Mem) < g.dev.RxBufSize() {
			return fmt.Errorf("pktgen: receive buffer %d of %d bytes, the device writes %d", i, len(b.Mem), g.dev.RxBufSize())
		}
		g.rx[i].Cookie = uint64(i)
	}
	g.onRing = make([]bool, len(g.tx))
	g.rxOnRing = make([]bool, len(g.rx))
	g.contractOK = true
	return nil
}

// post hands the device the next receive buffer of the first round, and
// reports whether it took one.
func (g *generator) post() bool {
	if g.rxPosted == len(g.rx) || !g.dev.PostRX(g.rx[g.rxPosted]) {
		return false
	}
	g.rxOnRing[g.rxPosted] = true
	g.rxPosted++
	return true
}

// fill queues a frame in every free transmit buffer the ring takes, then
// tells the device once.
func (g *generator) fill() {
	queued := 0
	for len(g.freeTX) > 0 && (g.limit == 0 || g.seq < g.limit) {
		c := g.freeTX[len(g.freeTX)-1]
		b := g.tx[c]
		binary.BigEndian.PutUint64(b.Mem[pktgenSeqOff:], g.seq)
		if !g.dev.Transmit(b, g.size) {
			break
		}
		g.freeTX = g.freeTX[:len(g.freeTX)-1]
		g.onRing[c] = true
		g.txOnRing++
		g.seq++
		queued++
	}
	if queued > 0 {
		g.dev.FlushTX()
	}
}

// reclaim takes back the sent frames' buffers and the received ones, and
// posts the received ones again.
func (g *generator) reclaim() {
	g.dev.PollTX(g.onTX)
	before := g.res.RxFrames
	if g.dev.PollRX(g.onRX) == 0 {
		return
	}
	if got := g.res.RxFrames - before; got > 0 {
		if before == 0 {
			g.rxFirst, g.rxFirstPoll = g.at, got
		}
		g.rxLast = g.at
	}
	for _, c := range g.repost {
		if g.dev.PostRX(g.rx[c]) {
			g.rxOnRing[c] = true
		}
		// else: a ring that does not take back what it gave is full of
		// buffers it holds already; this one stays out for the run.
	}
	g.repost = g.repost[:0]
	g.dev.FlushRX()
}

// sent is PollTX's callback: a frame went out.
func (g *generator) sent(c uint64) {
	if c >= uint64(len(g.tx)) || !g.onRing[c] {
		g.contractOK = false
		return
	}
	g.onRing[c] = false
	g.txOnRing--
	g.freeTX = append(g.freeTX, c)
	g.res.TxFrames++
	g.res.TxBytes += uint64(g.size)
}

// received is PollRX's callback: a frame came in (or a buffer came back
// empty).
func (g *generator) received(c uint64, frame []byte, check netdev.RxCheck) {
	if c >= uint64(len(g.rx)) || !g.rxOnRing[c] {
		g.contractOK = false
		return
	}
	g.rxOnRing[c] = false
	g.repost = append(g.repost, c)
	switch {
	case frame == nil:
	case check&netdev.RxBad != 0:
		g.res.RxBad++
	default:
		g.res.RxFrames++
		g.res.RxBytes += uint64(len(frame))
	}
}

// takeBack accounts for the buffers a Reset returned: with them, every
// buffer must be off the device.
func (g *generator) takeBack(f netdev.Forgotten) error {
	for _, c := range f.TX {
		if c >= uint64(len(g.tx)) || !g.onRing[c] {
			g.contractOK = false
			continue
		}
		g.onRing[c] = false
		g.txOnRing--
	}
	for _, c := range f.RX {
		if c >= uint64(len(g.rx)) || !g.rxOnRing[c] {
			g.contractOK = false
			continue
		}
		g.rxOnRing[c] = false
	}
	left := g.txOnRing
	for _, on := range g.rxOnRing {
		if on {
			left++
		}
	}
	if !g.contractOK || left > 0 {
		return fmt.Errorf("%w (%d still on it)", ErrPktGenBuffers, left)
	}
	return nil
}

// runPktGen runs the generator of a driver process named name on dev, in
// the region init gave it, logs the result and returns it. The region's
// mapping is closed afterwards (init holds the memory: see the top of this
// file).
func runPktGen(ctx context.Context, name string, setup *wiring.Setup, dev netdev.Device, cfg PktGenConfig, be backend) (PktGen, error) {
	p, ok := setup.Regions[name+PktGenRegion]
	if !ok {
		return PktGen{}, fmt.Errorf("nic: pktgen: init sent no region %s%s", name, PktGenRegion)
	}
	defer p.Close()
	if err := requireHuge(name+PktGenRegion, p); err != nil {
		return PktGen{}, err
	}
	if err := be.Map(p); err != nil {
		return PktGen{}, fmt.Errorf("nic: pktgen: %w", err)
	}
	// Kept mapped: the device may still write into the region after the
	// generator stops (init keeps the region for that).
	var bufs []netdev.Buffer
	for {
		ref, ok := p.Alloc()
		if !ok {
			break
		}
		mem, addr, err := be.Translate(p, ref)
		if err != nil {
			return PktGen{}, fmt.Errorf("nic: pktgen: %w", err)
		}
		bufs = append(bufs, netdev.Buffer{Mem: mem, Addr: addr})
	}
	half := len(bufs) / 2
	what := "frames"
	if cfg.RxOnly {
		what = "one frame, then receiving only,"
	}
	log.Printf("pktgen: %d-byte %s to %x for %v, %d buffers each way", cfg.Size, what, PktGenDst, cfg.Duration, half)
	r, err := Generate(ctx, dev, bufs[:half], bufs[half:], cfg, time.Now)
	if err != nil {
		return PktGen{}, err
	}
	log.Printf("pktgen: %v", r)
	return r, nil
}
