package e1000_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/e1000"
	"keepnet/e1000/model"
)

// testMAC is the address in the model's EEPROM (QEMU's default prefix).
var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

const (
	memSize  = 8 << 20
	ringsAt  = 0x1000   // bus address of the rings
	buffsAt  = 0x100000 // bus address of the first packet buffer
	bufBytes = 2048
)

// part is a part the model plays and the Variant that drives it.
type part struct {
	name    string
	model   model.Part
	variant *e1000.Variant
}

// parts are the parts QEMU models with a different sequence: the tests
// that run on each run the same driver code on both.
var parts = []part{
	{"82540EM", model.Part82540EM, e1000.Variant8254x},
	{"82574L", model.Part82574L, e1000.Variant82574},
}

// countingRegs counts and logs register writes on their way to the model.
type countingRegs struct {
	netdev.Regs
	writes map[uint32]int
	log    []regWrite
}

type regWrite struct{ off, val uint32 }

func (c *countingRegs) Write32(off, val uint32) {
	c.writes[off]++
	c.log = append(c.log, regWrite{off, val})
	c.Regs.Write32(off, val)
}

// rig is a driver on a device model, with a wire, a buffer allocator and a
// fake clock.
type rig struct {
	t     *testing.T
	mem   []byte
	m     *model.Model
	regs  *countingRegs
	dev   *e1000.Dev
	cfg   e1000.Config
	wire  [][]byte
	slept time.Duration
	next  uint64 // next free buffer
}

func newRig(t *testing.T, mcfg model.Config, cfg e1000.Config) *rig {
	t.Helper()
	r := &rig{t: t, mem: make([]byte, memSize), next: buffsAt}
	mcfg.MAC = testMAC
	mcfg.Mem = r.mem
	mcfg.Wire = func(f []byte) { r.wire = append(r.wire, bytes.Clone(f)) }
	r.m = model.New(mcfg)
	cfg.Sleep = func(d time.Duration) { r.slept += d }
	r.cfg = cfg
	r.start()
	return r
}

// start creates a new Dev on the same device and memory (a driver restart)
// and resets it, moving the model's clock past QEMU's RCTL pause.
func (r *rig) start() netdev.Forgotten {
	r.t.Helper()
	r.regs = &countingRegs{Regs: r.m, writes: map[uint32]int{}}
	n := e1000.RingBytes(r.cfg)
	dev, err := e1000.New(r.regs, netdev.Region{Mem: r.mem[ringsAt : ringsAt+n], Addr: ringsAt}, r.cfg)
	if err != nil {
		r.t.Fatalf("New = %v", err)
	}
	r.dev = dev
	f, err := dev.Reset()
	if err != nil {
		r.t.Fatalf("Reset = %v", err)
	}
	r.m.Advance(time.Second)
	return f
}

// buf allocates a packet buffer; its cookie is its bus address.
func (r *rig) buf() netdev.Buffer {
	if r.next+bufBytes > memSize {
		r.next = buffsAt
	}
	a := r.next
	r.next += bufBytes
	return netdev.Buffer{Mem: r.mem[a : a+bufBytes : a+bufBytes], Addr: a, Cookie: a}
}

// fill posts buffers until the ring is full and flushes; it returns the cookies.
func (r *rig) fill() []uint64 {
	var cookies []uint64
	for r.dev.RxFree() > 0 {
		b := r.buf()
		if !r.dev.PostRX(b) {
			r.t.Fatalf("PostRX = false with RxFree() = %d", r.dev.RxFree())
		}
		cookies = append(cookies, b.Cookie)
	}
	r.dev.FlushRX()
	return cookies
}

// send queues frame in a fresh buffer; it returns the cookie.
func (r *rig) send(frame []byte) (uint64, bool) {
	if r.dev.TxFree() == 0 {
		if r.dev.Transmit(netdev.Buffer{Mem: make([]byte, 64)}, 60) {
			r.t.Fatal("Transmit = true with TxFree() = 0")
		}
		return 0, false
	}
	b := r.buf()
	copy(b.Mem, frame)
	if !r.dev.Transmit(b, len(frame)) {
		r.t.Fatalf("Transmit = false with TxFree() = %d", r.dev.TxFree())
	}
	return b.Cookie, true
}

type rxFrame struct {
	cookie uint64
	frame  []byte
	bad    bool
	check  netdev.RxCheck
}

func (r *rig) pollRX() []rxFrame {
	var got []rxFrame
	r.dev.PollRX(func(c uint64, f []byte, check netdev.RxCheck) {
		got = append(got, rxFrame{c, bytes.Clone(f), check&netdev.RxBad != 0, check})
	})
	return got
}

func (r *rig) pollTX() []uint64 {
	var got []uint64
	r.dev.PollTX(func(c uint64) { got = append(got, c) })
	return got
}

// frame builds an Ethernet frame of n bytes to dst whose payload encodes seq.
func frame(dst [6]byte, seq, n int) []byte {
	f := make([]byte, n)
	copy(f, dst[:])
	copy(f[6:], []byte{0x02, 0, 0, 0, 0, 1})
	f[12], f[13] = 0x88, 0xb5 // local experimental EtherType
	copy(f[14:], fmt.Sprintf("%08d", seq))
	return f
}
