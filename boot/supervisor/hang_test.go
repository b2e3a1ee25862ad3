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

// TestHangDetection follows a component on a fake clock: no watch before
// its first sign of life; a sign within HangAfter keeps it; silence for
// HangAfter kills it as hung and restarts it, counted; the old process's
// alive no longer counts for the new one.
func TestHangDetection(t *testing.T) {
	t.Parallel()
	const hangAfter = 2 * time.Second
	clock := newFakeClock()
	var starts aliveFuncs
	a := fakeSpec(t, "a", "hang")
	a.Liveness = starts.hook
	h := run(t, Config{Specs: []Spec{a}, Clock: clock, HangAfter: hangAfter})
	first := h.waitRunning("a", 1)
	clock.none(t) // not watched before its first sign of life

	starts.of(t, 1)()
	tm := clock.next(t)
	if tm.d != hangAfter {
		t.Fatalf("first hang timer of %v, want %v", tm.d, hangAfter)
	}
	clock.advance(hangAfter / 4)
	starts.of(t, 1)()
	clock.advance(3 * hangAfter / 4)
	tm.c <- clock.Now() // due, but it answered a quarter of the way
	tm = clock.next(t)
	if tm.d != hangAfter/4 {
		t.Fatalf("second hang timer of %v, want %v (the rest from its last sign of life)", tm.d, hangAfter/4)
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
	const hangAfter = time.Second
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
	const hangAfter = 2 * time.Second
	h, clock, _, tm := watchedAfterFirstSign(t, hangAfter)
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

// TestSharedSilenceIsAStall: two components silent at once (a vCPU the host
// does not schedule) are not hung; once the other answers again, the silent
// one is; and a silence shared for too long is a hang all the same.
func TestSharedSilenceIsAStall(t *testing.T) {
	t.Parallel()
	const hangAfter = 2 * time.Second
	clock := newFakeClock()
	var aStarts, bStarts aliveFuncs
	a, b := fakeSpec(t, "a", "hang"), fakeSpec(t, "b", "hang")
	a.Liveness, b.Liveness = aStarts.hook, bStarts.hook
	h := run(t, Config{Specs: []Spec{a, b}, Clock: clock, HangAfter: hangAfter})
	h.waitRunning("a", 1)
	h.waitRunning("b", 1)
	bStarts.of(t, 1)()
	clock.next(t) // b's hang timer, never fired
	aStarts.of(t, 1)()
	tm := clock.next(t)

	clock.advance(hangAfter)
	tm.c <- clock.Now() // a silent for hangAfter, and b too
	tm = clock.next(t)
	if st := h.state("a"); st.Generation != 1 || st.Hangs != 0 {
		t.Fatalf("killed while b was silent too: %+v", st)
	}
	if log := h.con.String(); !strings.Contains(log, "and so is b") {
		t.Errorf("console does not say why it waits:\n%s", log)
	}

	// b answers every quarter of the limit again; a does not.
	for checks := 0; h.state("a").Generation == 1; checks++ {
		if checks > 20 {
			t.Fatalf("a silent alone for %d checks, not killed: %+v", checks, h.state("a"))
		}
		for left := tm.d; left > 0; left -= hangAfter / 4 {
			clock.advance(min(left, hangAfter/4))
			bStarts.of(t, 1)()
		}
		tm.c <- clock.Now()
		select {
		case tm = <-clock.requests:
		case <-time.After(time.Second): // killed: no new hang timer
		}
	}
	if st := h.waitRunning("a", 2); st.Hangs != 1 {
		t.Fatalf("a silent alone: %+v, want it killed as hung", st)
	}

	// Generation 2 of a and b both fall silent for good: each check buys
	// a more time, until the last excuse is spent.
	aStarts.of(t, 2)()
	tm = clock.next(t)
	for i := 0; i < maxStallExcuses; i++ {
		clock.advance(tm.d)
		tm.c <- clock.Now()
		tm = clock.next(t) // excused: a new hang timer
		if st := h.state("a"); st.Generation != 2 || st.Hangs != 1 {
			t.Fatalf("check %d of a shared silence killed a: %+v", i+1, st)
		}
	}
	clock.advance(tm.d)
	tm.c <- clock.Now()
	select {
	case backoff := <-clock.requests: // the restart's back-off, if any
		backoff.fire()
	case <-time.After(time.Second):
	}
	if st := h.waitRunning("a", 3); st.Hangs != 2 {
		t.Errorf("after %d excuses: %+v, want it killed as hung", maxStallExcuses, st)
	}
}

// TestHangLimitFollowsThePace: when components answer late (a starved
// guest), the hang limit grows to slowFactor times the slowest gap, and
// shrinks back to HangAfter as that gap ages.
func TestHangLimitFollowsThePace(t *testing.T) {
	t.Parallel()
	const hangAfter = 2 * time.Second
	h, clock, starts, tm := watchedAfterFirstSign(t, hangAfter)
	clock.advance(hangAfter - time.Millisecond)
	starts.of(t, 1)() // an answer just in time: the machine is slow
	clock.advance(time.Millisecond)
	tm.c <- clock.Now()
	tm = clock.next(t)
	// slowFactor times the gap, less the millisecond since the answer and
	// a millisecond's decay.
	if want := slowFactor*(hangAfter-time.Millisecond) - time.Millisecond; tm.d > want || tm.d < want-10*time.Millisecond {
		t.Fatalf("hang timer after a slow answer: %v, want about %v", tm.d, want)
	}
	if st := h.state("a"); st.Generation != 1 {
		t.Fatalf("killed after a slow answer: %+v", st)
	}
	for i := 0; i < 40; i++ { // answers every half second; the slow gap ages
		clock.advance(slowHalfLife / 20)
		starts.of(t, 1)()
	}
	tm.c <- clock.Now()
	if tm = clock.next(t); tm.d != hangAfter {
		t.Errorf("hang timer once the machine is fast again: %v, want %v", tm.d, hangAfter)
	}
}

// watchedAfterFirstSign runs one component "a" under hang detection on a
// fake clock and gives its first sign of life: it returns the alive
// functions of its starts and the hang timer that sign armed.
func watchedAfterFirstSign(t *testing.T, hangAfter time.Duration) (*harness, *fakeClock, *aliveFuncs, *fakeTimer) {
	clock := newFakeClock()
	starts := &aliveFuncs{}
	a := fakeSpec(t, "a", "hang")
	a.Liveness = starts.hook
	h := run(t, Config{Specs: []Spec{a}, Clock: clock, HangAfter: hangAfter})
	h.waitRunning("a", 1)
	starts.of(t, 1)()
	return h, clock, starts, clock.next(t)
}
