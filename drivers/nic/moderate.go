package nic

import "time"

// Adaptive interrupt moderation
//
// Like Linux's NAPI the loop polls while there is work and sleeps on the
// device's interrupt when there is none (run.go). How soon a device that
// moderates (netdev.Moderator) interrupts again after an interrupt is the
// other half: no spacing serves a lone frame at once, a longer spacing lets
// the frames of a busy link gather into one wake-up. The driver measures its
// load, the replies it hands up (a frame received or sent each), over
// samples of at least SampleEvery, and picks a class:
//
//   - idle, below BusyRate frames/s: no spacing (a ping, a paced stream);
//   - busy, up to BulkRate: BusyInterval;
//   - bulk, from BulkRate on: BulkInterval.
//
// A class changes only after Hysteresis samples in a row ask for the same
// other class, so that a bursty load does not flap: a load that starts from
// idle has its first samples' frames served with no spacing. Returning to
// idle waits for the samples too; a spacing left over from a load that is
// gone delays no lone frame, for a device raises the first interrupt after
// a quiet period longer than its interval at once (netdev.Moderator): the
// spacing holds back only the interrupts that follow one closely.

// Moderation tuning.
const (
	SampleEvery  = 20 * time.Millisecond
	Hysteresis   = 3
	BusyRate     = 1000  // frames/s
	BulkRate     = 10000 // frames/s
	BusyInterval = 50 * time.Microsecond
	BulkInterval = 125 * time.Microsecond
)

// Class is a load class of the moderation.
type Class uint8

// Load classes, from the least load.
const (
	Idle Class = iota
	Busy
	Bulk
)

func (c Class) String() string {
	return [...]string{"idle", "busy", "bulk"}[c]
}

// Interval is the interrupt spacing the class asks of the device.
func (c Class) Interval() time.Duration {
	return [...]time.Duration{0, BusyInterval, BulkInterval}[c]
}

// classOf is the class a rate of frames/s asks for.
func classOf(rate float64) Class {
	switch {
	case rate >= BulkRate:
		return Bulk
	case rate >= BusyRate:
		return Busy
	}
	return Idle
}

// moderation chooses the class from samples of the load.
type moderation struct {
	class Class
	// want is the class the last samples asked for, for wanted of them in
	// a row, while it differs from class.
	want   Class
	wanted int
	// start and frames are the current sample's beginning and the frame
	// count then.
	start  time.Time
	frames uint64
	// changes counts class changes.
	changes uint64
}

// sample takes the frame count so far at now: when the current sample is
// SampleEvery old it ends it and reports whether the class changed.
func (m *moderation) sample(now time.Time, frames uint64) bool {
	if m.start.IsZero() {
		m.start, m.frames = now, frames
		return false
	}
	elapsed := now.Sub(m.start)
	if elapsed < SampleEvery {
		return false
	}
	n := frames - m.frames
	m.start, m.frames = now, frames
	want := classOf(float64(n) / elapsed.Seconds())
	switch {
	case want == m.class:
		m.wanted = 0
		return false
	case want == m.want:
		m.wanted++
	default:
		m.want, m.wanted = want, 1
	}
	if m.wanted < Hysteresis {
		return false
	}
	m.class, m.wanted = want, 0
	m.changes++
	return true
}

// TurnaroundBounds are the upper bounds of Timing.Turnaround's buckets:
// powers of 4 from 4 µs to 16 ms; the last bucket is open.
var TurnaroundBounds = [...]time.Duration{
	4 * time.Microsecond, 16 * time.Microsecond, 64 * time.Microsecond, 256 * time.Microsecond,
	time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond,
}

// Timing is how the loop waits on IP and the device (`keepnet status`).
type Timing struct {
	// Turnaround counts IP's turn-arounds by length: from the loop handing
	// replies (frames received, frames sent) up to the next request
	// coming, in buckets bounded by TurnaroundBounds.
	Turnaround [len(TurnaroundBounds) + 1]uint64
	EmptyPolls uint64 // polls that found nothing to do: the spinning
	// Class is the moderation's load class, Interval the interrupt
	// spacing it asked of the device (none when the device does not
	// moderate), ClassChanges how often it changed.
	Class        string
	Interval     time.Duration
	ClassChanges uint64
}

// turnaround counts one turn-around of d.
func (t *Timing) turnaround(d time.Duration) {
	i := 0
	for i < len(TurnaroundBounds) && d >= TurnaroundBounds[i] {
		i++
	}
	t.Turnaround[i]++
}
