package itest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// nicModels are the QEMU models besides the default e1000 (every other
// test's) that keepnet's e1000 driver drives, with the PCI ID each shows:
// the parts e1000.Devices marks Tested.
var nicModels = []struct{ model, pciID string }{
	{"e1000-82545em", "8086:100f"},
	{"e1000-82544gc", "8086:100c"},
	{"e1000e", "8086:10d3"}, // the 82574L: its own Variant (e1000/variant.go)
}

// TestNICModels is issue 16's matrix for the models QEMU has beyond the
// 82540EM: on each, keepnet boots (`keepnet up --nic MODEL`) and its
// driver reports the part; ping answers; a 20 MB download and a 10 MB
// upload have the right hashes; and a download across `keepnet kill
// e1000.0` completes with the right hash (the new driver resets that part
// and takes the rings over).
func TestNICModels(t *testing.T) {
	requireITest(t, true)
	for _, m := range nicModels {
		t.Run(m.model, func(t *testing.T) { checkNICModel(t, m.model, m.pciID, "uio") })
	}
}

// checkNICModel boots keepnet on model (with more `keepnet up` arguments)
// and checks that e1000.0 drives the part pciID through backend (uio, or
// vfio with --iommu), ping, a download and an upload with their hashes,
// and a download across a kill of e1000.0.
func checkNICModel(t *testing.T, model, pciID, backend string, more ...string) (*appliance, *netns) {
	n := newNetns(t)
	a := boot(t, n.Name, append(append(n.upArgs(), "--stack", "keepnet", "--nic", model), more...)...)
	st := a.waitStats("e1000.0", func(s map[string]any) bool { return s["PCIID"] != nil })
	if got := st["PCIID"]; got != pciID {
		t.Fatalf("e1000.0 drives %v, want %s (%s): %v", got, pciID, model, st)
	}
	if got, _ := st["Backend"].(string); !strings.HasPrefix(got, backend) {
		t.Fatalf("e1000.0 reaches its device through %q, want %s: %v", got, backend, st)
	}
	const pings = 5
	if s := n.ping(t, time.Minute, "-c", strconv.Itoa(pings), "-i", "0.2", "-W", "5"); s.received != pings {
		t.Errorf("ping: %d of %d answered", s.received, pings)
	}
	down, up := httpTransfer(t, n, 20_000_000, 10_000_000)
	t.Logf("%s (%s, %s): 20 MB down at %.0f Mbit/s, 10 MB up at %.0f, hashes right", model, pciID, st["Backend"], down, up)

	const size = 20_000_000
	got, done := n.download(t, size, 77)
	for deadline := time.Now().Add(resumeWait); got.Load() < size/4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	a.kill("e1000.0")
	if err := a.awaitRunning("e1000.0", 2); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r != "" {
		t.Errorf("download across a kill of e1000.0 on %s: %s", model, r)
	}
	return a, n
}
