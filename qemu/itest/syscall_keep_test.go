package itest

import (
	"testing"
	"time"
)

// TestSyscallKillDuringDownload: `keepnet kill syscall` three times, a
// second or two apart, during one 50 MB download from the appliance's
// httpd: the applications adopt their sockets through each new SYSCALL
// generation (servers/socket's recovery), and curl's bytes match the
// /bytes hash.
func TestSyscallKillDuringDownload(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	httpWarm(t, n)
	a.waitReady()
	const size = 50 << 20
	got, done := n.download(t, size, 4242)
	for i := range 3 {
		deadline := time.Now().Add(resumeWait)
		for got.Load() < int64(i+1)*size/8 && time.Now().Before(deadline) {
			select {
			case r := <-done:
				t.Fatalf("the download ended after %d kills: %q", i, r)
			case <-time.After(10 * time.Millisecond):
			}
		}
		a.kill("syscall")
		time.Sleep(1500 * time.Millisecond)
	}
	if r := <-done; r != "" {
		t.Errorf("download across 3 kills of syscall: %s", r)
	}
}
