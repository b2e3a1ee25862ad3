// Package netdevtest is a fake netdev.Device for tests of code above the
// device (drivers/nic): a NIC without registers, whose rings are queues and
// whose wire is a slice. It keeps netdev.Device's contract — every buffer
// comes back exactly once, through PollRX, PollTX or Reset's Forgotten;
// nothing reaches the device before a flush — and panics when the caller
// breaks it (a short receive buffer, an offload it did not announce), so a
// test fails where the caller misbehaves.
//
// It is not safe for concurrent use, like a real Device: the test drives it
// from the goroutine that drives the code under test.
package netdevtest

import (
	"bytes"
	"fmt"
	"slices"

	"keepnet/drivers/netdev"
)

// Config shapes a fake Device. Zero values select the defaults.
type Config struct {
	MAC      [6]byte
	RxRing   int // receive buffers the device holds at once; default 16
	TxRing   int // frames the transmit ring holds at once; default 16
	RxBufMin int // RxBufSize; default 2048
	Features netdev.Features
	LinkDown bool
}

// Sent is a frame the fake put on the wire, with the offload it was asked
// for (nil for a plain Transmit).
type Sent struct {
	Frame   []byte
	Offload *netdev.Offload
}

// Device is the fake. Its exported fields are what the device did; tests
// read them.
type Device struct {
	cfg Config

	// Wire is every frame transmitted, in order.
	Wire []Sent
	// Resets counts Reset calls.
	Resets int
	// StuckTX makes the device stop transmitting: flushed frames stay
	// on its ring, unsent, until a Reset. JamRX makes it drop every
	// frame it is offered, counting it missed, buffers or not. Both
	// stand for a wedged device, for the driver's watchdog.
	StuckTX, JamRX bool
	// Groups are the multicast groups SetMulticast gave last.
	Groups [][6]byte

	// Receive: posted (not flushed), owned by the device (flushed), and
	// filled (waiting for PollRX), in ring order.
	rxPosted, rxOwned []netdev.Buffer
	rxDone            []rxDone
	// Transmit: queued (not flushed), flushed but stuck (StuckTX), and
	// sent (waiting for PollTX).
	txQueued, txStuck []txFrame
	txDone            []netdev.Buffer
	// txSent and rxFilled are the device's heads: frames sent, buffers
	// filled.
	txSent, rxFilled uint32

	interrupts uint32
	stats      netdev.Stats
}

type rxDone struct {
	buf   netdev.Buffer
	frame []byte
	check netdev.RxCheck
}

type txFrame struct {
	buf     netdev.Buffer // Mem cut to the frame's length
	offload *netdev.Offload
}

var _ netdev.Device = (*Device)(nil)

// New makes a fake device; call Reset before anything else, as with a real
// one.
func New(cfg Config) *Device {
	if cfg.RxRing == 0 {
		cfg.RxRing = 16
	}
	if cfg.TxRing == 0 {
		cfg.TxRing = 16
	}
	if cfg.RxBufMin == 0 {
		cfg.RxBufMin = 2048
	}
	return &Device{cfg: cfg}
}

// Interrupt bits of the fake.
const (
	IntrRX uint32 = 1 << iota // a frame was received
	IntrTX                    // a frame was sent
)

// Reset takes every buffer back: receive buffers posted or filled but not
// yet polled, frames queued or sent but not yet polled (in submission
// order).
func (d *Device) Reset() (netdev.Forgotten, error) {
	var f netdev.Forgotten
	for _, b := range d.rxDone {
		f.RX = append(f.RX, b.buf.Cookie)
	}
	for _, b := range slices.Concat(d.rxOwned, d.rxPosted) {
		f.RX = append(f.RX, b.Cookie)
	}
	for _, b := range d.txDone {
		f.TX = append(f.TX, b.Cookie)
	}
	for _, q := range slices.Concat(d.txStuck, d.txQueued) {
		f.TX = append(f.TX, q.buf.Cookie)
	}
	d.rxPosted, d.rxOwned, d.rxDone = nil, nil, nil
	d.txQueued, d.txStuck, d.txDone = nil, nil, nil
	d.StuckTX, d.JamRX = false, false // a reset cures the wedge
	d.interrupts = 0
	d.Resets++
	return f, nil
}

// RxBufSize is Config.RxBufMin.
func (d *Device) RxBufSize() int { return d.cfg.RxBufMin }

func (d *Device) rxHeld() int { return len(d.rxPosted) + len(d.rxOwned) + len(d.rxDone) }

// PostRX queues b for the device; it sees it at FlushRX.
func (d *Device) PostRX(b netdev.Buffer) bool {
	if len(b.Mem) < d.cfg.RxBufMin {
		panic(fmt.Sprintf("netdevtest: PostRX: buffer of %d bytes, want at least %d", len(b.Mem), d.cfg.RxBufMin))
	}
	if d.RxFree() == 0 {
		return false
	}
	d.rxPosted = append(d.rxPosted, b)
	return true
}

// RxFree is how many more buffers PostRX takes: the ring holds posted,
// owned and filled buffers alike until PollRX hands them back.
func (d *Device) RxFree() int { return d.cfg.RxRing - d.rxHeld() }

// FlushRX gives the posted buffers to the device.
func (d *Device) FlushRX() {
	d.rxOwned = append(d.rxOwned, d.rxPosted...)
	d.rxPosted = nil
}

// Deliver is a frame arriving from the wire: it fills the oldest buffer the
// device owns and reports whether there was one (else the frame is counted
// in RxNoBuffer and dropped). bad marks it as the device would a frame with
// a CRC error.
func (d *Device) Deliver(frame []byte, bad bool) bool {
	var check netdev.RxCheck
	if bad {
		check = netdev.RxBad
	}
	return d.DeliverChecked(frame, check)
}

// DeliverChecked is Deliver of a frame the device checked as check says
// (a checksum it verified, or an error).
func (d *Device) DeliverChecked(frame []byte, check netdev.RxCheck) bool {
	if d.cfg.LinkDown {
		return false
	}
	if d.JamRX {
		d.stats.RxMissed++
		return false
	}
	if len(d.rxOwned) == 0 {
		d.stats.RxNoBuffer++
		return false
	}
	b := d.rxOwned[0]
	d.rxOwned = d.rxOwned[1:]
	d.rxFilled++
	n := copy(b.Mem, frame)
	d.rxDone = append(d.rxDone, rxDone{buf: b, frame: b.Mem[:n], check: check})
	d.interrupts |= IntrRX
	return true
}

// PollRX hands back the filled buffers in ring order.
func (d *Device) PollRX(fn func(cookie uint64, frame []byte, check netdev.RxCheck)) int {
	done := d.rxDone
	d.rxDone = nil
	for _, r := range done {
		if r.check&netdev.RxBad != 0 {
			d.stats.RxErrors++
		} else {
			d.stats.RxFrames++
			d.stats.RxBytes += uint64(len(r.frame))
		}
		fn(r.buf.Cookie, r.frame, r.check)
	}
	return len(done)
}

func (d *Device) txHeld() int { return len(d.txQueued) + len(d.txStuck) + len(d.txDone) }

// Transmit queues the first n bytes of b; they go on the wire at FlushTX.
func (d *Device) Transmit(b netdev.Buffer, n int) bool {
	return d.queue(b, n, nil)
}

// TransmitOffload is Transmit with an offload, which must be one the
// device announced in Config.Features.
func (d *Device) TransmitOffload(b netdev.Buffer, n int, o netdev.Offload) bool {
	if need := o.Needs(); d.cfg.Features&need != need {
		panic(fmt.Sprintf("netdevtest: TransmitOffload(%+v) on a device with features %b", o, d.cfg.Features))
	}
	return d.queue(b, n, &o)
}

func (d *Device) queue(b netdev.Buffer, n int, o *netdev.Offload) bool {
	if n <= 0 || n > len(b.Mem) {
		panic(fmt.Sprintf("netdevtest: transmit of %d bytes of a %d-byte buffer", n, len(b.Mem)))
	}
	if d.TxFree() == 0 {
		return false
	}
	b.Mem = b.Mem[:n]
	d.txQueued = append(d.txQueued, txFrame{buf: b, offload: o})
	return true
}

// TxFree is how many frames Transmit takes now.
func (d *Device) TxFree() int { return d.cfg.TxRing - d.txHeld() }

// FlushTX sends the queued frames: they go on the wire (a copy of their
// bytes now) and their buffers wait for PollTX.
func (d *Device) FlushTX() {
	if d.StuckTX {
		d.txStuck = append(d.txStuck, d.txQueued...)
		d.txQueued = nil
		return
	}
	for _, q := range d.txQueued {
		d.Wire = append(d.Wire, Sent{Frame: bytes.Clone(q.buf.Mem), Offload: q.offload})
		d.txDone = append(d.txDone, q.buf)
		d.stats.TxFrames++
		d.txSent++
		d.stats.TxBytes += uint64(len(q.buf.Mem))
		d.interrupts |= IntrTX
	}
	d.txQueued = nil
}

// PollTX hands back the buffers of sent frames, in submission order.
func (d *Device) PollTX(fn func(cookie uint64)) int {
	done := d.txDone
	d.txDone = nil
	for _, b := range done {
		fn(b.Cookie)
	}
	return len(done)
}

// MAC is Config.MAC.
func (d *Device) MAC() [6]byte { return d.cfg.MAC }

// SetMulticast records the groups (netdev.Multicaster).
func (d *Device) SetMulticast(groups [][6]byte) { d.Groups = append([][6]byte(nil), groups...) }

// LinkUp is the opposite of Config.LinkDown.
func (d *Device) LinkUp() bool { return !d.cfg.LinkDown }

// Features is Config.Features.
func (d *Device) Features() netdev.Features { return d.cfg.Features }

// Interrupts returns and clears the causes since the last call (IntrRX,
// IntrTX).
func (d *Device) Interrupts() uint32 {
	v := d.interrupts
	d.interrupts = 0
	return v
}

// Stats returns the fake's counts.
func (d *Device) Stats() netdev.Stats { return d.stats }

// Progress is the fake's heads (frames sent, buffers filled) and what it
// holds.
func (d *Device) Progress() netdev.Progress {
	return netdev.Progress{
		TxPending: len(d.txStuck),
		TxHead:    d.txSent,
		RxPosted:  len(d.rxOwned),
		RxHead:    d.rxFilled,
		RxMissed:  d.stats.RxMissed + d.stats.RxNoBuffer,
		LinkUp:    !d.cfg.LinkDown,
	}
}
