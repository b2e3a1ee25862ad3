package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNewChecksTable(t *testing.T) {
	spec := func(name string, deps ...string) Spec { return Spec{Name: name, Path: "/bin/true", Deps: deps} }
	tests := []struct {
		name  string
		specs []Spec
		want  string // substring of the error; "" for success
	}{
		{"ok", []Spec{spec("a"), spec("b", "a"), spec("c", "a", "b")}, ""},
		{"empty table", nil, ""},
		{"no name", []Spec{spec("")}, "no name"},
		{"blank in name", []Spec{spec("a b")}, "blank or colon"},
		{"colon in name", []Spec{spec("a:")}, "blank or colon"},
		{"duplicate", []Spec{spec("a"), spec("a")}, `duplicate component "a"`},
		{"no path", []Spec{{Name: "a"}}, `"a" has no path`},
		{"bad policy", []Spec{{Name: "a", Path: "/bin/true", Restart: 7}}, "bad restart"},
		{"unknown dep", []Spec{spec("a", "zz")}, `"a" depends on unknown "zz"`},
		{"self cycle", []Spec{spec("a", "a")}, "dependency cycle: a -> a"},
		{"cycle", []Spec{spec("x"), spec("a", "b"), spec("b", "c"), spec("c", "x", "a")},
			"dependency cycle: a -> b -> c -> a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Specs: tt.specs})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New(%s) = %v, want nil", tt.name, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New(%s) = %v, want error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestNewChecksDurations(t *testing.T) {
	for _, cfg := range []Config{
		{MinBackoff: time.Second, MaxBackoff: time.Millisecond},
		{StopTimeout: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

func TestBackoff(t *testing.T) {
	const min, max = 100 * time.Millisecond, time.Second
	tests := []struct {
		crashes int
		want    time.Duration
	}{
		{0, 0}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond}, {5, time.Second}, {6, time.Second}, {1000, time.Second},
	}
	for _, tt := range tests {
		if got := backoff(tt.crashes, min, max); got != tt.want {
			t.Errorf("backoff(%d, %v, %v) = %v, want %v", tt.crashes, min, max, got, tt.want)
		}
	}
}

// TestExitPolicy runs one fake per case and checks the state it settles in.
// Cases that restart are observed when the second exit asks for a back-off.
func TestExitPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode   string
		policy Policy
		want   State // PID ignored
	}{
		{"exit0", Never, State{State: StateStopped, Generation: 1, LastExit: "exit status 0", Ready: true}},
		{"crash", Never, State{State: StateStopped, Generation: 1, LastExit: "exit status 1", Ready: true}},
		{"exit0", OnFailure, State{State: StateStopped, Generation: 1, LastExit: "exit status 0", Ready: true}},
		{"crash", OnFailure, State{State: StateBackoff, Restarts: 1, Generation: 2, LastExit: "exit status 1"}},
		{"exit0", Always, State{State: StateBackoff, Restarts: 1, Generation: 2, LastExit: "exit status 0"}},
		{"crash", Always, State{State: StateBackoff, Restarts: 1, Generation: 2, LastExit: "exit status 1"}},
		{"exit78", Always, State{State: StateFailed, Generation: 1, LastExit: "exit status 78 (configuration error) (do not restart)"}},
		{"exit78", Never, State{State: StateFailed, Generation: 1, LastExit: "exit status 78 (configuration error) (do not restart)"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.policy.String(), func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			spec := fakeSpec(t, "a", tt.mode)
			spec.Restart = tt.policy
			h := run(t, Config{Specs: []Spec{spec}, Clock: clock})
			tt.want.Name = "a"
			var got State
			if tt.want.State == StateBackoff {
				if d := clock.next(t).d; d != DefaultMinBackoff {
					t.Errorf("first back-off = %v, want %v", d, DefaultMinBackoff)
				}
				got = h.state("a")
			} else {
				got = h.waitFor("a", "settled", func(st State) bool {
					return st.State == StateStopped || st.State == StateFailed
				})
				clock.none(t)
			}
			got.PID = 0
			if got != tt.want {
				t.Errorf("%s with policy %v: Status = %+v, want %+v", tt.mode, tt.policy, got, tt.want)
			}
		})
	}
}

// A component whose channel broke exits with its own status: the
// supervisor says so by name and restarts it as after any crash.
func TestBrokenChannelExit(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	h := run(t, Config{Specs: []Spec{fakeSpec(t, "a", "broken")}, Clock: clock})
	clock.next(t) // the second exit in a row waits for its back-off
	want := State{Name: "a", State: StateBackoff, Restarts: 1, Generation: 2, LastExit: "exit status 3 (broken channel)"}
	got := h.state("a")
	got.PID = 0
	if got != want {
		t.Errorf("Status = %+v, want %+v", got, want)
	}
	if got := h.con.lines("supervisor: a: exit status 3 (broken channel); restarting"); len(got) != 2 {
		t.Errorf("supervisor's lines about a's exits = %q, want two naming the broken channel\nconsole:\n%s", got, h.con)
	}
}

// TestBackoffGrows checks the delays a crash loop asks of the clock.
func TestBackoffGrows(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	h := run(t, Config{Specs: []Spec{fakeSpec(t, "a", "crash")}, Clock: clock, MaxBackoff: time.Second})
	want := []time.Duration{
		100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, time.Second, time.Second, time.Second,
	}
	var got []time.Duration
	for i := range want {
		timer := clock.next(t)
		got = append(got, timer.d)
		if i < len(want)-1 {
			timer.fire()
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("back-off delays = %v, want %v", got, want)
	}
	// The first crash restarted at once; each fired timer started one more.
	st := h.state("a")
	if st.State != StateBackoff || st.Generation != 8 || st.Restarts != 7 || st.LastExit != "exit status 1" {
		t.Errorf("Status(a) = %+v, want backoff, generation 8, 7 restarts, exit status 1", st)
	}
}

// TestBackoffResets checks that a run longer than StableAfter makes the next
// crash restart at once, and the one after wait MinBackoff again.
func TestBackoffResets(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	h := run(t, Config{Specs: []Spec{fakeSpec(t, "a", "hang")}, Clock: clock, StableAfter: 10 * time.Second})

	steps := []struct {
		ranFor    time.Duration // clock time the run lasts before Kill
		wantDelay time.Duration // back-off asked for; 0: restarted at once
	}{
		{0, 0},                                // first crash
		{0, 100 * time.Millisecond},           // repeated crash
		{0, 200 * time.Millisecond},           // and again
		{10 * time.Second, 0},                 // after a stable run: at once
		{time.Second, 100 * time.Millisecond}, // back-off starts over
	}
	for i, step := range steps {
		gen := i + 1
		h.waitRunning("a", gen)
		clock.advance(step.ranFor)
		if err := h.sup.Kill("a"); err != nil {
			t.Fatalf("Kill(a) = %v, want nil", err)
		}
		if step.wantDelay != 0 {
			if d := clock.next(t).d; d != step.wantDelay {
				t.Fatalf("step %d: back-off = %v, want %v", i, d, step.wantDelay)
			}
			// Do not fire: Restart ends the back-off and starts at once.
			if err := h.sup.Restart("a"); err != nil {
				t.Fatalf("Restart(a) in back-off = %v, want nil", err)
			}
		}
		st := h.waitRunning("a", gen+1)
		if st.LastExit != "signal: killed" || st.Restarts != gen {
			t.Errorf("step %d: Status(a) = %+v, want LastExit signal: killed, %d restarts", i, st, gen)
		}
		clock.none(t)
	}
}

func TestKillRestartsHungComponent(t *testing.T) {
	t.Parallel()
	h := run(t, Config{Specs: []Spec{fakeSpec(t, "a", "hang")}})
	first := h.waitRunning("a", 1)
	if err := h.sup.Kill("a"); err != nil {
		t.Fatalf("Kill(a) = %v, want nil", err)
	}
	got := h.waitRunning("a", 2)
	want := State{Name: "a", PID: got.PID, State: StateRunning, Restarts: 1, Generation: 2, LastExit: "signal: killed", Ready: true, Started: got.Started}
	if got.Started.IsZero() {
		t.Errorf("after Kill: Status(a).Started is zero while it runs")
	}
	if got != want {
		t.Errorf("after Kill: Status(a) = %+v, want %+v", got, want)
	}
	if got.PID == first.PID {
		t.Errorf("after Kill: PID = %d, the killed process's", got.PID)
	}
	if pidAlive(first.PID) {
		t.Errorf("killed pid %d still exists", first.PID)
	}
}

// TestRestart restarts a component that stops on SIGTERM, and one that
// ignores it and is killed when the grace period, on the fake clock, ends.
func TestRestart(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	specs := []Spec{fakeSpec(t, "polite", "graceful"), fakeSpec(t, "deaf", "stubborn")}
	log := withLog(t, specs)
	h := run(t, Config{Specs: specs, Clock: clock, StopTimeout: 3 * time.Second})
	h.waitRunning("polite", 1)
	h.waitRunning("deaf", 1)
	waitLog(t, log, "polite up")
	waitLog(t, log, "deaf up")

	if err := h.sup.Restart("polite"); err != nil {
		t.Fatalf("Restart(polite) = %v, want nil", err)
	}
	if d := clock.next(t).d; d != 3*time.Second {
		t.Errorf("Restart(polite) grace = %v, want 3s", d)
	}
	st := h.state("polite")
	if st.State != StateRunning || st.Generation != 2 || st.Restarts != 1 || st.LastExit != "exit status 0" {
		t.Errorf("after Restart: Status(polite) = %+v, want running, generation 2, 1 restart, exit status 0", st)
	}
	waitLog(t, log, "polite term")

	done := make(chan error, 1)
	go func() { done <- h.sup.Restart("deaf") }()
	grace := clock.next(t)
	select {
	case err := <-done:
		t.Fatalf("Restart(deaf) = %v before the grace period ended", err)
	case <-time.After(50 * time.Millisecond):
	}
	grace.fire()
	if err := <-done; err != nil {
		t.Fatalf("Restart(deaf) = %v, want nil", err)
	}
	st = h.state("deaf")
	if st.State != StateRunning || st.Generation != 2 || st.LastExit != "signal: killed" {
		t.Errorf("after Restart: Status(deaf) = %+v, want running, generation 2, signal: killed", st)
	}
	// A restart is no crash: a crash now restarts at once.
	h.waitRunning("polite", 2)
	if err := h.sup.Kill("polite"); err != nil {
		t.Fatal(err)
	}
	h.waitRunning("polite", 3)
	clock.none(t)
	waitLog(t, log, "deaf up", 2) // deaf ignores SIGTERM again

	// Stopping asks for a grace period per component; deaf needs its end.
	h.cancel()
	for {
		select {
		case <-h.done:
			if h.runErr != nil {
				t.Fatalf("Run = %v, want nil", h.runErr)
			}
			if st := h.state("deaf"); st.LastExit != "signal: killed" {
				t.Errorf("after Run: Status(deaf) = %+v, want signal: killed", st)
			}
			return
		case timer := <-clock.requests:
			timer.fire()
		case <-time.After(hangWait):
			t.Fatalf("Run did not return %v after cancel; console:\n%s", hangWait, h.con)
		}
	}
}

func TestRestartStartsFailedComponent(t *testing.T) {
	t.Parallel()
	h := run(t, Config{Specs: []Spec{fakeSpec(t, "a", "exit78")}})
	h.waitFor("a", "failed", func(st State) bool { return st.State == StateFailed })
	if err := h.sup.Restart("a"); err != nil {
		t.Fatalf("Restart(a) = %v, want nil", err)
	}
	st := h.waitFor("a", "failed again", func(st State) bool { return st.State == StateFailed && st.Generation == 2 })
	if st.Restarts != 1 {
		t.Errorf("Status(a).Restarts = %d, want 1", st.Restarts)
	}
}

func TestUnknownAndNotRunning(t *testing.T) {
	t.Parallel()
	sup, err := New(Config{Specs: []Spec{fakeSpec(t, "a", "hang")}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		op   string
		f    func(string) error
		name string
		want error
	}{
		{"Kill", sup.Kill, "nope", ErrUnknown},
		{"Restart", sup.Restart, "nope", ErrUnknown},
		{"Kill", sup.Kill, "a", ErrNotRunning}, // before Run
		{"Restart", sup.Restart, "a", ErrNotRunning},
	}
	for _, tt := range tests {
		err := tt.f(tt.name)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("%s(%q) = %v, want %v naming %q", tt.op, tt.name, err, tt.want, tt.name)
		}
	}
	if sup.Ready() {
		t.Error("Ready() before Run = true, want false")
	}
}

// TestStartOrder lists the table backwards; the supervisor must start it
// forwards, each component once its dependencies run.
func TestStartOrder(t *testing.T) {
	t.Parallel()
	specs := []Spec{fakeSpec(t, "c", "hang", "b"), fakeSpec(t, "b", "hang", "a"), fakeSpec(t, "a", "hang")}
	h := run(t, Config{Specs: specs})
	for _, name := range []string{"a", "b", "c"} {
		h.waitRunning(name, 1)
	}
	var got []string
	for _, l := range h.con.lines("supervisor: ") {
		name, ok := strings.CutSuffix(strings.Fields(l)[1], ":")
		if ok && strings.Contains(l, " started pid ") {
			got = append(got, name)
		}
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("start order = %v, want %v", got, want)
	}
	if !h.sup.Ready() {
		t.Errorf("Ready() with all running = false, want true; %+v", h.sup.Status())
	}
}

// TestDependencyGate: a component whose dependency never runs never starts.
func TestDependencyGate(t *testing.T) {
	t.Parallel()
	dep := Spec{Name: "a", Path: "/nonexistent/a", Restart: Never}
	h := run(t, Config{Specs: []Spec{dep, fakeSpec(t, "b", "hang", "a")}})
	a := h.waitFor("a", "stopped", func(st State) bool { return st.State == StateStopped })
	if !strings.HasPrefix(a.LastExit, "start: ") || a.Generation != 0 {
		t.Errorf("Status(a) = %+v, want a start error, generation 0", a)
	}
	time.Sleep(50 * time.Millisecond) // room for a wrong start of b
	b := h.state("b")
	if want := (State{Name: "b", State: StateStarting}); b != want {
		t.Errorf("Status(b) = %+v, want %+v", b, want)
	}
	if err := h.sup.Restart("b"); !errors.Is(err, ErrWaiting) || !strings.Contains(err.Error(), "a") {
		t.Errorf("Restart(b) = %v, want ErrWaiting naming a", err)
	}
	if h.sup.Ready() {
		t.Error("Ready() with b waiting = true, want false")
	}
}

func TestReady(t *testing.T) {
	t.Parallel()
	once := fakeSpec(t, "once", "exit0")
	once.Restart = OnFailure
	h := run(t, Config{Specs: []Spec{fakeSpec(t, "a", "hang"), once}})
	h.waitRunning("a", 1)
	h.waitFor("once", "stopped", func(st State) bool { return st.State == StateStopped })
	if !h.sup.Ready() {
		t.Errorf("Ready() = false, want true; %+v", h.sup.Status())
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if h.sup.Ready() {
		t.Error("Ready() after Run = true, want false")
	}
}

func TestConsole(t *testing.T) {
	t.Parallel()
	spec := fakeSpec(t, "a", "print")
	spec.Restart = Never
	h := run(t, Config{Specs: []Spec{spec}})
	h.waitFor("a", "stopped", func(st State) bool { return st.State == StateStopped })
	want := []string{
		"a: hello",
		"a: oops",
		"a: " + strings.Repeat("x", MaxLine),
		"a: " + strings.Repeat("x", 904),
		"a: partial",
	}
	if got := h.con.lines("a: "); !slices.Equal(got, want) {
		t.Errorf("console lines of a = %q, want %q", got, want)
	}
	if got := h.con.lines("supervisor: a: started pid "); len(got) != 1 {
		t.Errorf("supervisor's start lines = %q, want one", got)
	}
}

func TestExtraFiles(t *testing.T) {
	t.Parallel()
	var given []*os.File
	spec := fakeSpec(t, "a", "fd3")
	spec.Restart = Never
	spec.ExtraFiles = func(func()) ([]*os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		w.WriteString("via fd 3\n")
		w.Close()
		given = append(given, r)
		return []*os.File{r}, nil
	}
	h := run(t, Config{Specs: []Spec{spec}})
	h.waitFor("a", "stopped", func(st State) bool { return st.State == StateStopped })
	if got, want := h.con.lines("a: "), []string{"a: via fd 3"}; !slices.Equal(got, want) {
		t.Errorf("console lines of a = %q, want %q", got, want)
	}
	h.stop()
	if len(given) != 1 {
		t.Fatalf("ExtraFiles called %d times, want 1", len(given))
	}
	if _, err := given[0].Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read of the passed file after start = %v, want %v (closed by the supervisor)", err, os.ErrClosed)
	}
}

// TestStop cancels Run: dependents stop before their dependencies, a process
// that ignores SIGTERM is killed when its grace period (StopTimeout, on the
// fake clock) ends, and Run returns with every child reaped and every
// goroutine ended. Not parallel, so that goroutines can be counted.
func TestStop(t *testing.T) {
	before := runtime.NumGoroutine()
	specs := []Spec{
		fakeSpec(t, "b", "graceful", "a"),
		fakeSpec(t, "a", "graceful"),
		fakeSpec(t, "deaf", "stubborn"),
	}
	log := withLog(t, specs)
	clock := newFakeClock()
	const grace = 3 * time.Second
	h := run(t, Config{Specs: specs, Clock: clock, StopTimeout: grace})
	var pids []int
	for _, name := range []string{"a", "b", "deaf"} {
		pids = append(pids, h.waitRunning(name, 1).PID)
		waitLog(t, log, name+" up")
	}
	for _, pid := range pids {
		if !h.sup.Owns(pid) {
			t.Errorf("Owns(%d) of a running component = false, want true", pid)
		}
	}
	if h.sup.Owns(os.Getpid()) {
		t.Errorf("Owns(own pid %d) = true, want false", os.Getpid())
	}

	// Each component is sent SIGTERM with a grace period of StopTimeout;
	// a, after b has stopped. The polite ones end within theirs; deaf is
	// killed when its own ends.
	h.cancel()
	var timers []*fakeTimer
	for range 3 {
		timer := clock.next(t)
		if timer.d != grace {
			t.Errorf("grace period after SIGTERM = %v, want StopTimeout %v", timer.d, grace)
		}
		timers = append(timers, timer)
	}
	waitLog(t, log, "a term")
	if st := h.state("deaf"); st.State != StateRunning {
		t.Errorf("Status(deaf) before its grace period ended = %+v, want still running", st)
	}
	for _, timer := range timers {
		timer.fire()
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}

	var terms []string
	for _, l := range readLog(t, log) {
		if strings.HasSuffix(l, " term") {
			terms = append(terms, l)
		}
	}
	if want := []string{"b term", "a term"}; !slices.Equal(terms, want) {
		t.Errorf("stop order = %q, want %q", terms, want)
	}
	wantExit := map[string]string{"a": "exit status 0", "b": "exit status 0", "deaf": "signal: killed"}
	for _, st := range h.sup.Status() {
		if st.State != StateStopped || st.PID != 0 || st.LastExit != wantExit[st.Name] {
			t.Errorf("after Run: Status(%s) = %+v, want stopped, no pid, %s", st.Name, st, wantExit[st.Name])
		}
	}
	for _, pid := range pids {
		if pidAlive(pid) {
			t.Errorf("pid %d exists after Run returned", pid)
		}
		if h.sup.Owns(pid) {
			t.Errorf("Owns(%d) after Run = true, want false", pid)
		}
	}
	// exec's own goroutines may take a moment to be scheduled out.
	deadline := time.Now().Add(hangWait)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines after Run = %d, want <= %d:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// pidAlive reports whether a process (or an unreaped zombie) has this pid.
func pidAlive(pid int) bool {
	return syscall.Kill(pid, 0) != syscall.ESRCH
}

// TestIdentity starts a component as another user with one capability:
// as root it runs with exactly those (as anyone else the start is refused,
// which the test expects too).
func TestIdentity(t *testing.T) {
	t.Parallel()
	const nobody = 65534
	spec := fakeSpec(t, "a", "id")
	spec.Path = copyForAnyone(t, spec.Path)
	spec.Restart = Never
	spec.UID, spec.GID = nobody, nobody
	spec.Caps = []uintptr{unix.CAP_NET_BIND_SERVICE}
	h := run(t, Config{Specs: []Spec{spec}})
	st := h.waitFor("a", "stopped", func(st State) bool { return st.State == StateStopped })
	if os.Geteuid() != 0 {
		if !strings.Contains(st.LastExit, "operation not permitted") {
			t.Errorf("start as uid %d by uid %d: LastExit = %q, want operation not permitted", nobody, os.Geteuid(), st.LastExit)
		}
		return
	}
	want := []string{fmt.Sprintf("a: Uid: %d", nobody), fmt.Sprintf("a: CapEff: %016x", 1<<unix.CAP_NET_BIND_SERVICE)}
	if got := h.con.lines("a: "); !slices.Equal(got, want) {
		t.Errorf("console lines of a = %q, want %q (last exit %q)", got, want, st.LastExit)
	}
}

// TestCPUs: a process runs, every thread of it, on the processors its
// spec names; the supervisor's own threads keep theirs.
func TestCPUs(t *testing.T) {
	own := threadCPUs()
	spec := fakeSpec(t, "a", "cpus")
	spec.Restart = Never
	spec.CPUs = []int{0}
	h := run(t, Config{Specs: []Spec{spec}})
	st := h.waitFor("a", "stopped", func(st State) bool { return st.State == StateStopped })
	if got, want := h.con.lines("a: "), []string{"a: cpus 0"}; !slices.Equal(got, want) {
		t.Errorf("console lines of a = %q, want %q (last exit %q)", got, want, st.LastExit)
	}
	if after := threadCPUs(); len(own) > 0 && !slices.Contains(after, own[0]) {
		t.Errorf("the supervisor's threads may run on %q after the start, %q before", after, own)
	}
}

// TestPrepare: Prepare runs before every start, and its failure is a
// failed start.
func TestPrepare(t *testing.T) {
	t.Parallel()
	calls := 0
	spec := fakeSpec(t, "a", "exit0")
	spec.Restart = Never
	spec.Prepare = func() error {
		calls++
		return errors.New("no device")
	}
	h := run(t, Config{Specs: []Spec{spec}})
	st := h.waitFor("a", "stopped", func(st State) bool { return st.State == StateStopped })
	h.stop()
	if calls != 1 || !strings.Contains(st.LastExit, "prepare: no device") {
		t.Errorf("after a failing Prepare: %d calls, LastExit %q; want 1 call and the error", calls, st.LastExit)
	}
}

// copyForAnyone copies the executable path where any user may run it (the
// test binary's own directory is private).
func copyForAnyone(t *testing.T, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "supervisor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// cp writes the copy, not this process: a descriptor open for writing
	// here is inherited by every process the parallel tests fork until it
	// execs, and exec of the copy fails with ETXTBSY ("text file busy")
	// while any such child holds it — seen in make test.
	exe := filepath.Join(dir, "fake")
	if out, err := exec.Command("cp", path, exe).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v %s", path, exe, err, out)
	}
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}
