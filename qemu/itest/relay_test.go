package itest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startRelay runs keepnet-relay in the namespace between the tap and the
// Unix socket QEMU will listen on, with the given impairment flags, until
// the test ends.
func startRelay(t *testing.T, n *netns, sock string, impair ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"netns", "exec", n.Name, filepath.Join(root, "bin/keepnet-relay"), "-qemu-dial", sock, "-tap", n.Tap}, impair...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
}

// TCP through the userspace impairment relay: at 1% loss with reordering
// and duplication the download still matches its hash. The relay's cost at
// 0% loss against the tap alone is measured and logged; issue 5 asks for
// less than 10%, which it does not meet yet here (8-18% measured, with the
// relay, QEMU's two vCPUs and curl sharing two cores), so it is reported,
// not asserted, until it does.
func TestTCPThroughRelay(t *testing.T) {
	requireITest(t, true)
	const size = 30_000_000
	// measure boots a guest behind the tap (relay nil) or the relay, and
	// returns the best of runs downloads: one transfer's figure under TCG
	// is noisy, and the comparison below is about the relay's cost.
	measure := func(name string, runs int, relay []string) float64 {
		n := newNetns(t)
		args := append(n.upArgs(), "--stack", "keepnet")
		if relay != nil {
			sock := filepath.Join(t.TempDir(), "n0.sock")
			startRelay(t, n, sock, relay...)
			args[1] = "stream:" + sock // replace tap:IF
		}
		a := boot(t, n.Name, args...)
		best := 0.0
		for i := 0; i < runs; i++ {
			down, _ := httpTransfer(t, n, size, 1_000_000)
			best = max(best, down)
		}
		t.Logf("%s: %d MB down at %.0f Mbit/s (best of %d)", name, size/1_000_000, best, runs)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		keepnet(ctx, "", "down", "--ctl", a.ctl)
		return best
	}
	direct := measure("tap", 3, nil)
	clean := measure("relay, no impairment", 3, []string{"-seed", "1"})
	measure("relay, 1% loss + 1% reordering + 1% duplication", 1, []string{"-drop", "0.01", "-reorder", "0.01", "-dup", "0.01", "-seed", "1"})
	t.Logf("the relay without impairment costs %.0f%% of the tap's throughput (goal: under 10%%)", 100*(1-clean/direct))
}
