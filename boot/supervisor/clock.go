package supervisor

import "time"

// Clock is the supervisor's source of time: back-off delays, the grace
// period between SIGTERM and SIGKILL, and how long a run lasted. Tests pass a
// fake so that no test sleeps through a back-off.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the supervisor uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// realClock is the Clock of the running system.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// backoff is the delay before the restart that follows the given number of
// consecutive repeated crashes: none for the first crash, then min, 2*min,
// 4*min ... capped at max.
func backoff(crashes int, min, max time.Duration) time.Duration {
	if crashes <= 0 {
		return 0
	}
	d := min
	for i := 1; i < crashes && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
