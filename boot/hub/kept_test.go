package hub

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"keepnet/kernel/keep"
	"keepnet/kernel/wiring"
)

const keptSize = 1 << 20

// joinAs starts a generation of name on h and joins it, as a component's
// main does.
func joinAs(t *testing.T, h *Hub, name string) (*wiring.Conn, *wiring.Setup) {
	t.Helper()
	files, err := h.ExtraFiles(name)(func() {})
	if err != nil {
		t.Fatal(err)
	}
	c, err := wiring.FromFile(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := wiring.Join(c, 2*time.Second)
	if err != nil {
		t.Fatalf("Join(%s): %v", name, err)
	}
	return c, s
}

// Kept memory is the same memory in every generation: what generation 1
// wrote through its mapping, generation 2 reads through its own after a
// restart.
func TestKeptMemoryOutlivesARestart(t *testing.T) {
	h, err := New([]Node{{Name: "tcp", Kept: []KeptSpec{{Name: "tcp.state", Size: keptSize}}}}, Shared(), func(string, ...any) {}) // the hub's goroutines outlive the test
	if err != nil {
		t.Fatal(err)
	}
	c1, gen1 := joinAs(t, h, "tcp")
	b := gen1.Kept["tcp.state"]
	if len(b) != keptSize {
		t.Fatalf("generation 1's tcp.state is %d bytes, want %d", len(b), keptSize)
	}
	copy(b[keptSize-len("left by generation 1"):], "left by generation 1")
	// Generation 1 dies: its mapping and its socket go with it.
	if err := keep.Unmap(b); err != nil {
		t.Fatal(err)
	}
	c1.Close()

	_, gen2 := joinAs(t, h, "tcp")
	if gen2.Generation != 2 {
		t.Fatalf("second Join is generation %d, want 2", gen2.Generation)
	}
	b = gen2.Kept["tcp.state"]
	if len(b) != keptSize {
		t.Fatalf("generation 2's tcp.state is %d bytes, want %d", len(b), keptSize)
	}
	defer keep.Unmap(b)
	if got := string(b[keptSize-len("left by generation 1"):]); got != "left by generation 1" {
		t.Errorf("generation 2 reads %q, want what generation 1 left", got)
	}
}

// Kept memory comes after the regions, in every generation's hello, and
// is created only once.
func TestKeptMemoryAfterRegions(t *testing.T) {
	created := 0
	fx := newFixture(t)
	fx.hub.f.Kept = func(name string, size int) (*os.File, error) {
		created++
		return keep.Create(name, size)
	}
	fx.hub.nodes["e1000.0"].spec.Kept = []KeptSpec{{Name: "e1000.0.state", Size: keptSize}}
	for gen := 1; gen <= 2; gen++ {
		drv := fx.start("e1000.0")
		fx.expect(drv, wiring.TypeWelcome, 0)
		fx.expect(drv, wiring.TypeRegion, 1)
		if m := fx.expect(drv, wiring.TypeKept, 1); m.Name != "e1000.0.state" || m.Size != keptSize {
			t.Errorf("generation %d: kept = %+v, want e1000.0.state of %d bytes", gen, m, keptSize)
		}
		fx.expect(drv, wiring.TypeReady, 0)
	}
	fx.hub.mu.Lock()
	defer fx.hub.mu.Unlock()
	if created != 1 {
		t.Errorf("kept memory created %d times over two generations, want once", created)
	}
}

// A hello whose kept memory cannot be made fails, naming the memory; the
// component is not wired.
func TestKeptFailureFailsHello(t *testing.T) {
	h, err := New([]Node{{Name: "tcp", Kept: []KeptSpec{{Name: "tcp.state", Size: keptSize}}}}, Factory{
		Kept: func(string, int) (*os.File, error) { return nil, errors.New("out of memory") },
	}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	files, err := h.ExtraFiles("tcp")(func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer files[0].Close()
	// Called here rather than by a hello on the socket, to see its error.
	if err := h.hello("tcp", 1); err == nil || !strings.Contains(err.Error(), "tcp.state") {
		t.Errorf("hello = %v, want an error naming tcp.state", err)
	}
	if err := h.Hook("tcp", wiring.HookSpin); err == nil {
		t.Error("tcp is up after its hello failed")
	}
}

// Init may write into a component's kept memory before its first start
// (Hub.Kept): the component finds it there.
func TestKeptMemoryWrittenBeforeTheFirstStart(t *testing.T) {
	h, err := New([]Node{{Name: "pf", Kept: []KeptSpec{{Name: "pf.rules", Size: keptSize}}}}, Shared(), func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Kept("pf", "pf.state"); err == nil {
		t.Error("Kept(pf, pf.state), which pf has not: no error")
	}
	f, err := h.Kept("pf", "pf.rules")
	if err != nil {
		t.Fatal(err)
	}
	b, err := keep.Map(f)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Unmap(b)
	copy(b, "set default block")
	_, gen1 := joinAs(t, h, "pf")
	defer keep.Unmap(gen1.Kept["pf.rules"])
	if got := string(gen1.Kept["pf.rules"][:17]); got != "set default block" {
		t.Errorf("pf's first generation reads %q, want what init wrote", got)
	}
}
