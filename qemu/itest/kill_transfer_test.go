package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// TestSyscallKillDuringDownload: `keepnet kill syscall` three times, a
// second or two apart, during one 50 MB download from the appliance's
// httpd: the applications adopt their sockets through each new SYSCALL
// generation (servers/socket's recovery), and curl's bytes match the
// /bytes hash; then the same for a 25 MB upload to /sink.
func TestSyscallKillDuringDownload(t *testing.T) { killDuringTransfers(t, "syscall") }

// TestTCPKillDuringDownload: the same with `keepnet kill tcp`: each new
// tcp generation adopts the connections its predecessor kept
// (servers/tcp/keep.go), and curl notices nothing but a pause.
func TestTCPKillDuringDownload(t *testing.T) { killDuringTransfers(t, "tcp") }

func killDuringTransfers(t *testing.T, comp string) {
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
		a.kill(comp)
		time.Sleep(1500 * time.Millisecond)
	}
	if r := <-done; r != "" {
		t.Errorf("download across 3 kills of %s: %s", comp, r)
	}

	// And an upload to /sink: three kills while curl sends 25 MB (a
	// second or less apart: the upload takes a few seconds).
	a.waitReady()
	kills := make(chan error, 1)
	go func() {
		var err error
		for i := range 3 {
			time.Sleep(700 * time.Millisecond)
			// Each kill hits a running generation, not one starting.
			if werr := a.awaitRunning(comp, i+4); werr != nil {
				kills <- werr
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, kerr := keepnet(ctx, "", "kill", comp, "--ctl", a.ctl)
			cancel()
			if kerr != nil && err == nil {
				err = fmt.Errorf("keepnet kill %s: %v\n%s", comp, kerr, out)
			}
		}
		kills <- err
	}()
	start := time.Now()
	httpUpload(t, n, 25<<20, 4343, floorMbps)
	t.Logf("25 MB uploaded in %v", time.Since(start).Round(time.Millisecond))
	if err := <-kills; err != nil {
		t.Error(err)
	}
	if c, _ := a.status().Component(comp); c.Generation < 7 {
		t.Errorf("%s generation %d after six kills, want at least 7 (all six kills happened)", comp, c.Generation)
	}
}

// awaitRunning waits, at most resumeWait and without failing the test (it
// may run beside it), until comp runs as generation gen or later.
func (a *appliance) awaitRunning(comp string, gen int) error {
	deadline := time.Now().Add(resumeWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := keepnetAt(ctx, a.bin, "", "status", "--ctl", a.ctl)
		cancel()
		var st ctl.Status
		if err == nil && json.Unmarshal([]byte(out), &st) == nil {
			if c, ok := st.Component(comp); ok && c.State == "running" && c.Generation >= gen {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not running as generation %d within %v (%v)", comp, gen, resumeWait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
