package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/boot/journal"
	"keepnet/kernel/exitcode"
)

// Policy says which exits of a component are followed by a restart.
type Policy int

const (
	Always    Policy = iota // restart after any exit
	OnFailure               // restart unless the exit status is 0
	Never                   // never restart
)

func (p Policy) String() string {
	switch p {
	case Always:
		return "always"
	case OnFailure:
		return "on-failure"
	case Never:
		return "never"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// restarts reports whether an exit with the given status (-1 for a signal)
// is followed by a restart.
func (p Policy) restarts(code int) bool {
	return p == Always || p == OnFailure && code != 0
}

// Readiness says when a running component counts as ready (see Ready).
type Readiness int

const (
	// ReadyRunning: ready as soon as its process runs.
	ReadyRunning Readiness = iota
	// ReadyNotify: ready once its process says so (package
	// kernel/notify): by writing notify.Message on the pipe it inherits
	// for that purpose, or through the ready function its ExtraFiles
	// hook was given (init's hub calls it when the wiring socket says
	// "up"). Each start is a new process that must say it again.
	ReadyNotify
)

func (r Readiness) String() string {
	switch r {
	case ReadyRunning:
		return "running"
	case ReadyNotify:
		return "notify"
	}
	return fmt.Sprintf("Readiness(%d)", int(r))
}

// DoNotRestart is the exit status (EX_CONFIG from sysexits.h) by which a
// component says that restarting it will not help.
const DoNotRestart = exitcode.Config

// States of a component, as Status reports them.
const (
	StateStarting = "starting" // waiting for its dependencies, or not started yet
	StateRunning  = "running"  // its process exists
	StateBackoff  = "backoff"  // exited; the restart waits for its back-off delay
	StateStopped  = "stopped"  // exited and not restarted (policy, or shutdown)
	StateFailed   = "failed"   // exited with DoNotRestart
)

// Defaults for the zero values of Config's durations.
const (
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	DefaultStableAfter = 10 * time.Second
	DefaultStopTimeout = 5 * time.Second
)

const (
	// killWait bounds the wait for a process after SIGKILL. Only a process
	// stuck in the kernel outlives it; the supervisor then gives up on it.
	killWait = 5 * time.Second
	// pipeDrain bounds how long output is still copied after a process has
	// exited, should a grandchild hold its stdout open (exec.Cmd.WaitDelay).
	pipeDrain = time.Second
)

// Spec is one row of the component table.
type Spec struct {
	Name    string   // unique; the prefix of its console lines
	Path    string   // executable; looked up in PATH if it has no slash
	Args    []string // argv[1:]
	Env     []string // "KEY=value" appended to the supervisor's environment
	Deps    []string // names that must be running before this one starts
	Restart Policy
	Ready   Readiness // when a running process of it counts as ready

	// UID and GID, unless UID is 0, are the credentials the process runs
	// with (no supplementary groups), and Caps (CAP_* numbers) the only
	// capabilities it keeps, as ambient capabilities: see kernel/sandbox.
	UID, GID uint32
	Caps     []uintptr
	// CPUs, if not empty, are the only processors the process runs on
	// (sched_setaffinity(2); all its threads inherit it).
	CPUs []int
	// Prepare, if not nil, is called before every start, with the
	// supervisor's privileges: it hands the process the files it must
	// open by path (a driver's device files). An error fails the start.
	Prepare func() error

	// ExtraFiles, if not nil, is called before every start; the files it
	// returns become the child's descriptors 3, 4, ... The supervisor closes
	// them once the child has started (or failed to), so return files whose
	// descriptors the child may own: dup those you keep.
	//
	// ready is that start's readiness notification: calling it (at any
	// time, from any goroutine, any number of times) says that the process
	// of this start is ready, as its notify.Message would. Once a later
	// start has begun it does nothing.
	ExtraFiles func(ready func()) ([]*os.File, error)

	// Liveness, if not nil, is called before every start, after
	// ExtraFiles, with that start's alive function: calling it says that
	// the process of this start made progress (init's hub calls it for
	// every pong, kernel/wiring "Hang detection"). With Config.HangAfter
	// set, a process that said it once and then not for HangAfter is
	// killed as hung. Once a later start has begun, alive does nothing.
	Liveness func(alive func())
}

// Config is what New needs.
type Config struct {
	Specs []Spec

	// Console receives every line the components print, prefixed by
	// "name: ", and the supervisor's own lines, prefixed by "supervisor: ".
	// Each line is a single Write. Nil discards them.
	Console io.Writer

	// Clock is the time source; nil means the system clock.
	Clock Clock

	// MinBackoff and MaxBackoff bound the delay before restarting a
	// component that crashes repeatedly (defaults 100ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	// StableAfter is how long a run must last to reset the back-off
	// (default 10s).
	StableAfter time.Duration
	// StopTimeout is the grace period between SIGTERM and SIGKILL when a
	// component is stopped (default 5s).
	StopTimeout time.Duration
	// HangAfter is how long a component with a Liveness hook may go
	// without a sign of life before it is killed as hung (longer while
	// every component answers slowly, hang.go); 0 disables hang detection.
	HangAfter time.Duration

	// Journal, if not nil, receives every console line (as Console does,
	// by component) and an event for every start, restart, exit, crash,
	// hang, stop, signal and readiness, stamped by Clock (events.go).
	Journal *journal.Journal
}

// State is a component as Status reports it.
type State struct {
	Name       string
	PID        int    // 0 when no process runs
	State      string // one of the State* constants
	Restarts   int    // starts after the first
	Generation int    // 1 after the first start, +1 at every restart
	LastExit   string // how the last process ended: "exit status 1", "signal: killed", "hung ..."
	Hangs      int    // processes killed because they hung
	// Ready: its process runs and is ready (by its Readiness), or it
	// stopped for good by its policy.
	Ready bool
	// Started is when the running process started (Clock time); zero
	// when none runs.
	Started time.Time
}

// Errors returned, wrapped in an *Error, by Kill and Restart.
var (
	ErrUnknown    = errors.New("unknown component")
	ErrNotRunning = errors.New("not running")
	ErrWaiting    = errors.New("waiting for dependencies")
	ErrTimeout    = errors.New("timed out")
)

// Error is a failed operation on a named component.
type Error struct {
	Op   string // "kill" or "restart"
	Name string
	Err  error
}

func (e *Error) Error() string { return "supervisor: " + e.Op + " " + e.Name + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// component is one row of the table and what the supervisor knows of it.
type component struct {
	spec       Spec
	deps       []*component
	dependents []*component

	// ctl carries Restart requests to the goroutine supervising the
	// component. It is unbuffered: a request it accepted is always answered
	// on the reply channel, which has room for the answer.
	ctl chan chan error

	// Guarded by Supervisor.mu.
	state      string
	proc       *os.Process // the running process; nil once reaped
	restarts   int
	generation int
	lastExit   string
	attempt    int  // starts tried, counting those that failed; names a start's ready function
	announced  bool // the process of start attempt said it is ready
	hangs      int
	// lastAlive is the Clock time of the current process's last sign of
	// life (Spec.Liveness); zero until its first.
	lastAlive time.Time
	// stallExcuses counts the hang checks since lastAlive that found
	// another component silent too (hang.go).
	stallExcuses int
	// started is the Clock time the running process started.
	started time.Time
	// downSince is the Clock time the previous process ended, until the
	// next one is ready (the recovery the journal reports); downWhy is
	// why it ended, the reason of the restart.
	downSince time.Time
	downWhy   string
}

// Supervisor starts, watches and restarts the components of one table.
type Supervisor struct {
	// Read-only after New.
	cfg    Config // durations and Clock filled in
	comps  []*component
	order  []*component // dependencies before dependents
	byName map[string]*component
	con    *console

	// mu guards the run-time fields of every component and the fields below.
	// Nothing under mu blocks, except starting a process: a start holds mu
	// from before the fork until the pid is recorded (and logged), so Owns
	// never misses a child. Lock order: mu before console.mu.
	mu      sync.Mutex
	changed chan struct{}   // closed and replaced at every change of a component
	runCtx  context.Context // nil until Run; Done once Run is stopping
	running bool            // Run is supervising
	lost    []string        // processes that SIGKILL did not end in killWait
	// slowGap is the slowest gap between two signs of life of a component,
	// noted at slowSince (hang.go: the limit follows the machine's pace).
	slowGap   time.Duration
	slowSince time.Time
}

// New checks the table and returns a supervisor for it: names must be unique,
// non-empty and free of blanks and colons; paths non-empty; every dependency
// must exist; and dependencies must not form a cycle (the error names it).
func New(cfg Config) (*Supervisor, error) {
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.MinBackoff, DefaultMinBackoff},
		{&cfg.MaxBackoff, DefaultMaxBackoff},
		{&cfg.StableAfter, DefaultStableAfter},
		{&cfg.StopTimeout, DefaultStopTimeout},
		{&cfg.HangAfter, 0}, // zero: no hang detection
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("supervisor: negative duration %v", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MinBackoff > cfg.MaxBackoff {
		return nil, fmt.Errorf("supervisor: MinBackoff %v > MaxBackoff %v", cfg.MinBackoff, cfg.MaxBackoff)
	}

	s := &Supervisor{
		cfg:     cfg,
		byName:  map[string]*component{},
		con:     &console{w: cfg.Console, j: cfg.Journal},
		changed: make(chan struct{}),
	}
	for _, sp := range cfg.Specs {
		switch {
		case sp.Name == "":
			return nil, errors.New("supervisor: component with no name")
		case strings.ContainsFunc(sp.Name, func(r rune) bool { return r == ':' || r <= ' ' }):
			return nil, fmt.Errorf("supervisor: component name %q has a blank or colon", sp.Name)
		case s.byName[sp.Name] != nil:
			return nil, fmt.Errorf("supervisor: duplicate component %q", sp.Name)
		case sp.Path == "":
			return nil, fmt.Errorf("supervisor: component %q has no path", sp.Name)
		case sp.Restart < Always || sp.Restart > Never:
			return nil, fmt.Errorf("supervisor: component %q: bad restart %v", sp.Name, sp.Restart)
		}
		sp.Args = slices.Clone(sp.Args)
		sp.Env = slices.Clone(sp.Env)
		sp.Deps = slices.Clone(sp.Deps)
		sp.Caps = slices.Clone(sp.Caps)
		c := &component{spec: sp, ctl: make(chan chan error), state: StateStarting}
		s.comps = append(s.comps, c)
		s.byName[sp.Name] = c
	}
	for _, c := range s.comps {
		for _, name := range c.spec.Deps {
			d := s.byName[name]
			if d == nil {
				return nil, fmt.Errorf("supervisor: component %q depends on unknown %q", c.spec.Name, name)
			}
			if slices.Contains(c.deps, d) {
				continue
			}
			c.deps = append(c.deps, d)
			d.dependents = append(d.dependents, c)
		}
	}
	order, err := dependencyOrder(s.comps)
	if err != nil {
		return nil, err
	}
	s.order = order
	return s, nil
}

// dependencyOrder sorts comps so that dependencies come first, keeping table
// order otherwise, or names a cycle.
func dependencyOrder(comps []*component) ([]*component, error) {
	const (
		unvisited = iota
		visiting  // on the current path
		done
	)
	mark := map[*component]int{}
	var (
		order []*component
		path  []*component
		visit func(c *component) error
	)
	visit = func(c *component) error {
		switch mark[c] {
		case done:
			return nil
		case visiting:
			i := slices.Index(path, c)
			var names []string
			for _, p := range path[i:] {
				names = append(names, p.spec.Name)
			}
			names = append(names, c.spec.Name)
			return fmt.Errorf("supervisor: dependency cycle: %s", strings.Join(names, " -> "))
		}
		mark[c] = visiting
		path = append(path, c)
		for _, d := range c.deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		mark[c] = done
		order = append(order, c)
		return nil
	}
	for _, c := range comps {
		if err := visit(c); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Run starts every component in dependency order and supervises them until
// ctx is done. Then it stops them all, dependents before their dependencies
// (SIGTERM, SIGKILL after StopTimeout), and returns once every child is
// reaped and every goroutine it started has ended. The error is nil unless
// Run was called before, or a process outlived SIGKILL.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.runCtx != nil {
		s.mu.Unlock()
		return errors.New("supervisor: Run called twice")
	}
	s.runCtx = ctx
	s.running = true
	s.mu.Unlock()

	var names []string
	for _, c := range s.order {
		names = append(names, c.spec.Name)
	}
	s.con.logf("starting %s", strings.Join(names, ", "))

	var wg sync.WaitGroup
	for _, c := range s.order {
		wg.Go(func() { s.supervise(ctx, c) })
	}
	<-ctx.Done()
	s.con.logf("stopping")
	wg.Wait()

	s.mu.Lock()
	s.running = false
	lost := s.lost
	s.mu.Unlock()
	if len(lost) > 0 {
		return fmt.Errorf("supervisor: not reaped after SIGKILL: %s", strings.Join(lost, ", "))
	}
	s.con.logf("all stopped")
	return nil
}

// Status returns every component's state, in table order.
func (s *Supervisor) Status() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := make([]State, 0, len(s.comps))
	for _, c := range s.comps {
		st = append(st, State{
			Name:       c.spec.Name,
			PID:        c.pidLocked(),
			State:      c.state,
			Restarts:   c.restarts,
			Generation: c.generation,
			LastExit:   c.lastExit,
			Hangs:      c.hangs,
			Ready:      s.running && c.readyLocked(),
			Started:    c.startedLocked(),
		})
	}
	return st
}

// Ready reports whether Run is supervising and every component is ready:
// running and, if its Readiness is ReadyNotify, said so; or stopped for
// good by its policy (Never, or OnFailure after status 0). A failed,
// backing-off or not yet started component makes it false, and so does a
// restarted one until its new process is ready.
func (s *Supervisor) Ready() bool {
	return len(s.NotReady()) == 0
}

// NotReady says what Ready waits for: one line per component that is not
// ready, naming it and saying why, in table order; or "supervisor: not
// running" when Run is not supervising. It is empty when Ready is true.
func (s *Supervisor) NotReady() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return []string{"supervisor: not running"}
	}
	var why []string
	for _, c := range s.comps {
		if c.readyLocked() {
			continue
		}
		w := c.spec.Name + ": " + c.state
		switch {
		case c.state == StateRunning && c.proc != nil:
			w = c.spec.Name + ": running, not ready yet"
		case c.lastExit != "":
			w += " (" + c.lastExit + ")"
		}
		why = append(why, w)
	}
	return why
}

// Changed returns a channel that is closed at the next change of any
// component (its state, its process, its readiness): a caller waiting for
// Ready calls Changed, then Ready, then waits on the channel.
func (s *Supervisor) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// readyLocked reports whether c counts as ready. Needs s.mu.
func (c *component) readyLocked() bool {
	if c.state == StateStopped {
		return true // for good by its policy; while Run runs, only so
	}
	if c.state != StateRunning || c.proc == nil {
		return false
	}
	return c.spec.Ready == ReadyRunning || c.announced
}

// announce records that the process of start attempt says it is ready.
func (s *Supervisor) announce(c *component, attempt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.attempt != attempt || c.announced {
		return
	}
	c.announced = true
	s.readyEventLocked(c)
	s.changedLocked()
}

// Owns reports whether pid is a child of the supervisor that it has not yet
// reaped: init's reaper must leave such a pid alone. Owns waits for a start
// in progress, so a child is owned from the moment it exists. A nil
// Supervisor owns nothing.
func (s *Supervisor) Owns(pid int) bool {
	if s == nil || pid <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.comps {
		if c.pidLocked() == pid {
			return true
		}
	}
	return false
}

// Kill sends SIGKILL to the named component's process at once; its restart
// policy then applies as to any crash.
func (s *Supervisor) Kill(name string) error {
	return s.Signal(name, syscall.SIGKILL)
}

// Signal sends sig to the named component's process. Whatever follows is
// the component's business and the supervisor's rules: an exit is a crash,
// and a stopped process (SIGSTOP) answers nothing, so hang detection kills
// it.
func (s *Supervisor) Signal(name string, sig syscall.Signal) error {
	c := s.byName[name]
	if c == nil {
		return &Error{"kill", name, ErrUnknown}
	}
	s.mu.Lock()
	proc := c.proc
	s.mu.Unlock()
	if proc == nil {
		return &Error{"kill", name, ErrNotRunning}
	}
	s.con.logf("%s: %v requested", name, sigName(sig))
	s.cfg.Journal.Add(journal.Event{Time: s.cfg.Clock.Now(), Component: name, Kind: journal.Signal, PID: proc.Pid,
		Reason: unix.SignalName(sig) + " requested"})
	// Signal goes through the process's pidfd: a process reaped meanwhile
	// gives ErrProcessDone, never a signal to a recycled pid.
	if err := proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return &Error{"kill", name, err}
	}
	return nil
}

// sigName is "kill" for SIGKILL (as the console always said) and the
// signal's description otherwise.
func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "kill"
	}
	return "signal " + sig.String()
}

// Restart stops the named component gracefully (SIGTERM, SIGKILL after
// StopTimeout) and starts it again at once, without a back-off; a component
// in back-off, stopped or failed is started at once. It returns when the new
// process has started. It fails with ErrWaiting if a dependency is not
// running, and with ErrNotRunning unless Run is supervising.
func (s *Supervisor) Restart(name string) error {
	c := s.byName[name]
	if c == nil {
		return &Error{"restart", name, ErrUnknown}
	}
	s.mu.Lock()
	ctx, running := s.runCtx, s.running
	s.mu.Unlock()
	if !running {
		return &Error{"restart", name, ErrNotRunning}
	}
	bound := time.NewTimer(s.cfg.StopTimeout + killWait + 10*time.Second)
	defer bound.Stop()
	reply := make(chan error, 1)
	select {
	case c.ctl <- reply:
	case <-ctx.Done():
		return &Error{"restart", name, ErrNotRunning}
	case <-bound.C:
		return &Error{"restart", name, ErrTimeout}
	}
	select {
	case err := <-reply:
		if err != nil {
			return &Error{"restart", name, err}
		}
		return nil
	case <-bound.C:
		return &Error{"restart", name, ErrTimeout}
	}
}

// pidLocked is the pid of the component's process, 0 if none. Needs s.mu.
func (c *component) pidLocked() int {
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid
}

// changedLocked wakes everyone waiting for a component to change. Needs s.mu.
func (s *Supervisor) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// setState records a component's new state (and how its process ended,
// unless lastExit is empty).
func (s *Supervisor) setState(c *component, state, lastExit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.state = state
	if lastExit != "" {
		c.lastExit = lastExit
	}
	s.changedLocked()
}
