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
//
// Signs of life are recorded under their own lock (liveness.mu), never
// Supervisor.mu: that one is held across a fork, which can take seconds on
// a loaded machine, and a component must not look silent because init was
// busy starting another.

// liveness is what the supervisor knows of a component's signs of life.
type liveness struct {
	mu      sync.Mutex
	attempt int           // the start whose process is watched
	last    time.Time     // its last sign of life; zero before the first
	cpu     time.Duration // its processor time then; -1: unknown
	pid     int
	armed   chan struct{} // closed at its first sign of life
}

// watchStart begins watching a new start: what an earlier process said no
// longer counts.
func (l *liveness) watchStart(attempt int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempt, l.last, l.cpu, l.pid = attempt, time.Time{}, -1, 0
	l.armed = make(chan struct{})
}

// started records the pid of the watched start.
func (l *liveness) started(attempt, pid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attempt == attempt {
		l.pid = pid
	}
}

// alive records a sign of life of start attempt's process at now.
func (l *liveness) alive(attempt int, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attempt != attempt || l.pid == 0 {
		return
	}
	if l.last.IsZero() {
		close(l.armed) // the watch begins
	}
	l.last, l.cpu = now, cpuTime(l.pid)
}

// state returns the last sign of life, the processor time then, and the
// channel closed at the first.
func (l *liveness) state() (time.Time, time.Duration, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, l.cpu, l.armed
}

// grant gives the component until from+d to answer.
func (l *liveness) grant(from time.Time, d time.Duration, hangAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = from.Add(d - hangAfter)
}

// hangTimer returns what the supervising goroutine of c waits on for a hang
// of its current process, and a function that releases it: a timer due
// HangAfter after the last sign of life, or, before the first, the channel
// closed by it, or nil when hang detection is off for c.
func (s *Supervisor) hangTimer(c *component) (<-chan struct{}, func()) {
	if s.cfg.HangAfter <= 0 || c.spec.Liveness == nil {
		return nil, func() {}
	}
	last, _, armed := c.live.state()
	if last.IsZero() {
		return armed, func() {}
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
	last, cpuThen, _ := c.live.state()
	silent := now.Sub(last)
	if last.IsZero() || silent < s.cfg.HangAfter {
		return ending{}, false
	}
	pid := p.cmd.Process.Pid
	if late := silent - s.cfg.HangAfter; late > s.cfg.HangAfter/4 {
		c.live.grant(now, s.cfg.HangAfter/2, s.cfg.HangAfter)
		s.con.logf("%s: hang check %v late: the machine paused; waiting again", c.spec.Name, late.Round(time.Millisecond))
		return ending{}, false
	}
	if s.starved(pid, silent, cpuThen) {
		c.live.grant(now, s.cfg.HangAfter/2, s.cfg.HangAfter)
		s.con.logf("%s: silent for %v but runnable and given no processor: the machine is overloaded; waiting again", c.spec.Name, silent.Round(time.Millisecond))
		return ending{}, false
	}
	s.con.logf("%s: hung: no sign of life for %v (threads %s, %v of processor time meanwhile); killing pid %d",
		c.spec.Name, silent.Round(time.Millisecond), threadStates(pid), cpuTime(pid)-cpuThen, pid)
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
