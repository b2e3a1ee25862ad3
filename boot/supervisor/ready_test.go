package supervisor

import (
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// readyFuncs collects the ready function of every start of a component.
type readyFuncs struct {
	mu    sync.Mutex
	funcs []func()
}

func (r *readyFuncs) hook(ready func()) ([]*os.File, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.funcs = append(r.funcs, ready)
	return nil, nil
}

// of returns the ready function of the n-th start (1 for the first).
func (r *readyFuncs) of(t *testing.T, n int) func() {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.funcs) < n {
		t.Fatalf("%d starts, want at least %d", len(r.funcs), n)
	}
	return r.funcs[n-1]
}

// waitChanged waits for the channel Changed returned; a change must come
// within hangWait.
func waitChanged(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hangWait):
		t.Fatalf("no change within %v: %s", hangWait, what)
	}
}

// TestReadyIsPerStart follows one ReadyNotify component through a restart:
// it is ready only once its own process said so, a restart makes it unready
// until the new process says so, and the old process's word no longer
// counts.
func TestReadyIsPerStart(t *testing.T) {
	t.Parallel()
	var starts readyFuncs
	a := fakeSpec(t, "a", "hang")
	a.Ready, a.ExtraFiles = ReadyNotify, starts.hook
	plain := fakeSpec(t, "plain", "hang") // ReadyRunning: ready while it runs
	h := run(t, Config{Specs: []Spec{a, plain}})
	h.waitRunning("a", 1)
	h.waitFor("plain", "ready", func(st State) bool { return st.Ready })

	if got, want := h.sup.NotReady(), []string{"a: running, not ready yet"}; !slices.Equal(got, want) {
		t.Errorf("NotReady() before a said ready = %q, want %q", got, want)
	}
	changed := h.sup.Changed()
	starts.of(t, 1)()
	waitChanged(t, changed, "a said ready")
	if !h.sup.Ready() || !h.state("a").Ready {
		t.Fatalf("after a said ready: Ready() = %v, NotReady() = %q; want true, none", h.sup.Ready(), h.sup.NotReady())
	}

	if err := h.sup.Kill("a"); err != nil {
		t.Fatalf("Kill(a) = %v, want nil", err)
	}
	h.waitRunning("a", 2)
	starts.of(t, 1)() // the dead generation 1 speaks again: it counts for nobody
	if h.sup.Ready() {
		t.Fatalf("Ready() = true after a restarted and only generation 1 said ready; Status %+v", h.sup.Status())
	}
	if got, want := h.sup.NotReady(), []string{"a: running, not ready yet"}; !slices.Equal(got, want) {
		t.Errorf("NotReady() after the restart = %q, want %q", got, want)
	}
	starts.of(t, 2)()
	if !h.sup.Ready() {
		t.Errorf("Ready() = false after generation 2 said ready; NotReady() = %q", h.sup.NotReady())
	}
}

// TestReadyOverPipe runs fakes that announce on their readiness pipe
// (kernel/notify) and one that never does: the appliance waits for it, and
// NotReady names it. A killed announcer is ready again once its new process
// has announced.
func TestReadyOverPipe(t *testing.T) {
	t.Parallel()
	a := fakeSpec(t, "a", "notify")
	a.Ready = ReadyNotify
	b := fakeSpec(t, "b", "notify", "a")
	b.Ready = ReadyNotify
	b.ExtraFiles = func(func()) ([]*os.File, error) { // the pipe comes after these
		return []*os.File{devNull(t)}, nil
	}
	silent := fakeSpec(t, "silent", "hang")
	silent.Ready = ReadyNotify
	specs := []Spec{a, b, silent}
	log := withLog(t, specs)
	h := run(t, Config{Specs: specs})

	for _, name := range []string{"a", "b"} {
		h.waitFor(name, "ready", func(st State) bool { return st.Ready })
	}
	waitLog(t, log, "silent up")
	if got, want := h.sup.NotReady(), []string{"silent: running, not ready yet"}; !slices.Equal(got, want) {
		t.Errorf("NotReady() = %q, want %q", got, want)
	}
	if h.sup.Ready() {
		t.Error("Ready() = true while silent never said ready, want false")
	}

	if err := h.sup.Kill("a"); err != nil {
		t.Fatalf("Kill(a) = %v, want nil", err)
	}
	st := h.waitFor("a", "ready again in generation 2", func(st State) bool { return st.Generation == 2 && st.Ready })
	if st.State != StateRunning {
		t.Errorf("Status(a) = %+v, want running", st)
	}
}

// TestNotReadyReasons checks what NotReady says of components that are not
// running.
func TestNotReadyReasons(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	failed := fakeSpec(t, "failed", "exit78")
	crashing := fakeSpec(t, "crashing", "crash")
	h := run(t, Config{Specs: []Spec{failed, crashing}, Clock: clock})
	clock.next(t) // crashing's back-off
	h.waitFor("failed", "failed", func(st State) bool { return st.State == StateFailed })
	want := []string{
		"failed: failed (exit status 78 (configuration error) (do not restart))",
		"crashing: backoff (exit status 1)",
	}
	if got := h.sup.NotReady(); !slices.Equal(got, want) {
		t.Errorf("NotReady() = %q, want %q", got, want)
	}
	h.stop()
	if got, want := h.sup.NotReady(), []string{"supervisor: not running"}; !slices.Equal(got, want) {
		t.Errorf("NotReady() after Run = %q, want %q", got, want)
	}
}

func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
