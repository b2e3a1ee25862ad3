package e1000_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/e1000"
	"keepnet/e1000/model"
)

var bcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func TestResetProgramsDevice(t *testing.T) {
	for _, tc := range []struct {
		name string
		mcfg model.Config
	}{
		{"qemu", model.Config{}},
		{"hardware", model.Config{Hardware: true}},
		{"qemu without EERD", model.Config{NoEERD: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.mcfg, e1000.Config{RxRing: 64, TxRing: 32})
			// The quiesce and reset waits (10 ms and 5 ms) go through
			// Config.Sleep: the test never sleeps.
			if r.slept < 15*time.Millisecond {
				t.Errorf("Reset slept %v through Config.Sleep, want the reset waits (at least 15ms)", r.slept)
			}
			if got := r.dev.MAC(); got != testMAC {
				t.Errorf("MAC() = %x, want %x", got, testMAC)
			}
			txRing := uint32(ringsAt + 64*e1000.DescSize)
			for _, w := range []struct {
				name string
				off  uint32
				want uint32
			}{
				{"CTRL", e1000.CTRL, e1000.CTRL_SLU | e1000.CTRL_ASDE | e1000.CTRL_FD},
				{"STATUS.LU", e1000.STATUS, e1000.STATUS_LU | e1000.STATUS_FD},
				{"RAL0", e1000.RAL0, 0x12005452},
				{"RAH0", e1000.RAH0, 0x5634 | e1000.RAH_AV},
				{"RAH1", e1000.RAH(1), 0},
				{"MTA[0]", e1000.MTA, 0},
				{"MTA[127]", e1000.MTA + 4*127, 0},
				{"RDBAL", e1000.RDBAL, ringsAt},
				{"RDBAH", e1000.RDBAH, 0},
				{"RDLEN", e1000.RDLEN, 64 * 16},
				{"RDH", e1000.RDH, 0},
				{"RDT", e1000.RDT, 0},
				{"RDTR", e1000.RDTR, 0},
				{"RADV", e1000.RADV, 0},
				{"RCTL", e1000.RCTL, e1000.RCTL_EN | e1000.RCTL_BAM | e1000.RCTL_SECRC | e1000.RCTL_BSIZE_2048},
				{"TDBAL", e1000.TDBAL, txRing},
				{"TDBAH", e1000.TDBAH, 0},
				{"TDLEN", e1000.TDLEN, 32 * 16},
				{"TDH", e1000.TDH, 0},
				{"TDT", e1000.TDT, 0},
				{"TIPG", e1000.TIPG, 10 | 8<<10 | 6<<20},
				{"TCTL", e1000.TCTL, e1000.TCTL_EN | e1000.TCTL_PSP | 0x0F<<4 | 0x40<<12},
				{"ITR", e1000.ITR, e1000.DefaultITR},
				{"IMS", e1000.IMS, e1000.IntrHandled},
			} {
				if got := r.m.Peek(w.off); got != w.want {
					t.Errorf("register %s = %#x, want %#x", w.name, got, w.want)
				}
			}
			// Order: interrupts masked before the reset, rings before RCTL/TCTL.
			first := func(off uint32) int {
				return slices.IndexFunc(r.regs.log, func(w regWrite) bool { return w.off == off })
			}
			last := func(off uint32) int {
				i := len(r.regs.log) - 1
				for ; i >= 0 && r.regs.log[i].off != off; i-- {
				}
				return i
			}
			rst := slices.IndexFunc(r.regs.log, func(w regWrite) bool { return w.off == e1000.CTRL && w.val&e1000.CTRL_RST != 0 })
			for _, o := range []struct {
				name         string
				before, then int
			}{
				{"IMC before CTRL.RST", first(e1000.IMC), rst},
				{"RDLEN before RCTL", last(e1000.RDLEN), last(e1000.RCTL)},
				{"RDBAL before RCTL", last(e1000.RDBAL), last(e1000.RCTL)},
				{"TDLEN before TCTL", last(e1000.TDLEN), last(e1000.TCTL)},
				{"TDT before TCTL", last(e1000.TDT), last(e1000.TCTL)},
				{"RAH0 before RCTL", last(e1000.RAH0), last(e1000.RCTL)},
			} {
				if o.before < 0 || o.then < 0 || o.before > o.then {
					t.Errorf("%s: write positions %d, %d", o.name, o.before, o.then)
				}
			}
		})
	}
}

// TestMACFromEEPROM shows the EEPROM, not a stale RAL0, is the source.
func TestMACFromEEPROM(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 8, TxRing: 8})
	r.m.Write32(e1000.RAL0, 0x44332211) // a previous driver's idea (QEMU keeps it)
	r.m.Write32(e1000.RAH0, 0x6655|e1000.RAH_AV)
	r.start()
	if got := r.dev.MAC(); got != testMAC {
		t.Errorf("MAC() after restart = %x, want the EEPROM's %x", got, testMAC)
	}
}

func TestNoMAC(t *testing.T) {
	mem := make([]byte, 1<<16)
	m := model.New(model.Config{Mem: mem, NoEERD: true}) // all-zero address
	dev, err := e1000.New(m, netdev.Region{Mem: mem[:4096], Addr: 0}, e1000.Config{RxRing: 8, TxRing: 8, Sleep: func(time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Reset(); !errors.Is(err, e1000.ErrNoMAC) {
		t.Errorf("Reset() with no address = %v, want %v", err, e1000.ErrNoMAC)
	}
}

func TestNewRejects(t *testing.T) {
	mem := make([]byte, 1<<16)
	for _, tc := range []struct {
		name  string
		rings netdev.Region
		cfg   e1000.Config
	}{
		{"ring not multiple of 8", netdev.Region{Mem: mem, Addr: 0}, e1000.Config{RxRing: 12}},
		{"ring too small", netdev.Region{Mem: mem, Addr: 0}, e1000.Config{TxRing: 4}},
		{"buffer size", netdev.Region{Mem: mem, Addr: 0}, e1000.Config{RxBufSize: 1500}},
		{"region too small", netdev.Region{Mem: mem[:100], Addr: 0}, e1000.Config{}},
		{"unaligned bus address", netdev.Region{Mem: mem, Addr: 8}, e1000.Config{}},
		{"unaligned host memory", netdev.Region{Mem: mem[8:], Addr: 0}, e1000.Config{}},
		{"ITR too large", netdev.Region{Mem: mem, Addr: 0}, e1000.Config{ITR: 1 << 16}},
	} {
		if _, err := e1000.New(nil, tc.rings, tc.cfg); !errors.Is(err, e1000.ErrConfig) {
			t.Errorf("New(%s) = %v, want %v", tc.name, err, e1000.ErrConfig)
		}
	}
}

func TestTransmitInOrder(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 16, TxRing: 16})
	var want [][]byte
	var cookies []uint64
	for i, n := range []int{60, 64, 100, 1514, 42, 200} {
		f := frame(bcast, i, n)
		c, ok := r.send(f)
		if !ok {
			t.Fatalf("Transmit(frame %d) = false on an empty ring", i)
		}
		if n < 60 {
			f = append(f, make([]byte, 60-n)...) // TCTL.PSP pads
		}
		want = append(want, f)
		cookies = append(cookies, c)
	}
	if len(r.wire) != 0 {
		t.Fatalf("%d frames on the wire before FlushTX, want 0", len(r.wire))
	}
	r.dev.FlushTX()
	if len(r.wire) != len(want) {
		t.Fatalf("wire got %d frames, want %d", len(r.wire), len(want))
	}
	for i := range want {
		if !bytes.Equal(r.wire[i], want[i]) {
			t.Errorf("wire frame %d = %x..., want %x...", i, r.wire[i][:22], want[i][:22])
		}
	}
	if got := r.pollTX(); !slices.Equal(got, cookies) {
		t.Errorf("PollTX cookies = %v, want %v", got, cookies)
	}
	if got := r.dev.Interrupts(); got&e1000.ICR_TXDW == 0 {
		t.Errorf("Interrupts() = %#x, want TXDW", got)
	}
	st := r.dev.Stats()
	if st.TxFrames != 6 || st.TxBytes != 60+64+100+1514+42+200 {
		t.Errorf("Stats() TxFrames, TxBytes = %d, %d, want 6, %d", st.TxFrames, st.TxBytes, 60+64+100+1514+42+200)
	}
}

func TestReceive(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 16, TxRing: 16})
	posted := r.fill()
	for _, tc := range []struct {
		dst     [6]byte
		n       int
		accept  bool
		wantLen int
	}{
		{testMAC, 100, true, 100},
		{bcast, 1514, true, 1514},
		{testMAC, 30, true, 60},                          // padded to the Ethernet minimum
		{[6]byte{0x02, 9, 9, 9, 9, 9}, 100, false, 0},    // another station
		{[6]byte{0x01, 0, 0x5e, 0, 0, 1}, 100, false, 0}, // multicast, MTA empty
		{testMAC, 1518, true, 1518},
	} {
		f := frame(tc.dst, tc.n, tc.n)
		if got := r.m.Deliver(f); got != tc.accept {
			t.Errorf("Deliver(%d bytes to %x) = %v, want %v", tc.n, tc.dst, got, tc.accept)
		}
	}
	got := r.pollRX()
	wantLens := []int{100, 1514, 60, 1518}
	if len(got) != len(wantLens) {
		t.Fatalf("PollRX returned %d frames, want %d", len(got), len(wantLens))
	}
	for i, g := range got {
		if g.cookie != posted[i] {
			t.Errorf("frame %d cookie = %#x, want %#x", i, g.cookie, posted[i])
		}
		if len(g.frame) != wantLens[i] || g.bad {
			t.Errorf("frame %d: length, bad = %d, %v, want %d, false", i, len(g.frame), g.bad, wantLens[i])
		}
	}
	if !bytes.Equal(got[0].frame, frame(testMAC, 100, 100)) {
		t.Errorf("frame 0 content = %x, want what was delivered", got[0].frame[:22])
	}
	if ic := r.dev.Interrupts(); ic&e1000.ICR_RXT0 == 0 {
		t.Errorf("Interrupts() = %#x, want RXT0", ic)
	}
	if ic := r.dev.Interrupts(); ic != 0 {
		t.Errorf("second Interrupts() = %#x, want 0 (ICR clears on read)", ic)
	}
	if st := r.dev.Stats(); st.RxFrames != 4 || st.RxBytes != 100+1514+60+1518 {
		t.Errorf("Stats() RxFrames, RxBytes = %d, %d, want 4, %d", st.RxFrames, st.RxBytes, 100+1514+60+1518)
	}
}

// TestRingWrap pushes thousands of frames each way through 16-entry rings.
func TestRingWrap(t *testing.T) {
	for _, hw := range []bool{false, true} {
		r := newRig(t, model.Config{Hardware: hw}, e1000.Config{RxRing: 16, TxRing: 16})
		const total = 5000
		r.fill()
		var rxSeq, txDone int
		for i := range total {
			if !r.m.Deliver(frame(testMAC, i, 64+i%1400)) {
				t.Fatalf("hardware=%v: Deliver(frame %d) = false", hw, i)
			}
			if _, ok := r.send(frame(bcast, i, 60+i%1400)); !ok {
				t.Fatalf("hardware=%v: Transmit(frame %d) = false", hw, i)
			}
			if i%7 == 6 || i == total-1 {
				r.dev.FlushTX()
				txDone += len(r.pollTX())
				for _, g := range r.pollRX() {
					if want := frame(testMAC, rxSeq, 64+rxSeq%1400); !bytes.Equal(g.frame, want) {
						t.Fatalf("hardware=%v: RX frame %d = %q..., want %q...", hw, rxSeq, g.frame[14:22], want[14:22])
					}
					rxSeq++
				}
				r.fill()
			}
		}
		if rxSeq != total || txDone != total || len(r.wire) != total {
			t.Errorf("hardware=%v: received, completed, on wire = %d, %d, %d, want %d each", hw, rxSeq, txDone, len(r.wire), total)
		}
		for i, f := range r.wire {
			if want := frame(bcast, i, 60+i%1400); !bytes.Equal(f, want) {
				t.Fatalf("hardware=%v: wire frame %d = %q, want %q", hw, i, f[14:22], want[14:22])
			}
		}
	}
}

func TestRxRingFull(t *testing.T) {
	for _, hw := range []bool{false, true} {
		r := newRig(t, model.Config{Hardware: hw}, e1000.Config{RxRing: 16, TxRing: 16, StickyCounters: !hw})
		if n := len(r.fill()); n != 15 {
			t.Fatalf("hardware=%v: a 16-entry ring took %d buffers, want 15", hw, n)
		}
		accepted := 0
		for i := range 20 {
			if r.m.Deliver(frame(testMAC, i, 100)) {
				accepted++
			}
		}
		if accepted != 15 {
			t.Errorf("hardware=%v: device accepted %d of 20 frames, want 15", hw, accepted)
		}
		if ic := r.dev.Interrupts(); ic&e1000.ICR_RXO == 0 {
			t.Errorf("hardware=%v: Interrupts() = %#x, want RXO", hw, ic)
		}
		if st := r.dev.Stats(); st.RxMissed != 5 || st.RxNoBuffer != 5 {
			t.Errorf("hardware=%v: Stats() RxMissed, RxNoBuffer = %d, %d, want 5, 5", hw, st.RxMissed, st.RxNoBuffer)
		}
		if got := len(r.pollRX()); got != 15 {
			t.Errorf("hardware=%v: PollRX = %d frames, want 15", hw, got)
		}
		r.fill()
		if !r.m.Deliver(frame(testMAC, 99, 100)) {
			t.Errorf("hardware=%v: Deliver after refill = false, want true", hw)
		}
		r.m.Deliver(frame(testMAC, 100, 100)) // one more miss-free frame
		for range 14 {
			r.m.Deliver(frame(testMAC, 101, 100))
		}
		if st := r.dev.Stats(); st.RxMissed != 6 {
			t.Errorf("hardware=%v: Stats().RxMissed after one more miss = %d, want 6", hw, st.RxMissed)
		}
	}
}

func TestTxRingFull(t *testing.T) {
	r := newRig(t, model.Config{HoldTX: true}, e1000.Config{RxRing: 16, TxRing: 16})
	n := 0
	for {
		if _, ok := r.send(frame(bcast, n, 60)); !ok {
			break
		}
		n++
	}
	if n != 15 {
		t.Fatalf("a 16-entry TX ring took %d frames, want 15", n)
	}
	r.dev.FlushTX()
	if got := r.pollTX(); len(got) != 0 {
		t.Errorf("PollTX before the device sent anything = %v, want none", got)
	}
	if r.m.StepTX(3) != 3 {
		t.Fatal("StepTX(3) did not send 3")
	}
	if got := len(r.pollTX()); got != 3 {
		t.Errorf("PollTX after 3 sent = %d, want 3", got)
	}
	for i := range 3 {
		if _, ok := r.send(frame(bcast, 100+i, 60)); !ok {
			t.Errorf("Transmit after PollTX freed 3 slots: frame %d refused", i)
		}
	}
	if _, ok := r.send(frame(bcast, 200, 60)); ok {
		t.Error("Transmit on a full ring = true, want false")
	}
}

// TestBatching counts tail writes: one per batch, none for an empty batch.
func TestBatching(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 64, TxRing: 64})
	rdt, tdt := r.regs.writes[e1000.RDT], r.regs.writes[e1000.TDT]
	for range 32 {
		r.dev.PostRX(r.buf())
	}
	r.dev.FlushRX()
	r.dev.FlushRX()
	for i := range 20 {
		r.send(frame(bcast, i, 60))
	}
	r.dev.FlushTX()
	r.dev.FlushTX()
	if got := r.regs.writes[e1000.RDT] - rdt; got != 1 {
		t.Errorf("RDT writes for a batch of 32 buffers = %d, want 1", got)
	}
	if got := r.regs.writes[e1000.TDT] - tdt; got != 1 {
		t.Errorf("TDT writes for a batch of 20 frames = %d, want 1", got)
	}
	if len(r.wire) != 20 {
		t.Errorf("wire got %d frames, want 20", len(r.wire))
	}
}

// TestRxTailWritesGathered: while the device holds half its ring or more,
// buffers given back one at a time reach it 16 to an RDT write, and it never
// runs short; below half, each flush writes at once.
func TestRxTailWritesGathered(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{})
	byReset := r.regs.writes[e1000.RDT]
	r.fill()
	rdt := r.regs.writes[e1000.RDT]
	const frames = 1000
	for i := range frames {
		if !r.m.Deliver(frame(testMAC, i, 100)) {
			t.Fatalf("Deliver(frame %d) = false: the device ran out of buffers", i)
		}
		if got := len(r.pollRX()); got != 1 {
			t.Fatalf("PollRX after frame %d = %d frames, want 1", i, got)
		}
		r.dev.PostRX(r.buf())
		r.dev.FlushRX()
	}
	if got, want := r.regs.writes[e1000.RDT]-rdt, frames/16; got != want {
		t.Errorf("RDT writes for %d buffers given back one at a time = %d, want %d", frames, got, want)
	}

	// A burst takes the device below half its ring: the next buffer goes at once.
	for i := range e1000.DefaultRing / 2 {
		if !r.m.Deliver(frame(testMAC, i, 100)) {
			t.Fatalf("burst: Deliver(frame %d) = false", i)
		}
	}
	r.pollRX()
	before := r.regs.writes[e1000.RDT]
	r.dev.PostRX(r.buf())
	r.dev.FlushRX()
	if got := r.regs.writes[e1000.RDT] - before; got != 1 {
		t.Errorf("RDT writes for one buffer with the device below half its ring = %d, want 1", got)
	}
	if got, want := r.dev.Stats().RxTailWrites, uint64(r.regs.writes[e1000.RDT]-byReset); got != want {
		t.Errorf("Stats().RxTailWrites = %d, want the %d RDT writes since the reset", got, want)
	}
}

// TestRestartWithPacketsInFlight crashes a driver with RX buffers posted, TX
// frames queued, some sent and unacknowledged, and starts a new Dev on the
// same device: the model keeps the stale ring registers (QEMU) or caches the
// old descriptors (hardware). The caller's resubmission set is what the old
// driver had not acknowledged; the new driver works, no DMA reaches the old
// buffers, and a QEMU restart does not pay the RCTL receive pause.
func TestRestartWithPacketsInFlight(t *testing.T) {
	for _, p := range parts {
		for _, hw := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/hardware=%v", p.name, hw), func(t *testing.T) {
				restartWithPacketsInFlight(t, p, hw)
			})
		}
	}
}

func restartWithPacketsInFlight(t *testing.T, p part, hw bool) {
	r := newRig(t, model.Config{Hardware: hw, HoldTX: true, Part: p.model}, e1000.Config{RxRing: 16, TxRing: 16, Variant: p.variant})

	// The old driver: RX buffers posted, 3 frames received, not polled.
	oldRX := r.fill()
	for i := range 3 {
		r.m.Deliver(frame(testMAC, i, 100))
	}
	// Six frames queued; the caller (ip's view) tracks them as outstanding.
	outstanding := map[uint64][]byte{}
	var order []uint64
	for i := range 6 {
		f := frame(bcast, i, 80)
		c, _ := r.send(f)
		outstanding[c] = f
		order = append(order, c)
	}
	r.dev.FlushTX()
	r.m.StepTX(2)
	for _, c := range r.pollTX() {
		delete(outstanding, c) // acknowledged to ip
	}
	r.m.StepTX(1) // frame 2 leaves, but the driver dies before it polls

	// Crash. Poison the old RX buffers to catch any later DMA into them.
	for _, c := range oldRX {
		clear(r.mem[c : c+bufBytes])
		r.mem[c] = 0xEE
	}
	rctlWrites := r.m.Writes(e1000.RCTL)
	if !hw && (r.m.Peek(e1000.TDH) != 3 || r.m.Peek(e1000.TDT) != 6 || r.m.Peek(e1000.RDH) != 3) {
		t.Fatalf("model did not keep stale rings: TDH %d TDT %d RDH %d", r.m.Peek(e1000.TDH), r.m.Peek(e1000.TDT), r.m.Peek(e1000.RDH))
	}
	r.regs = &countingRegs{Regs: r.m, writes: map[uint32]int{}}
	n := e1000.RingBytes(r.cfg)
	dev, err := e1000.New(r.regs, netdev.Region{Mem: r.mem[ringsAt : ringsAt+n], Addr: ringsAt}, r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.dev = dev
	if f, err := dev.Reset(); err != nil || len(f.RX)+len(f.TX) != 0 {
		t.Fatalf("new driver's Reset() = %v, %v; want nothing forgotten, no error", f, err)
	}
	if got := r.m.Writes(e1000.RCTL) - rctlWrites; !hw && got != 0 {
		t.Errorf("hardware=%v: RCTL writes during a restart = %d, want 0 (QEMU pauses receive after one)", hw, got)
	}

	// The caller resubmits what was never acknowledged, in order.
	var resubmit []uint64
	for _, c := range order {
		if _, ok := outstanding[c]; ok {
			resubmit = append(resubmit, c)
		}
	}
	if want := order[2:]; !slices.Equal(resubmit, want) {
		t.Errorf("hardware=%v: resubmission set = %v, want %v", hw, resubmit, want)
	}
	wireBefore := len(r.wire)
	for _, c := range resubmit {
		f := outstanding[c]
		b := netdev.Buffer{Mem: r.mem[c : c+bufBytes], Addr: c, Cookie: c}
		if !dev.Transmit(b, len(f)) {
			t.Fatalf("hardware=%v: Transmit after restart refused", hw)
		}
	}
	dev.FlushTX()
	if r.m.StepTX(-1) != 4 {
		t.Errorf("hardware=%v: device sent stale descriptors", hw)
	}
	if got := r.pollTX(); !slices.Equal(got, resubmit) {
		t.Errorf("hardware=%v: PollTX after restart = %v, want %v", hw, got, resubmit)
	}
	// On the wire: 0, 1, 2 from the old driver, then 2 again (the one
	// duplicate), 3, 4, 5; nothing stale.
	wantSeq := []int{0, 1, 2, 2, 3, 4, 5}
	if len(r.wire) != len(wantSeq) || wireBefore != 3 {
		t.Fatalf("hardware=%v: wire got %d frames (%d before restart), want %d (3)", hw, len(r.wire), wireBefore, len(wantSeq))
	}
	for i, s := range wantSeq {
		if want := frame(bcast, s, 80); !bytes.Equal(r.wire[i], want) {
			t.Errorf("hardware=%v: wire frame %d = %q, want sequence %d", hw, i, r.wire[i][14:22], s)
		}
	}

	// Receive works at once (no RCTL pause to wait out) into new buffers.
	newRX := r.fill()
	for i := range 20 {
		if !r.m.Deliver(frame(testMAC, 100+i, 100)) && i < 15 {
			t.Fatalf("hardware=%v: Deliver %d after restart = false", hw, i)
		}
	}
	got := r.pollRX()
	if len(got) != 15 {
		t.Errorf("hardware=%v: PollRX after restart = %d frames, want 15", hw, len(got))
	}
	for i, g := range got {
		if g.cookie != newRX[i] || !bytes.Equal(g.frame, frame(testMAC, 100+i, 100)) {
			t.Errorf("hardware=%v: frame %d = cookie %#x %q, want %#x seq %d", hw, i, g.cookie, g.frame[14:22], newRX[i], 100+i)
		}
	}
	for _, c := range oldRX {
		if r.mem[c] != 0xEE || r.mem[c+1] != 0 {
			t.Errorf("hardware=%v: DMA into old buffer %#x after restart", hw, c)
		}
	}
}

// TestResetForgets: a Reset of a live Dev returns every buffer it held.
func TestResetForgets(t *testing.T) {
	r := newRig(t, model.Config{HoldTX: true}, e1000.Config{RxRing: 8, TxRing: 8})
	var rx, tx []uint64
	for range 5 {
		b := r.buf()
		r.dev.PostRX(b)
		rx = append(rx, b.Cookie)
	}
	r.dev.FlushRX()
	b := r.buf()
	r.dev.PostRX(b) // posted, not flushed: forgotten too
	rx = append(rx, b.Cookie)
	for i := range 3 {
		c, _ := r.send(frame(bcast, i, 60))
		tx = append(tx, c)
	}
	r.dev.FlushTX()
	r.m.StepTX(1) // sent but not polled: still the caller's to resubmit
	f, err := r.dev.Reset()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.RX, rx) || !slices.Equal(f.TX, tx) {
		t.Errorf("Reset() forgot RX %v TX %v, want RX %v TX %v", f.RX, f.TX, rx, tx)
	}
	if got := r.pollRX(); len(got) != 0 {
		t.Errorf("PollRX after Reset = %v, want nothing", got)
	}
	if r.dev.RxFree() != 7 || r.dev.TxFree() != 7 {
		t.Errorf("RxFree, TxFree after Reset = %d, %d, want 7, 7", r.dev.RxFree(), r.dev.TxFree())
	}
}

// TestMultiDescriptorFrame: with 256-byte buffers a 600-byte frame spans
// three descriptors; the driver drops it, returns the buffers, counts it.
func TestMultiDescriptorFrame(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 16, TxRing: 16, RxBufSize: 256})
	posted := r.fill()
	r.m.Deliver(frame(testMAC, 1, 600))
	r.m.Deliver(frame(testMAC, 2, 200))
	got := r.pollRX()
	if len(got) != 4 {
		t.Fatalf("PollRX = %d buffers, want 4", len(got))
	}
	for i, g := range got {
		if g.cookie != posted[i] {
			t.Errorf("buffer %d cookie = %#x, want %#x", i, g.cookie, posted[i])
		}
		if wantNil := i < 3; (g.frame == nil) != wantNil {
			t.Errorf("buffer %d frame nil = %v, want %v", i, g.frame == nil, wantNil)
		}
	}
	if len(got[3].frame) != 200 {
		t.Errorf("frame after the dropped one: length %d, want 200", len(got[3].frame))
	}
	if st := r.dev.Stats(); st.RxDropped != 1 || st.RxFrames != 1 {
		t.Errorf("Stats() RxDropped, RxFrames = %d, %d, want 1, 1", st.RxDropped, st.RxFrames)
	}
}

// TestRxErrors: a frame the device marks bad is handed over as bad.
func TestRxErrors(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 8, TxRing: 8})
	posted := r.fill()
	// Act as the device for descriptor 0: 64 bytes, DD|EOP, CRC error.
	desc := e1000.RxDesc(r.mem[ringsAt : ringsAt+16])
	desc.SetWriteBack(64, 0, e1000.RDESC_ERRORS_CE)
	e1000.PublishWriteBack(desc, e1000.RDESC_STATUS_DD|e1000.RDESC_STATUS_EOP)
	got := r.pollRX()
	if len(got) != 1 || got[0].cookie != posted[0] || !got[0].bad || len(got[0].frame) != 64 {
		t.Fatalf("PollRX = %+v, want one 64-byte frame with CE", got)
	}
	if st := r.dev.Stats(); st.RxErrors != 1 || st.RxFrames != 0 {
		t.Errorf("Stats() RxErrors, RxFrames = %d, %d, want 1, 0", st.RxErrors, st.RxFrames)
	}
}

func TestInterruptsAndLink(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 8, TxRing: 8})
	r.fill()
	if !r.dev.LinkUp() {
		t.Error("LinkUp() = false after Reset, want true")
	}
	r.m.Deliver(frame(testMAC, 0, 64))
	if !r.m.Pending() {
		t.Error("no interrupt pending after a frame with RXT0 enabled")
	}
	r.dev.DisableInterrupts()
	if r.m.Pending() {
		t.Error("interrupt pending after DisableInterrupts")
	}
	r.dev.EnableInterrupts()
	r.dev.Interrupts()
	r.m.SetLink(false)
	if r.dev.LinkUp() {
		t.Error("LinkUp() = true with the cable out")
	}
	if ic := r.dev.Interrupts(); ic&e1000.ICR_LSC == 0 {
		t.Errorf("Interrupts() after link loss = %#x, want LSC", ic)
	}
	if r.m.Deliver(frame(testMAC, 1, 64)) {
		t.Error("Deliver with link down = true, want false")
	}
}

// TestQEMURCTLPause documents QEMU's receive pause after an RCTL write.
func TestQEMURCTLPause(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 8, TxRing: 8})
	r.fill()
	r.m.Write32(e1000.RCTL, r.m.Peek(e1000.RCTL))
	if r.m.Deliver(frame(testMAC, 0, 64)) {
		t.Error("Deliver right after an RCTL write = true, want false (QEMU's flush_queue_timer)")
	}
	r.m.Advance(time.Second)
	if !r.m.Deliver(frame(testMAC, 0, 64)) {
		t.Error("Deliver a second after the RCTL write = false, want true")
	}
}

// TestMulticastFilter: the groups SetMulticast gives come in, others do
// not, and a Reset (a driver's own, or a watchdog's) keeps them.
func TestMulticastFilter(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 16, TxRing: 16})
	var _ netdev.Multicaster = r.dev
	allNodes := [6]byte{0x33, 0x33, 0, 0, 0, 1}
	solicited := [6]byte{0x33, 0x33, 0xff, 0x12, 0x34, 0x56}
	other := [6]byte{0x33, 0x33, 0xff, 0x12, 0x34, 0x57} // bits 47:36 differ from both
	r.fill()
	deliver := func(dst [6]byte, want bool) {
		t.Helper()
		if got := r.m.Deliver(frame(dst, 1, 100)); got != want {
			t.Errorf("Deliver(to %x) = %v, want %v", dst, got, want)
		}
	}
	deliver(allNodes, false)
	r.dev.SetMulticast([][6]byte{allNodes, solicited})
	deliver(allNodes, true)
	deliver(solicited, true)
	deliver(other, false)
	r.dev.Reset()
	r.m.Advance(time.Second)
	r.fill()
	deliver(solicited, true)
	deliver(other, false)
	r.dev.SetMulticast(nil)
	deliver(solicited, false)
}

// TestInterruptIntervalKeptAcrossReset: SetInterruptInterval programs ITR
// in 256 ns units, and a Reset (for a new IP generation, or the
// watchdog's) programs it again, on QEMU's part that keeps its registers
// as on one that clears them.
func TestInterruptIntervalKeptAcrossReset(t *testing.T) {
	for _, p := range parts {
		for _, hw := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s hardware=%v", p.name, hw), func(t *testing.T) {
				r := newRig(t, model.Config{Part: p.model, Hardware: hw}, e1000.Config{RxRing: 16, TxRing: 16, Variant: p.variant})
				var _ netdev.Moderator = r.dev
				for _, c := range []struct {
					iv   time.Duration
					want uint32
				}{
					{50 * time.Microsecond, 195},
					{0, 0},
					{125 * time.Microsecond, 488},
					{time.Second, e1000.ITR_INTERVAL_MASK},
				} {
					r.dev.SetInterruptInterval(c.iv)
					if got := r.m.Peek(e1000.ITR); got != c.want {
						t.Errorf("ITR after SetInterruptInterval(%v) = %d, want %d", c.iv, got, c.want)
					}
					if _, err := r.dev.Reset(); err != nil {
						t.Fatal(err)
					}
					if got := r.m.Peek(e1000.ITR); got != c.want {
						t.Errorf("ITR after SetInterruptInterval(%v) and Reset = %d, want %d", c.iv, got, c.want)
					}
				}
			})
		}
	}
}
