package supervisor

import (
	"fmt"
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
//
// Two silences are nobody's fault and kill nothing: a check that comes late
// (the supervisor itself did not run: the whole machine paused), and a
// process that is runnable but got almost no processor time (the machine is
// overloaded, proc.go). Either gives the component half of HangAfter again.

// alive records a sign of life of start attempt's process.
func (s *Supervisor) alive(c *component, attempt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.attempt != attempt {
		return
	}
	first := c.lastAlive.IsZero()
	c.lastAlive = s.cfg.Clock.Now()
	c.aliveCPU = -1
	if c.proc != nil {
		c.aliveCPU = cpuTime(c.proc.Pid)
	}
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
	s.mu.Unlock()
	if last.IsZero() {
		return changed, func() {}
	}
	due := last.Add(s.cfg.HangAfter)
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

// killIfHung kills p if c has shown no sign of life for HangAfter, and
// returns how it ended; false when it is not hung (yet).
//
// A check that comes more than a quarter of HangAfter after it was due
// means that the supervisor itself did not run: the whole machine paused
// (a host that does not schedule the guest). The silence is then nobody's
// fault, and c gets half of HangAfter from now to answer again.
func (s *Supervisor) killIfHung(c *component, p *process) (ending, bool) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	last := c.lastAlive
	silent := now.Sub(last)
	late := silent - s.cfg.HangAfter
	if !last.IsZero() && late > s.cfg.HangAfter/4 {
		c.lastAlive = now.Add(-s.cfg.HangAfter / 2)
		s.mu.Unlock()
		s.con.logf("%s: hang check %v late: the machine paused; waiting again", c.spec.Name, late.Round(time.Millisecond))
		return ending{}, false
	}
	cpuThen := c.aliveCPU
	s.mu.Unlock()
	if last.IsZero() || silent < s.cfg.HangAfter {
		return ending{}, false
	}
	if s.starved(p.cmd.Process.Pid, silent, cpuThen) {
		s.mu.Lock()
		c.lastAlive = now.Add(-s.cfg.HangAfter / 2)
		s.mu.Unlock()
		s.con.logf("%s: silent for %v but runnable and given no processor: the machine is overloaded; waiting again", c.spec.Name, silent.Round(time.Millisecond))
		return ending{}, false
	}
	s.con.logf("%s: hung: no sign of life for %v; killing pid %d", c.spec.Name, silent.Round(time.Millisecond), p.cmd.Process.Pid)
	p.cmd.Process.Signal(syscall.SIGKILL) // works on a stopped process too
	end := ending{status: "not reaped after SIGKILL", code: -1}
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case err := <-p.exited:
		end = s.ended(p, err)
	case <-t.C:
		s.con.logf("%s: not reaped %v after SIGKILL; giving up on it", c.spec.Name, killWait)
	}
	end.status = fmt.Sprintf("hung (no answer for %v)", s.cfg.HangAfter)
	s.mu.Lock()
	c.hangs++
	s.mu.Unlock()
	return end, true
}
