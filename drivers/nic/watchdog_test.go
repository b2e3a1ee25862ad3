package nic

import (
	"testing"
	"time"

	"keepnet/drivers/link"
	"keepnet/drivers/netdev"
	"keepnet/drivers/netdev/netdevtest"
)

// watchFor runs the loop and its watchdog over d of fake time, a look at a
// time, and returns the reasons of the resets.
func (b *bench) watchFor(start time.Time, d time.Duration) []string {
	b.t.Helper()
	var reasons []string
	for now := start; !now.After(start.Add(d)); now = now.Add(DefaultWatchLimit / watchLooks) {
		b.drv.Poll()
		reason, err := b.drv.Watch(now, DefaultWatchLimit)
		if err != nil {
			b.t.Fatal(err)
		}
		if reason != "" {
			reasons = append(reasons, reason)
		}
	}
	return reasons
}

// A device that stops transmitting with frames on its ring is reset once
// the head has not moved for the limit; the frames it held are sent again
// and answered, and the reset is counted as a transmit hang.
func TestWatchdogTransmitHang(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	b.dev.StuckTX = true
	ids := []uint64{b.transmit("one", link.Offload{}), b.transmit("two", link.Offload{})}
	start := time.Unix(1000, 0)
	if r := b.watchFor(start, DefaultWatchLimit/2); len(r) != 0 {
		t.Fatalf("reset after half the limit: %v", r)
	}
	if got := b.replies(); len(got) != 0 {
		t.Fatalf("replies from a stuck device: %+v", got)
	}
	if r := b.watchFor(start.Add(DefaultWatchLimit/2+time.Millisecond), DefaultWatchLimit); len(r) != 1 || r[0] != ResetTxHang {
		t.Fatalf("resets after the limit: %v, want one %q", r, ResetTxHang)
	}
	got := byID(b.replies())
	for _, id := range ids {
		if r, ok := got[id]; !ok || link.StatusOf(r) != link.StatusOK {
			t.Errorf("request %d after the reset: %+v, %v; want sent and answered OK", id, r, ok)
		}
	}
	if len(b.dev.Wire) != 2 {
		t.Errorf("%d frames on the wire after the reset, want the 2 the device held", len(b.dev.Wire))
	}
	c := b.drv.Counters()
	if c.TxHangResets != 1 || c.RxStallResets != 0 || c.Resets != 1 {
		t.Errorf("counters %+v, want 1 reset, a transmit hang", c)
	}
}

// A device that drops every frame as missed while it holds empty buffers is
// reset after the limit; its buffers are posted again and filled.
func TestWatchdogReceiveStall(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	id := b.postRX()
	b.replies()
	b.dev.JamRX = true
	start := time.Unix(1000, 0)
	var reasons []string
	for now := start; !now.After(start.Add(2 * DefaultWatchLimit)); now = now.Add(DefaultWatchLimit / watchLooks) {
		if b.dev.JamRX {
			b.dev.Deliver(frame("missed"), false) // traffic the device drops
		}
		r, err := b.drv.Watch(now, DefaultWatchLimit)
		if err != nil {
			t.Fatal(err)
		}
		if r != "" {
			reasons = append(reasons, r)
		}
		b.drv.Poll()
	}
	if len(reasons) != 1 || reasons[0] != ResetRxStall {
		t.Fatalf("resets: %v, want one %q", reasons, ResetRxStall)
	}
	if !b.dev.Deliver(frame("after"), false) {
		t.Fatal("no buffer posted again after the reset")
	}
	got := byID(b.replies())
	if r, ok := got[id]; !ok || link.StatusOf(r) != link.StatusOK {
		t.Errorf("the buffer posted before the stall: %+v, %v; want it filled after the reset", r, ok)
	}
	if c := b.drv.Counters(); c.RxStallResets != 1 || c.TxHangResets != 0 {
		t.Errorf("counters %+v, want one receive stall", c)
	}
}

// No reset for a device that is idle, that is busy and moving, or that
// misses frames only because no buffer is posted (IP is slow: a reset would
// not help).
func TestWatchdogLeavesHealthyDevice(t *testing.T) {
	tests := []struct {
		name string
		p    func(i int) netdev.Progress
	}{
		{"idle", func(int) netdev.Progress { return netdev.Progress{LinkUp: true, RxPosted: 8} }},
		{"sending", func(i int) netdev.Progress {
			return netdev.Progress{LinkUp: true, TxPending: 4, TxHead: uint32(i)}
		}},
		{"link down", func(int) netdev.Progress { return netdev.Progress{TxPending: 4} }},
		{"no buffers", func(i int) netdev.Progress { return netdev.Progress{LinkUp: true, RxMissed: uint64(i)} }},
		{"receiving with misses", func(i int) netdev.Progress {
			return netdev.Progress{LinkUp: true, RxPosted: 8, RxHead: uint32(i), RxMissed: uint64(i)}
		}},
	}
	for _, tt := range tests {
		var w watchdog
		now := time.Unix(1000, 0)
		for i := 0; i < 5*watchLooks; i++ {
			if r := w.look(now, tt.p(i), DefaultWatchLimit); r != "" {
				t.Errorf("%s: look %d = %q, want no reset", tt.name, i, r)
				break
			}
			now = now.Add(DefaultWatchLimit / watchLooks)
		}
	}
}
