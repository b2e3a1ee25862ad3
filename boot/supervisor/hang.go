package supervisor

import (
	"fmt"
	"math"
	"sync"
	"syscall"
	"time"
)

// Hang detection: a component whose Spec has a Liveness hook says, through
// it, that its process makes progress (init's hub: every pong its loop sends
// on the wiring socket, kernel/wiring "Hang detection"). Once it has said so,
// a process silent for Config.HangAfter is hung: an infinite loop, a
// deadlock, a SIGSTOP. The supervisor kills it with SIGKILL, logs it, counts
// it in State.Hangs, and records the exit as "hung (...)"; the restart then
// follows the rules of any crash (back-off included). The watch starts at a
// process's first sign of life, not at its start: how long a component takes
// to start is not a hang (a start that never gets that far is not noticed).

// alive records a sign of life of start attempt's process.
func (s *Supervisor) alive(c *component, attempt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.attempt != attempt {
		return
	}
	now := s.cfg.Clock.Now()
	first := c.lastAlive.IsZero()
	if !first {
		s.noteGapLocked(now.Sub(c.lastAlive), now)
	}
	c.lastAlive = now
	c.stallExcuses = 0
	if first {
		s.changedLocked() // wakes the supervising goroutine: the watch begins
	}
}

// hangTimer returns what the supervising goroutine of c waits on for a hang
// of its current process, and a function that releases it: a timer due
// HangAfter after the last sign of life, or, before the first, a channel that
// is closed at the next change (the first sign is one), or nil when hang
// detection is off for c.
func (s *Supervisor) hangTimer(c *component) (<-chan struct{}, func()) {
	if s.cfg.HangAfter <= 0 || c.spec.Liveness == nil {
		return nil, func() {}
	}
	s.mu.Lock()
	last, changed := c.lastAlive, s.changed
	limit := s.limitLocked(s.cfg.Clock.Now())
	s.mu.Unlock()
	if last.IsZero() {
		return changed, func() {}
	}
	due := last.Add(limit)
	t := s.cfg.Clock.NewTimer(due.Sub(s.cfg.Clock.Now()))
	fired := make(chan struct{})
	done := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			close(fired)
		case <-done:
		}
	}()
	var once sync.Once
	return fired, func() {
		once.Do(func() {
			t.Stop()
			close(done)
		})
	}
}

// killIfHung kills p if c has shown no sign of life for the hang limit
// (limitLocked), and returns how it ended; false when it is not hung (yet).
//
// A check that comes more than a quarter of the limit after it was due
// means that the supervisor itself did not run: the whole machine paused
// (a host that does not schedule the guest). The silence is then nobody's
// fault, and c gets half of the limit from now to answer again.
//
// A silence that c shares with another component is not yet a hang: on a
// host that does not schedule the guest's vCPUs (a busy machine under TCG)
// every process on a starved vCPU falls silent at once, while a hung
// component (a loop, a deadlock, a SIGSTOP) falls silent alone. c then gets
// half of the limit more, up to maxStallExcuses times in a row (a silence
// of four times the limit): two components hung at once are still killed,
// later.
func (s *Supervisor) killIfHung(c *component, p *process) (ending, bool) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	last := c.lastAlive
	limit := s.limitLocked(now)
	silent := now.Sub(last)
	if last.IsZero() || silent < limit {
		s.mu.Unlock()
		return ending{}, false
	}
	if late := silent - limit; late > limit/4 {
		c.lastAlive = now.Add(-limit / 2)
		s.mu.Unlock()
		s.con.logf("%s: hang check %v late: the machine paused; waiting again", c.spec.Name, late.Round(time.Millisecond))
		return ending{}, false
	}
	if other := s.alsoSilentLocked(c, now, limit); other != "" && c.stallExcuses < maxStallExcuses {
		c.lastAlive = now.Add(-limit / 2)
		c.stallExcuses++
		s.mu.Unlock()
		s.con.logf("%s: silent for %v, and so is %s: the machine is stalling; waiting again", c.spec.Name, silent.Round(time.Millisecond), other)
		return ending{}, false
	}
	s.mu.Unlock()
	s.con.logf("%s: hung: no sign of life for %v (limit %v); killing pid %d", c.spec.Name, silent.Round(time.Millisecond), limit.Round(time.Millisecond), p.cmd.Process.Pid)
	p.cmd.Process.Signal(syscall.SIGKILL) // works on a stopped process too
	end := ending{status: "not reaped after SIGKILL", code: -1, pid: p.cmd.Process.Pid}
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case err := <-p.exited:
		end = s.ended(p, err)
	case <-t.C:
		s.con.logf("%s: not reaped %v after SIGKILL; giving up on it", c.spec.Name, killWait)
	}
	end.status = fmt.Sprintf("hung (no answer for %v)", silent.Round(time.Millisecond))
	end.hung = true
	s.mu.Lock()
	c.hangs++
	s.mu.Unlock()
	return end, true
}

// maxStallExcuses is how many times in a row a silence shared with another
// component buys half of the limit more before it counts as a hang.
const maxStallExcuses = 6

// alsoSilentLocked names another component whose running process has been
// silent for at least half of limit at now, or returns "". s.mu is held.
func (s *Supervisor) alsoSilentLocked(c *component, now time.Time, limit time.Duration) string {
	for _, o := range s.comps {
		if o == c || o.proc == nil || o.lastAlive.IsZero() {
			continue
		}
		if now.Sub(o.lastAlive) >= limit/2 {
			return o.spec.Name
		}
	}
	return ""
}

// The hang limit follows how fast the machine answers. Every sign of life
// notes the gap since the one before (a healthy component answers every
// ping, so its gaps are the hub's ping period); the slowest gap of any
// component lately, decaying by half every slowHalfLife, is the machine's
// pace. The limit is HangAfter, or slowFactor times that pace when it is
// longer: a guest that the host starves (TCG beside other jobs) answers
// every ping late, and a late answer is not a hang; a hung component never
// answers, so it is found all the same, later on a slow machine.
const (
	slowFactor   = 3
	slowHalfLife = 10 * time.Second
)

// noteGapLocked records a gap between two signs of life of one component;
// a gap counts for no more than the limit it ended under (a component
// stopped and continued by hand is not the machine's pace).
func (s *Supervisor) noteGapLocked(gap time.Duration, now time.Time) {
	gap = min(gap, s.limitLocked(now))
	if cur := s.slowGapAt(now); gap > cur {
		s.slowGap, s.slowSince = gap, now
	}
}

// slowGapAt is the slowest recent gap, decayed to now.
func (s *Supervisor) slowGapAt(now time.Time) time.Duration {
	if s.slowGap == 0 {
		return 0
	}
	halves := float64(now.Sub(s.slowSince)) / float64(slowHalfLife)
	return time.Duration(float64(s.slowGap) * math.Pow(0.5, halves))
}

// limitLocked is the hang limit at now. s.mu is held.
func (s *Supervisor) limitLocked(now time.Time) time.Duration {
	return max(s.cfg.HangAfter, slowFactor*s.slowGapAt(now))
}
