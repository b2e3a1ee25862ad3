package supervisor

import (
	"time"

	"keepnet/boot/journal"
)

// The journal's events (Config.Journal), one helper per moment of a
// component's life. A process's life in events:
//
//	start|restart  the fork succeeded (restart: Reason is why the last one ended)
//	ready          it said it serves (Recovery: since the last one ended)
//	exit|crash|hang|stop  it ended (Reason: how; Action: what follows)

// startEventLocked records the start of c's new process. Needs s.mu.
func (s *Supervisor) startEventLocked(c *component) {
	e := journal.Event{Time: c.started, Component: c.spec.Name, Generation: c.generation, Kind: journal.Start, PID: c.proc.Pid}
	if c.generation > 1 {
		e.Kind, e.Reason = journal.Restart, c.downWhy
	}
	s.cfg.Journal.Add(e)
	if c.spec.Ready == ReadyRunning {
		s.readyEventLocked(c)
	}
}

// readyEventLocked records that c's current process is ready: after a
// restart, with the time since the previous one ended. Needs s.mu.
func (s *Supervisor) readyEventLocked(c *component) {
	now := s.cfg.Clock.Now()
	e := journal.Event{Time: now, Component: c.spec.Name, Generation: c.generation, Kind: journal.Ready, PID: c.pidLocked()}
	if !c.downSince.IsZero() {
		e.Recovery = float64(now.Sub(c.downSince)) / float64(time.Millisecond)
		e.Reason = "after " + c.downWhy
		c.downSince, c.downWhy = time.Time{}, ""
	}
	s.cfg.Journal.Add(e)
}

// endEvent records how c's process ended (requested: a Restart or the
// appliance's stop ended it) and what the supervisor does next, and
// starts the clock of c's recovery.
func (s *Supervisor) endEvent(c *component, end ending, requested bool, action string) {
	now := s.cfg.Clock.Now()
	kind := journal.Crash
	switch {
	case end.hung:
		kind = journal.Hang
	case requested:
		kind = journal.Stop
	case end.code == 0:
		kind = journal.Exit
	}
	why := end.status
	if requested && action == "starting again" {
		why = "restart requested (" + end.status + ")"
	}
	s.mu.Lock()
	gen := c.generation
	if c.downSince.IsZero() {
		c.downSince = now
	}
	c.downWhy = why
	s.mu.Unlock()
	s.cfg.Journal.Add(journal.Event{Time: now, Component: c.spec.Name, Generation: gen, Kind: kind, PID: end.pid,
		Reason: why, Action: action})
}

// startedLocked is when c's running process started, zero if none runs.
// Needs s.mu.
func (c *component) startedLocked() time.Time {
	if c.proc == nil {
		return time.Time{}
	}
	return c.started
}
