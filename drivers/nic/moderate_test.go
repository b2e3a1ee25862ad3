package nic

import (
	"fmt"
	"testing"
	"time"

	"keepnet/drivers/link"
	"keepnet/drivers/netdev/netdevtest"
	"keepnet/kernel/pool"
)

// rate is the frames a sample of SampleEvery carries at perSecond.
func rate(perSecond int) uint64 {
	return uint64(perSecond) * uint64(SampleEvery) / uint64(time.Second)
}

// The class follows the load sampled every SampleEvery: it changes only
// after Hysteresis samples in a row ask for the same class, so the first
// frames after idle are never spaced, and a load that hovers between two
// classes, or pauses, does not flap.
func TestModerationClass(t *testing.T) {
	idle, busy, bulk := rate(BusyRate/2), rate(BusyRate*2), rate(BulkRate*2)
	for _, c := range []struct {
		name    string
		samples []uint64 // frames in each sample
		want    []Class  // class after each sample
	}{
		{"idle stays idle", []uint64{idle, idle, 1, 0}, []Class{Idle, Idle, Idle, Idle}},
		{"busy after hysteresis", []uint64{busy, busy, busy, busy}, []Class{Idle, Idle, Busy, Busy}},
		{"bulk after hysteresis", []uint64{bulk, bulk, bulk}, []Class{Idle, Idle, Bulk}},
		{"mixed climb counts anew", []uint64{busy, bulk, bulk, bulk}, []Class{Idle, Idle, Idle, Bulk}},
		{"hovering does not flap", []uint64{busy, busy, busy, idle, busy, idle, idle, busy}, []Class{Idle, Idle, Busy, Busy, Busy, Busy, Busy, Busy}},
		{"down after hysteresis", []uint64{bulk, bulk, bulk, busy, busy, busy}, []Class{Idle, Idle, Bulk, Bulk, Bulk, Busy}},
		{"a pause is no change", []uint64{bulk, bulk, bulk, 0, bulk, 0, 0, 0}, []Class{Idle, Idle, Bulk, Bulk, Bulk, Bulk, Bulk, Idle}},
		{"first frames after idle unspaced", []uint64{0, 0, 0, bulk, bulk}, []Class{Idle, Idle, Idle, Idle, Idle}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var m moderation
			now := time.Unix(1000, 0)
			var frames uint64
			m.sample(now, frames)
			for i, n := range c.samples {
				// Half a sample counts for nothing.
				if m.sample(now.Add(SampleEvery/2), frames+n) {
					t.Fatalf("sample %d: half a sample changed the class", i)
				}
				now, frames = now.Add(SampleEvery), frames+n
				was := m.class
				changed := m.sample(now, frames)
				if m.class != c.want[i] || changed != (was != m.class) {
					t.Errorf("after sample %d (%d frames): class %v (changed %v), want %v", i, n, m.class, changed, c.want[i])
				}
			}
		})
	}
}

// moderated is a fake device that moderates its interrupts.
type moderated struct {
	*netdevtest.Device
	set []time.Duration
}

func (m *moderated) SetInterruptInterval(d time.Duration) { m.set = append(m.set, d) }

// The driver starts a moderating device with no spacing, sets the class's
// interval on a change only, and says so in Timing.
func TestDriverModerates(t *testing.T) {
	dev := &moderated{Device: netdevtest.New(netdevtest.Config{})}
	d := New(dev, poolTranslate)
	if fmt.Sprint(dev.set) != "[0s]" {
		t.Fatalf("intervals set by New = %v, want [0s] (idle)", dev.set)
	}
	now := time.Unix(1000, 0)
	d.Moderate(now)
	for i := 0; i < Hysteresis+2; i++ {
		now = now.Add(SampleEvery)
		d.counters.Replies += rate(BulkRate * 2)
		d.Moderate(now)
	}
	for i := 0; i < Hysteresis; i++ {
		now = now.Add(SampleEvery)
		d.Moderate(now) // quiet
	}
	if want := fmt.Sprint([]time.Duration{0, BulkInterval, 0}); fmt.Sprint(dev.set) != want {
		t.Errorf("intervals set = %v, want %s", dev.set, want)
	}
	if tm := d.Timing(); tm.Class != "idle" || tm.Interval != 0 || tm.ClassChanges != 2 {
		t.Errorf("Timing() = class %s, interval %v, %d changes; want idle, 0s, 2", tm.Class, tm.Interval, tm.ClassChanges)
	}
}

// Timing counts IP's turn-around, from the replies going up to the next
// request, and the polls that found nothing.
func TestTurnaround(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	now := time.Unix(1000, 0)
	b.drv.now = func() time.Time { return now }
	b.transmit("one", link.Offload{})
	b.drv.Poll() // takes the request, the fake device sends the frame
	for b.drv.Poll() {
	}
	if len(b.replies()) != 1 {
		t.Fatal("no reply to the transmit request")
	}
	empty := b.drv.Timing().EmptyPolls
	if empty == 0 {
		t.Error("EmptyPolls = 0 after polls that found nothing")
	}
	now = now.Add(100 * time.Microsecond)
	b.send(link.OpInfo.Msg(pool.Ref{}))
	b.drv.Poll()
	now = now.Add(time.Second) // the info reply went up in that poll
	b.send(link.OpInfo.Msg(pool.Ref{}))
	b.drv.Poll()
	var want [len(TurnaroundBounds) + 1]uint64
	want[3] = 1                     // 100µs: [64µs, 256µs)
	want[len(TurnaroundBounds)] = 1 // 1s: beyond the last bound
	if got := b.drv.Timing().Turnaround; got != want {
		t.Errorf("Turnaround = %v, want %v", got, want)
	}
}
