package itest

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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

// TCP through keepnet-relay without impairment: a download and an upload
// of 20 MB each through the relay match their hashes, the relay cut
// the namespace's offloaded segments into wire frames and refused none.
// What the relay costs against QEMU's own tap path is BenchmarkRelayCost's
// figure. (1% loss, reordering and duplication is TestTCPThroughLossyRelay.)
func TestTCPThroughRelay(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	sock := filepath.Join(t.TempDir(), "n0.sock")
	rp := startRelay(t, n, sock, "-seed", "1", "-stats", "0")
	args := append(n.upArgs(), "--stack", "keepnet")
	args[1] = "stream:" + sock // replace tap:IF
	boot(t, n.Name, args...)
	const size = 20_000_000
	down, up := httpTransfer(t, n, size, size)
	t.Logf("through the relay: download %s at %.0f Mbit/s, upload %s at %.0f Mbit/s, hashes match", mb(size), down, mb(size), up)
	// The uploads came from the namespace's kernel as segments of up to
	// 64 KiB, which the relay cut (see qemu/relay/vnet.go).
	if in := rp.stop(); counter(in, "split") <= 0 || counter(in, "errors") != 0 {
		t.Errorf("relay counters %q: want split > 0 and errors=0", in)
	}
}

// relayBytes is the size of each transfer BenchmarkRelayCost times.
const relayBytes = 100_000_000
