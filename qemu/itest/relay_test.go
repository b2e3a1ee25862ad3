package itest

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startRelay runs keepnet-relay in the namespace between the tap and the
// Unix socket QEMU will listen on, with the given impairment flags, until
// stop or the end of the test.
func startRelay(t testing.TB, n *netns, sock string, impair ...string) *relayProc {
	t.Helper()
	args := append([]string{"netns", "exec", n.Name, filepath.Join(root, "bin/keepnet-relay"), "-qemu-dial", sock, "-tap", n.Tap}, impair...)
	r := &relayProc{cmd: exec.Command("ip", args...)} // ip netns exec execs the relay: the signal reaches it
	r.cmd.Stderr = io.MultiWriter(os.Stderr, &r.stderr)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop() })
	return r
}

type relayProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	once   sync.Once
}

// stop ends the relay with SIGTERM (SIGKILL after 10 s) and returns its
// final counters line for the tap→guest direction ("in: ...").
func (r *relayProc) stop() string {
	r.once.Do(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-done
		}
	})
	in := ""
	for _, line := range strings.Split(r.stderr.String(), "\n") {
		if i := strings.Index(line, "in: "); i >= 0 {
			in = line[i:]
		}
	}
	return in
}

// counter returns the value of name=N in a counters line, or -1.
func counter(line, name string) int {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			n, err := strconv.Atoi(v)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// The relay's cost (issue 5: under 10% of the throughput at 0% loss): the
// same transfers with the appliance's NIC on the tap directly and through
// keepnet-relay without impairment. Guests boot one at a time (an idle
// keepnet guest takes more than a core under TCG, see BenchmarkTCPBulk),
// alternating tap and relay over rounds so that a change in the host's load
// touches both, and each measures transfers of relayCostBytes each way;
// the medians are compared and logged. (1% loss, reordering and
// duplication is TestTCPThroughLossyRelay.)
func TestTCPThroughRelay(t *testing.T) {
	requireITest(t, true)
	const rounds, runs, size = 3, 2, relayCostBytes
	var down, up [2][]float64 // [0] tap, [1] relay
	measure := func(relay bool) {
		s := newScope(t)
		defer s.close()
		n := newNetns(s)
		args := append(n.upArgs(), "--stack", "keepnet")
		var rp *relayProc
		if relay {
			sock := filepath.Join(s.TempDir(), "n0.sock")
			rp = startRelay(s, n, sock, "-seed", "1", "-stats", "0")
			args[1] = "stream:" + sock // replace tap:IF
		}
		boot(s, n.Name, args...)
		httpWarm(s, n)
		i := 0
		if relay {
			i = 1
		}
		for range runs {
			down[i] = append(down[i], httpDownload(s, n, size, 5, floorMbps))
			up[i] = append(up[i], httpUpload(s, n, size, 6, floorMbps))
		}
		if relay {
			// The uploads came from the namespace's kernel as segments of
			// up to 64 KiB, which the relay cut (see qemu/relay/vnet.go).
			if in := rp.stop(); counter(in, "split") <= 0 || counter(in, "errors") != 0 {
				t.Errorf("relay counters %q: want split > 0 and errors=0", in)
			}
		}
	}
	cost := func(what string, f [2][]float64) float64 {
		tap, relay := median(f[0]), median(f[1])
		c := 1 - relay/tap
		t.Logf("%s %s: tap median %.0f Mbit/s %.0f, relay median %.0f Mbit/s %.0f: the relay costs %.1f%%",
			what, mb(size), tap, f[0], relay, f[1], 100*c)
		return c
	}
	// A guest's speed varies from boot to boot by more than the bound
	// (uploads of one configuration: 166 to 277 Mbit/s in one run), and
	// the relay's cost is near it only by that noise (medians over runs:
	// download about -10%, upload about +2%): while the samples so far put
	// it over the bound, up to two more sets of rounds are measured, and
	// the bound holds for all the samples together.
	const sets = 3
	var cd, cu float64
	for set := range sets {
		for r := range rounds {
			measure(r%2 == 1)
			measure(r%2 == 0)
		}
		if cd, cu = cost("download", down), cost("upload", up); cd < relayCostBound && cu < relayCostBound {
			break
		}
		if set < sets-1 {
			t.Logf("over %.0f%%: measuring %d more rounds", 100*relayCostBound, rounds)
		}
	}
	if cd >= relayCostBound || cu >= relayCostBound {
		t.Errorf("the relay without impairment costs %.1f%% of the download and %.1f%% of the upload throughput; want under %.0f%%",
			100*cd, 100*cu, 100*relayCostBound)
	}
}

// relayCostBytes is the size of each transfer TestTCPThroughRelay times,
// and relayCostBound the cost issue 5 accepts.
const (
	relayCostBytes = 100_000_000
	relayCostBound = 0.10
)

// median returns the median of xs (the mean of the middle two for an even
// count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
