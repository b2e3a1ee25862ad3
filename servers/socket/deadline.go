package socket

import (
	"sync"
	"time"
)

// deadline is one direction's deadline of a socket, with Go netpoll's
// semantics: an operation blocked when the deadline passes or is changed is
// woken; a deadline in the past fails operations at once; the zero time
// means none.
type deadline struct {
	mu    sync.Mutex
	t     time.Time
	timer *time.Timer   // fires at t
	ch    chan struct{} // closed (and dropped) when t passes or t changes; made on demand
}

// set changes the deadline and wakes every operation waiting on the old one
// (they look again and find the new one).
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.t = t
	d.wakeLocked()
	if !t.IsZero() {
		if left := time.Until(t); left > 0 {
			d.timer = time.AfterFunc(left, d.fire)
		}
	}
}

// fire is the timer's: it wakes the waiters, who find the deadline passed.
// A timer that fires after set replaced it causes one spurious wake-up.
func (d *deadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wakeLocked()
}

// wakeLocked closes the channel waiters hold. d.mu must be held.
func (d *deadline) wakeLocked() {
	if d.ch != nil {
		close(d.ch)
		d.ch = nil
	}
}

// wait reports whether the deadline has passed and, if not, returns a
// channel that is closed when it passes or changes.
func (d *deadline) wait() (changed <-chan struct{}, expired bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.t.IsZero() && !time.Now().Before(d.t) {
		return nil, true
	}
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch, false
}

// expired reports whether the deadline has passed.
func (d *deadline) expired() bool {
	_, exp := d.wait()
	return exp
}
