package e1000_test

import (
	"testing"
	"time"

	"keepnet/drivers/link"
	"keepnet/drivers/nic"
	"keepnet/e1000"
)

// watch runs the driver loop and its watchdog over twice the limit of fake
// time and returns the reasons of the resets.
func (b *loopBench) watch(each func()) []string {
	b.t.Helper()
	var reasons []string
	start := time.Unix(1000, 0)
	for now := start; !now.After(start.Add(2 * nic.DefaultWatchLimit)); now = now.Add(nic.DefaultWatchLimit / 8) {
		each()
		b.drv.Poll()
		r, err := b.drv.Watch(now, nic.DefaultWatchLimit)
		if err != nil {
			b.t.Fatal(err)
		}
		if r != "" {
			reasons = append(reasons, r)
		}
	}
	return reasons
}

// The transmitter stopped behind the driver's back (the stop-tx test hook
// clears TCTL.EN): TDH stays, the watchdog resets the device, and the
// frames it held go out and are answered.
func TestWatchdogResetsStoppedTransmitter(t *testing.T) {
	b := newLoopBench(t)
	e1000.StopTX(b.m)
	ids := []uint64{b.transmit("one"), b.transmit("two")}
	if got := b.replies(); len(got) != 0 || len(b.wire) != 0 {
		t.Fatalf("a stopped transmitter sent %d frames, answered %+v", len(b.wire), got)
	}
	if r := b.watch(func() {}); len(r) != 1 || r[0] != nic.ResetTxHang {
		t.Fatalf("resets %v, want one %q", r, nic.ResetTxHang)
	}
	got := map[uint64]bool{}
	for _, r := range b.replies() {
		got[r.ID] = link.StatusOf(r) == link.StatusOK
	}
	if !got[ids[0]] || !got[ids[1]] || len(b.wire) != 2 {
		t.Errorf("after the reset: replies %v, %d frames on the wire; want both sent and answered", got, len(b.wire))
	}
	if c := b.drv.Counters(); c.TxHangResets != 1 {
		t.Errorf("counters %+v, want one transmit hang", c)
	}
}

// A receive unit that drops every frame as missed (MPC) while buffers are
// posted is reset; frames are received again into the same buffers.
func TestWatchdogResetsStalledReceiver(t *testing.T) {
	b := newLoopBench(t)
	id := b.postRX()
	b.replies()
	b.m.JamRX()
	traffic := func() { // frames keep coming until the reset
		if b.drv.Counters().RxStallResets == 0 {
			b.m.Deliver(ethFrame("dropped"))
		}
	}
	if r := b.watch(traffic); len(r) != 1 || r[0] != nic.ResetRxStall {
		t.Fatalf("resets %v, want one %q", r, nic.ResetRxStall)
	}
	b.replies()
	b.m.Advance(time.Second) // past QEMU's receive pause, should the reset write RCTL
	if !b.m.Deliver(ethFrame("after")) {
		t.Fatal("no frame received after the reset")
	}
	reps := b.replies()
	if len(reps) != 1 || reps[0].ID != id {
		t.Errorf("after the reset: replies %+v, want buffer %d filled", reps, id)
	}
	if c := b.drv.Counters(); c.RxStallResets != 1 {
		t.Errorf("counters %+v, want one receive stall", c)
	}
}
