package supervisor

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// aliveFuncs collects the alive function of every start of a component.
type aliveFuncs struct {
	mu    sync.Mutex
	funcs []func()
}

func (a *aliveFuncs) hook(alive func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.funcs = append(a.funcs, alive)
}

// of returns the alive function of the n-th start (1 for the first).
func (a *aliveFuncs) of(t *testing.T, n int) func() {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.funcs) < n {
		t.Fatalf("%d starts, want at least %d", len(a.funcs), n)
	}
	return a.funcs[n-1]
}

// hangAfter is the limit of the fake-clock hang tests.
const hangAfter = 2 * time.Second

// runWatched supervises one sleeping fake, "a", whose signs of life the test
// gives through the alive functions it collects, on a fake clock.
func runWatched(t *testing.T) (*harness, *fakeClock, *aliveFuncs) {
	clock := newFakeClock()
	starts := new(aliveFuncs)
	a := fakeSpec(t, "a", "hang")
	a.Liveness = starts.hook
	return run(t, Config{Specs: []Spec{a}, Clock: clock, HangAfter: hangAfter}), clock, starts
}

// TestHangDetection follows a component on a fake clock: no watch before
// its first sign of life; a sign within HangAfter keeps it; silence for
// HangAfter kills it as hung and restarts it, counted; the old process's
// alive no longer counts for the new one.
func TestHangDetection(t *testing.T) {
	t.Parallel()
	h, clock, starts := runWatched(t)
	first := h.waitRunning("a", 1)
	clock.none(t) // not watched before its first sign of life

	starts.of(t, 1)()
	tm := clock.next(t)
	if tm.d != hangAfter {
		t.Fatalf("first hang timer of %v, want %v", tm.d, hangAfter)
	}
	clock.advance(hangAfter / 2)
	starts.of(t, 1)()
	clock.advance(hangAfter / 2)
	tm.c <- clock.Now() // due, but it answered half-way
	tm = clock.next(t)
	if tm.d != hangAfter/2 {
		t.Fatalf("second hang timer of %v, want %v (the rest from its last sign of life)", tm.d, hangAfter/2)
	}
	if st := h.state("a"); st.Generation != 1 || st.Hangs != 0 {
		t.Fatalf("after a timely answer: %+v, want generation 1, no hangs", st)
	}

	tm.fire() // silent for hangAfter
	st := h.waitRunning("a", 2)
	if !strings.HasPrefix(st.LastExit, "hung") || st.Hangs != 1 || st.PID == first.PID {
		t.Errorf("after silence: %+v; want generation 2, LastExit hung..., Hangs 1", st)
	}
	if pidAlive(first.PID) {
		t.Errorf("the hung process %d is still alive", first.PID)
	}
	if log := h.con.String(); !strings.Contains(log, "a: hung: no sign of life") {
		t.Errorf("console does not log the hang:\n%s", log)
	}

	starts.of(t, 1)() // the dead process's word does not arm the new one
	clock.none(t)
	starts.of(t, 2)()
	if tm := clock.next(t); tm.d != hangAfter {
		t.Errorf("generation 2's hang timer of %v, want %v", tm.d, hangAfter)
	}
}

// TestStoppedComponentIsHung runs a fake that shows a sign of life every
// 20 ms (a byte on a pipe, the test's stand-in for the hub's pongs) on the
// real clock: it runs on while it answers, and once SIGSTOPped it is killed
// as hung and restarted.
func TestStoppedComponentIsHung(t *testing.T) {
	t.Parallel()
	const hangAfter = time.Second // real time here
	a := fakeSpec(t, "a", "beat")
	var mu sync.Mutex
	var alive func()
	a.ExtraFiles = func(func()) ([]*os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		go func() {
			defer r.Close()
			b := make([]byte, 64)
			for {
				if _, err := r.Read(b); err != nil {
					return
				}
				mu.Lock()
				alive()
				mu.Unlock()
			}
		}()
		return []*os.File{w}, nil
	}
	a.Liveness = func(f func()) {
		mu.Lock()
		alive = f
		mu.Unlock()
	}
	h := run(t, Config{Specs: []Spec{a}, HangAfter: hangAfter})
	first := h.waitRunning("a", 1)
	time.Sleep(3 * hangAfter)
	if st := h.state("a"); st.Generation != 1 || st.Hangs != 0 {
		t.Fatalf("a component that answers was restarted: %+v", st)
	}

	if err := h.sup.Signal("a", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	st := h.waitRunning("a", 2)
	if !strings.HasPrefix(st.LastExit, "hung") || st.Hangs != 1 {
		t.Errorf("after SIGSTOP: %+v; want LastExit hung..., Hangs 1", st)
	}
	if pidAlive(first.PID) {
		t.Errorf("the stopped process %d is still there", first.PID)
	}
}

// TestHangCheckAfterPause: a hang check that comes late (the machine did not
// run the supervisor either) kills nothing; the component gets half the
// limit again.
func TestHangCheckAfterPause(t *testing.T) {
	t.Parallel()
	h, clock, starts := runWatched(t)
	h.waitRunning("a", 1)
	starts.of(t, 1)()
	tm := clock.next(t)
	clock.advance(hangAfter + hangAfter/2) // a pause of the whole machine
	tm.c <- clock.Now()
	if tm = clock.next(t); tm.d != hangAfter/2 {
		t.Fatalf("hang timer after a pause of %v, want %v", tm.d, hangAfter/2)
	}
	if st := h.state("a"); st.Generation != 1 || st.Hangs != 0 {
		t.Fatalf("killed after a pause of the machine: %+v", st)
	}
	tm.fire()
	if st := h.waitRunning("a", 2); st.Hangs != 1 {
		t.Errorf("silent after the pause too: %+v, want it killed as hung", st)
	}
}
