package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"keepnet/kernel/exitcode"
	"keepnet/kernel/notify"
)

// errStopping ends a start that would come after Run began stopping.
var errStopping = errors.New("supervisor is stopping")

// process is one started process of a component. It belongs to the
// component's supervising goroutine.
type process struct {
	cmd     *exec.Cmd
	started time.Time  // Clock time of the start
	exited  chan error // cmd.Wait's result; buffered, sent once
}

// ending is how a process ended.
type ending struct {
	status string        // for State.LastExit
	code   int           // exit status; -1 for a signal or an unknown end
	ran    time.Duration // from start to exit, by the Clock
	pid    int           // 0 if it never started
	hung   bool          // killed by hang detection
}

// supervise is the life of one component under Run: wait for the
// dependencies, start, watch, decide about the restart, and again, until ctx
// is done. It is the only goroutine that starts or stops the component.
func (s *Supervisor) supervise(ctx context.Context, c *component) {
	name := c.spec.Name
	var (
		crashes int          // consecutive runs shorter than StableAfter
		callers []chan error // Restart calls to answer at the next start
	)
	defer func() { answer(callers, ErrNotRunning) }()

	for {
		if !s.awaitDeps(ctx, c, &callers) {
			s.setState(c, StateStopped, "")
			return
		}
		p, err := s.start(ctx, c)
		if errors.Is(err, errStopping) {
			s.setState(c, StateStopped, "")
			return
		}
		answer(callers, err)
		callers = nil

		var (
			end       ending
			requested bool // ended by Restart: start again at once
		)
		if err != nil {
			s.con.logf("%s: cannot start: %v", name, err)
			end = ending{status: "start: " + err.Error(), code: -1}
		} else {
			var stopped bool
			end, requested, stopped = s.watch(ctx, c, p, &callers)
			if stopped {
				return
			}
		}

		if end.ran >= s.cfg.StableAfter {
			crashes = 0
		}
		switch {
		case requested:
			s.endEvent(c, end, true, "starting again")
			s.setState(c, StateStarting, end.status)
			continue
		case end.code == DoNotRestart:
			end.status += " (do not restart)"
			s.con.logf("%s: %s", name, end.status)
			s.endEvent(c, end, false, "left failed")
			s.setState(c, StateFailed, end.status)
		case !c.spec.Restart.restarts(end.code):
			s.con.logf("%s: %s; restart policy %v", name, end.status, c.spec.Restart)
			s.endEvent(c, end, false, "left stopped (restart policy "+c.spec.Restart.String()+")")
			s.setState(c, StateStopped, end.status)
		default:
			delay := backoff(crashes, s.cfg.MinBackoff, s.cfg.MaxBackoff)
			crashes++
			if delay == 0 {
				s.con.logf("%s: %s; restarting", name, end.status)
				s.endEvent(c, end, false, "restarting")
				s.setState(c, StateStarting, end.status)
				continue
			}
			s.con.logf("%s: %s; restarting in %v", name, end.status, delay)
			s.endEvent(c, end, false, fmt.Sprintf("restarting in %v (repeated crash)", delay))
			s.setState(c, StateBackoff, end.status)
			t := s.cfg.Clock.NewTimer(delay)
			select {
			case <-t.C():
			case reply := <-c.ctl:
				t.Stop()
				callers = append(callers, reply)
			case <-ctx.Done():
				t.Stop()
				s.setState(c, StateStopped, "")
				return
			}
			continue
		}

		// Stopped or failed for good: only a Restart brings it back.
		select {
		case reply := <-c.ctl:
			callers = append(callers, reply)
		case <-ctx.Done():
			return
		}
	}
}

// watch waits for the end of c's process p: its exit, a Restart (added to
// callers; requested is true), a hang (see hang.go), or the end of ctx, when
// it stops p and c for good (stopped is true).
func (s *Supervisor) watch(ctx context.Context, c *component, p *process, callers *[]chan error) (end ending, requested, stopped bool) {
	name := c.spec.Name
	for {
		hang, stopHang := s.hangTimer(c)
		select {
		case err := <-p.exited:
			stopHang()
			return s.ended(p, err), false, false
		case reply := <-c.ctl:
			stopHang()
			s.con.logf("%s: restart requested", name)
			*callers = append(*callers, reply)
			return s.terminate(c, p), true, false
		case <-hang:
			stopHang()
			if end, hung := s.killIfHung(c, p); hung {
				return end, false, false
			}
		case <-ctx.Done():
			stopHang()
			s.awaitDependents(c)
			end = s.terminate(c, p)
			s.con.logf("%s: stopped: %s", name, end.status)
			s.endEvent(c, end, true, "stopped (the appliance stops)")
			s.setState(c, StateStopped, end.status)
			return end, false, true
		}
	}
}

// answer replies to Restart callers.
func answer(callers []chan error, err error) {
	for _, r := range callers {
		r <- err
	}
}

// awaitDeps waits until every dependency of c is running, answering Restart
// callers meanwhile with ErrWaiting. It returns false if ctx ends first.
func (s *Supervisor) awaitDeps(ctx context.Context, c *component, callers *[]chan error) bool {
	logged := false
	for {
		s.mu.Lock()
		var missing []string
		for _, d := range c.deps {
			if d.state != StateRunning || d.proc == nil {
				missing = append(missing, d.spec.Name)
			}
		}
		if len(missing) > 0 && c.state != StateStarting {
			c.state = StateStarting
			s.changedLocked()
		}
		changed := s.changed
		s.mu.Unlock()
		if len(missing) == 0 {
			return true
		}

		why := fmt.Errorf("%w: %s", ErrWaiting, strings.Join(missing, ", "))
		if !logged {
			s.con.logf("%s: %v", c.spec.Name, why)
			logged = true
		}
		answer(*callers, why)
		*callers = nil
		select {
		case <-changed:
		case reply := <-c.ctl:
			*callers = append(*callers, reply)
		case <-ctx.Done():
			return false
		}
	}
}

// start starts a new process for c and a goroutine waiting for its end.
func (s *Supervisor) start(ctx context.Context, c *component) (*process, error) {
	// A new attempt: whatever an earlier process said about its readiness
	// no longer counts, and its ready function no longer works.
	s.mu.Lock()
	c.attempt++
	c.announced = false
	c.lastAlive, c.stallExcuses = time.Time{}, 0
	attempt := c.attempt
	s.mu.Unlock()
	ready := func() { s.announce(c, attempt) }

	if c.spec.Prepare != nil {
		if err := c.spec.Prepare(); err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if c.spec.ExtraFiles != nil {
		fs, err := c.spec.ExtraFiles(ready)
		if err != nil {
			return nil, fmt.Errorf("extra files: %w", err)
		}
		files = fs
	}
	if c.spec.Liveness != nil {
		c.spec.Liveness(func() { s.alive(c, attempt) })
	}
	env := append(os.Environ(), c.spec.Env...)
	var notifyR *os.File // the read end of the readiness pipe, if any
	if c.spec.Ready == ReadyNotify {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("readiness pipe: %w", err)
		}
		notifyR = r
		files = append(files, w) // closed here once the child has it
		env = append(env, fmt.Sprintf("%s=%d", notify.EnvFD, 3+len(files)-1))
	}

	out := &lineWriter{con: s.con, prefix: c.spec.Name}
	cmd := exec.Command(c.spec.Path, c.spec.Args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out // the same writer: one pipe, one order
	cmd.ExtraFiles = files
	cmd.WaitDelay = pipeDrain
	cmd.SysProcAttr = sysProcAttr(c.spec)

	// mu is held across the fork so that Owns cannot answer for the new
	// pid before it is recorded, and so that no start follows the moment
	// awaitDependents saw no dependent process.
	s.mu.Lock()
	if ctx.Err() != nil {
		s.mu.Unlock()
		if notifyR != nil {
			notifyR.Close()
		}
		return nil, errStopping
	}
	if err := startOn(cmd, c.spec.CPUs); err != nil {
		s.mu.Unlock()
		if notifyR != nil {
			notifyR.Close()
		}
		return nil, err
	}
	c.proc = cmd.Process
	c.generation++
	if c.generation > 1 {
		c.restarts++
	}
	c.state = StateRunning
	c.started = s.cfg.Clock.Now()
	s.startEventLocked(c)
	s.changedLocked()
	// Logged under mu, so that the console shows starts in their order.
	s.con.logf("%s: started pid %d, generation %d", c.spec.Name, cmd.Process.Pid, c.generation)
	s.mu.Unlock()

	readerDone := make(chan struct{})
	if notifyR != nil {
		go func() {
			defer close(readerDone)
			awaitReady(notifyR, ready)
		}()
	} else {
		close(readerDone)
	}
	p := &process{cmd: cmd, started: s.cfg.Clock.Now(), exited: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		out.Flush()
		if notifyR != nil {
			// Ends the reader, should a grandchild still hold the
			// write end.
			notifyR.Close()
		}
		<-readerDone
		s.mu.Lock()
		c.proc = nil
		s.changedLocked()
		s.mu.Unlock()
		p.exited <- err
	}()
	return p, nil
}

// awaitReady reads a process's readiness pipe until it ends, and calls ready
// when the process says it is (notify.Message).
func awaitReady(r io.Reader, ready func()) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if sc.Text()+"\n" == notify.Message {
			ready()
		}
	}
}

// ended describes the end of p, whose Wait returned err.
func (s *Supervisor) ended(p *process, err error) ending {
	e := ending{code: -1, ran: s.cfg.Clock.Now().Sub(p.started), pid: p.cmd.Process.Pid}
	if ps := p.cmd.ProcessState; ps != nil {
		e.status = ps.String()
		e.code = ps.ExitCode()
		if e.code > 0 {
			e.status = exitcode.Describe(e.code) // "exit status 3 (broken channel)"
		}
	} else {
		e.status = err.Error()
	}
	return e
}

// terminate stops p: SIGTERM, SIGKILL after StopTimeout, and gives up on it
// killWait later.
func (s *Supervisor) terminate(c *component, p *process) ending {
	p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already ended
	grace := s.cfg.Clock.NewTimer(s.cfg.StopTimeout)
	defer grace.Stop()
	select {
	case err := <-p.exited:
		return s.ended(p, err)
	case <-grace.C():
	}

	s.con.logf("%s: still running %v after SIGTERM; killing", c.spec.Name, s.cfg.StopTimeout)
	p.cmd.Process.Signal(syscall.SIGKILL)
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case err := <-p.exited:
		return s.ended(p, err)
	case <-t.C:
	}

	lost := fmt.Sprintf("%s (pid %d)", c.spec.Name, p.cmd.Process.Pid)
	s.con.logf("%s: not reaped %v after SIGKILL; giving up on it", c.spec.Name, killWait)
	s.mu.Lock()
	s.lost = append(s.lost, lost)
	s.mu.Unlock()
	return ending{status: "not reaped after SIGKILL", code: -1, pid: p.cmd.Process.Pid}
}

// awaitDependents waits, while Run is stopping, until no dependent of c has
// a process, so that c outlives everything that uses it. The wait is bounded
// by the time the dependents' own stop may take.
func (s *Supervisor) awaitDependents(c *component) {
	bound := time.NewTimer(s.cfg.StopTimeout + killWait)
	defer bound.Stop()
	for {
		s.mu.Lock()
		var up []string
		for _, d := range c.dependents {
			if d.proc != nil {
				up = append(up, d.spec.Name)
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(up) == 0 {
			return
		}
		select {
		case <-changed:
		case <-bound.C:
			s.con.logf("%s: stopping before its dependents %s", c.spec.Name, strings.Join(up, ", "))
			return
		}
	}
}

// sysProcAttr is the identity a process of spec starts with: its own uid
// and gid, no supplementary groups, and only its capabilities; nil (the
// supervisor's own) when spec has no uid.
func sysProcAttr(spec Spec) *syscall.SysProcAttr {
	if spec.UID == 0 {
		return nil
	}
	return &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: []uint32{}},
		AmbientCaps: spec.Caps,
	}
}
