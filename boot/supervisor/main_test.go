package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"keepnet/kernel/exitcode"
	"keepnet/kernel/notify"
)

// The fake components are this test binary run again with envMode set: the
// standard helper-process pattern.
const (
	envMode = "SUPERVISOR_TEST_MODE"
	envName = "SUPERVISOR_TEST_NAME"
	envLog  = "SUPERVISOR_TEST_LOG" // file the fakes append "name event" lines to
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envMode); mode != "" {
		os.Exit(fake(mode))
	}
	os.Exit(m.Run())
}

// fake is the main of a fake component; it returns the exit status.
func fake(mode string) int {
	switch mode {
	case "crash":
		return 1
	case "exit0":
		return 0
	case "exit78":
		return DoNotRestart
	case "broken": // a server whose channel broke (kernel/loop)
		return exitcode.BrokenChannel
	case "print":
		fmt.Println("hello")
		fmt.Fprintln(os.Stderr, "oops")
		os.Stdout.WriteString(strings.Repeat("x", MaxLine+904) + "\n")
		os.Stdout.WriteString("partial")
		return 0
	case "fd3":
		b, err := io.ReadAll(os.NewFile(3, "fd3"))
		if err != nil {
			fmt.Println(err)
			return 1
		}
		os.Stdout.Write(b)
		return 0
	case "notify": // says it is ready on its readiness pipe, then hangs
		if err := notify.Ready(); err != nil {
			fmt.Println(err)
			return 1
		}
		record("ready")
		time.Sleep(time.Minute)
		return 0
	case "id": // prints its uid and effective capabilities
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		for l := range strings.Lines(string(b)) {
			if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "CapEff:") {
				fmt.Print(strings.Join(strings.Fields(l)[:2], " "), "\n")
			}
		}
		return 0
	case "cpus": // prints the processors each of its threads may run on
		return printCPUs()
	case "hang":
		record("up")
		time.Sleep(time.Minute)
		return 0
	case "beat": // writes a byte to fd 3 every 20 ms: a sign of life
		f := os.NewFile(3, "beat")
		for range time.Tick(20 * time.Millisecond) {
			if _, err := f.Write([]byte{1}); err != nil {
				return 1
			}
		}
	case "stubborn": // ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		record("up")
		time.Sleep(time.Minute)
		return 0
	case "graceful": // exits 0 on SIGTERM
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		record("up")
		select {
		case <-sig:
			record("term")
		case <-time.After(time.Minute):
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
	return 2
}

// record appends "name event" to the log file, if there is one.
func record(event string) {
	path := os.Getenv(envLog)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", os.Getenv(envName), event)
}

// fakeSpec is a component running the fake in the given mode.
func fakeSpec(t *testing.T, name, mode string, deps ...string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{
		Name: name,
		Path: exe,
		// A -race binary otherwise sleeps a second before exiting.
		Env:  []string{envMode + "=" + mode, envName + "=" + name, "GORACE=atexit_sleep_ms=0"},
		Deps: deps,
	}
}

// withLog makes the specs' fakes record into one log file, whose path it
// returns.
func withLog(t *testing.T, specs []Spec) string {
	path := filepath.Join(t.TempDir(), "log")
	for i := range specs {
		specs[i].Env = append(specs[i].Env, envLog+"="+path)
	}
	return path
}

// readLog returns the lines of the fakes' log.
func readLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// syncBuffer is a Console that tests can read while the supervisor writes.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the console lines that start with prefix.
func (b *syncBuffer) lines(prefix string) []string {
	var out []string
	for l := range strings.Lines(b.String()) {
		if strings.HasPrefix(l, prefix) {
			out = append(out, strings.TrimSuffix(l, "\n"))
		}
	}
	return out
}

// harness runs a Supervisor for one test.
type harness struct {
	t       *testing.T
	sup     *Supervisor
	con     *syncBuffer
	cancel  context.CancelFunc
	done    chan struct{}
	runErr  error
	stopped sync.Once
}

// run starts a supervisor over cfg; it is stopped at the end of the test.
func run(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, con: &syncBuffer{}, done: make(chan struct{})}
	cfg.Console = h.con
	sup, err := New(cfg)
	if err != nil {
		t.Fatalf("New = %v, want nil", err)
	}
	h.sup = sup
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		h.runErr = sup.Run(ctx)
	}()
	t.Cleanup(func() { h.stop() })
	return h
}

// stop cancels Run and waits for it to return.
func (h *harness) stop() error {
	h.t.Helper()
	h.stopped.Do(func() {
		h.cancel()
		select {
		case <-h.done:
		case <-time.After(hangWait):
			h.t.Fatalf("Run did not return %v after cancel; console:\n%s", hangWait, h.con)
		}
	})
	return h.runErr
}

// state returns the named component's state.
func (h *harness) state(name string) State {
	h.t.Helper()
	for _, st := range h.sup.Status() {
		if st.Name == name {
			return st
		}
	}
	h.t.Fatalf("Status() has no %q", name)
	return State{}
}

// hangWait is how long the tests wait for what takes milliseconds (a fake
// to start, a timer to be asked for, Run to return): only a hang takes
// this long, however loaded the host.
const hangWait = time.Minute

// waitFor polls Status until cond holds for the named component, and returns
// that state. It fails the test after hangWait.
func (h *harness) waitFor(name, what string, cond func(State) bool) State {
	h.t.Helper()
	deadline := time.Now().Add(hangWait)
	for {
		st := h.state(name)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s never %s; last %+v; console:\n%s", name, what, st, h.con)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitRunning waits until the named component runs generation gen.
func (h *harness) waitRunning(name string, gen int) State {
	h.t.Helper()
	return h.waitFor(name, fmt.Sprintf("running generation %d", gen), func(st State) bool {
		return st.State == StateRunning && st.PID != 0 && st.Generation == gen
	})
}

// waitLog polls the fakes' log until it holds line n times (once if n is
// missing).
func waitLog(t *testing.T, path, line string, n ...int) {
	t.Helper()
	want := 1
	if len(n) > 0 {
		want = n[0]
	}
	deadline := time.Now().Add(hangWait)
	for {
		got := 0
		for _, l := range readLog(t, path) {
			if l == line {
				got++
			}
		}
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never had %q %d times; log: %q", line, want, readLog(t, path))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeClock is a Clock whose time moves only when a test says so. Every
// timer asked for is queued on requests, for the test to check and fire.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time // guarded by mu
	requests chan *fakeTimer
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1e9, 0), requests: make(chan *fakeTimer, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: c, d: d, c: make(chan time.Time, 1)}
	c.requests <- t
	return t
}

// advance moves the time forward by d.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// next returns the next timer the supervisor asks for.
func (c *fakeClock) next(t *testing.T) *fakeTimer {
	t.Helper()
	select {
	case r := <-c.requests:
		return r
	case <-time.After(hangWait):
		t.Fatalf("no timer requested within %v", hangWait)
		return nil
	}
}

// none checks that no timer was asked for.
func (c *fakeClock) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-c.requests:
		t.Fatalf("unexpected timer of %v requested", r.d)
	default:
	}
}

type fakeTimer struct {
	clock   *fakeClock
	d       time.Duration
	c       chan time.Time
	stopped atomic.Bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool          { return !t.stopped.Swap(true) }

// fire moves the clock forward by the timer's duration and fires it.
func (t *fakeTimer) fire() {
	t.clock.advance(t.d)
	t.c <- t.clock.Now()
}

// printCPUs prints "cpus LIST" for each distinct Cpus_allowed_list of the
// process's threads.
func printCPUs() int {
	seen := map[string]bool{}
	for _, l := range threadCPUs() {
		if !seen[l] {
			seen[l] = true
			fmt.Println("cpus", l)
		}
	}
	return 0
}

// threadCPUs is the Cpus_allowed_list of each thread of this process.
func threadCPUs() []string {
	tasks, _ := os.ReadDir("/proc/self/task")
	var lists []string
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				lists = append(lists, strings.TrimSpace(v))
			}
		}
	}
	return lists
}
