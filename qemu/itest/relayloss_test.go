package itest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lossyFloorMbps is the slowest rate TestTCPThroughLossyRelay waits for: a
// hang catcher, not a speed bound (transferLimit stops it before the test
// deadline).
const lossyFloorMbps = 2

// lossyBytes is the default download: a correctness test moves tens of
// megabytes; the gigabyte issue 5 asked for is KEEPNET_RELAY_BYTES=1000000000
// (at the 8.5-17 Mbit/s measured on 2026-12-02, 8 to 16 minutes).
const lossyBytes = 50_000_000

// TCP through the impairment relay at 1% loss, 1% reordering and 1%
// duplication each way: a download of KEEPNET_RELAY_BYTES (default
// lossyBytes) still matches its hash, byte for byte. The rate is
// logged with tcp's retransmission counters.
func TestTCPThroughLossyRelay(t *testing.T) {
	requireITest(t, true)
	size := envInts(t, "KEEPNET_RELAY_BYTES", lossyBytes)[0]
	n := newNetns(t)
	sock := filepath.Join(t.TempDir(), "n0.sock")
	impair := []string{"-drop", "0.01", "-reorder", "0.01", "-dup", "0.01"}
	if v := os.Getenv("KEEPNET_RELAY_IMPAIR"); v != "" {
		impair = strings.Fields(v) // other impairments, to compare
	}
	startRelay(t, n, sock, append(impair, "-seed", "1", "-stats", "60s")...)
	args := append(n.upArgs(), "--stack", "keepnet")
	args[1] = "stream:" + sock // replace tap:IF
	if extra := os.Getenv("KEEPNET_APPEND"); extra != "" {
		args = append(args, "--append", extra) // e.g. keepnet.tso=off, to compare
	}
	a := boot(t, n.Name, args...)
	httpWarm(t, n)
	before := a.stats("tcp")
	start := time.Now()
	down := httpDownload(t, n, size, 7, lossyFloorMbps)
	after := a.stats("tcp")
	t.Logf("%s down through 1%% loss + 1%% reordering + 1%% duplication in %v: %.1f Mbit/s, hash matches",
		mb(size), time.Since(start).Round(time.Second), down)
	t.Logf("tcp grew by %s", deltas(before, after, "OutSegs", "Retransmits", "FastRetransmits", "Timeouts", "TailLossProbes", "InSegs", "InOOODrops"))
}
