package itest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"keepnet/apps/splitmix"
	"keepnet/boot/ctl"
)

// hangSize is what each download of the hang tests moves: enough that it
// is still running when the component stops answering.
const hangSize = 24 << 20

// A component that stops answering, by SIGSTOP or by a test hook (an
// infinite loop, a deadlock), during a download is killed as hung and
// restarted with a new generation; status says hung and counts it. The
// crash of every component is transparent now (tcp's since it keeps its
// connections, servers/tcp/keep.go): the download completes, intact. One
// appliance serves every case.
func TestHangDetection(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--append", "keepnet.testhooks=1")...)
	t.Cleanup(a.logHangs)
	httpWarm(t, n)
	seed := uint64(100)
	for _, comp := range []string{"e1000.0", "ip", "udp", "store", "tcp", "syscall"} {
		seed++
		a.hangDuringDownload(n, comp, seed, func() { a.signal(comp, "STOP") })
	}
	for _, tc := range []struct{ comp, hook string }{{"ip", "spin"}, {"tcp", "deadlock"}} {
		seed++
		a.hangDuringDownload(n, tc.comp, seed, func() { a.hook(tc.comp, tc.hook) })
	}
}

// transparent are the components whose crash a TCP download survives:
// all of them. (A component that is not gets a new download checked
// instead.)
var transparent = map[string]bool{"e1000.0": true, "ip": true, "udp": true, "store": true, "syscall": true, "tcp": true}

// hangDuringDownload waits until the appliance is ready, starts a
// download, makes comp hang once a first part has come, and checks that
// comp is restarted as hung and that traffic resumes.
func (a *appliance) hangDuringDownload(n *netns, comp string, seed uint64, hang func()) {
	t := a.t
	t.Helper()
	a.waitReady()
	before, _ := a.status().Component(comp)
	got, done := n.download(t, hangSize, seed)
	deadline := time.Now().Add(resumeWait)
	for got.Load() < hangSize/8 && time.Now().Before(deadline) {
		select {
		case r := <-done:
			t.Fatalf("%s: the download ended before the hang: %v", comp, r)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stopped := time.Now()
	hang()
	c := a.waitComponent(comp, func(c ctl.Component) bool { return c.Generation > before.Generation && c.State == "running" })
	t.Logf("%s: hung, running again as generation %d %v later (last exit %q, hangs %d)",
		comp, c.Generation, time.Since(stopped).Round(time.Millisecond), c.LastExit, c.Hangs)
	if c.Generation != before.Generation+1 || !strings.HasPrefix(c.LastExit, "hung") || c.Hangs != before.Hangs+1 {
		t.Errorf("%s after it hung: %+v; want generation %d, last exit hung..., hangs %d", comp, c, before.Generation+1, before.Hangs+1)
	}
	r := <-done
	switch {
	case transparent[comp] && r != "":
		t.Errorf("%s hung during a download: %s", comp, r)
	case !transparent[comp]:
		t.Logf("%s hung during a download (its crash resets connections): %q", comp, r)
		a.waitReady()
		if _, done := n.download(t, 1<<20, seed+1000); <-done != "" {
			t.Errorf("after %s hung: a new download failed", comp)
		}
	}
}

// waitReady polls status until the appliance says ready, at most
// resumeWait: an app whose socket a restart lost restarts too.
func (a *appliance) waitReady() {
	a.t.Helper()
	deadline := time.Now().Add(resumeWait)
	for {
		st := a.status()
		if st.Ready {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("not ready within %v: %v", resumeWait, st.Waiting)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logHangs logs the supervisor's hang lines from the console: the ones the
// test caused, and any it did not.
func (a *appliance) logHangs() {
	b, _ := os.ReadFile(a.console)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "supervisor:") && (strings.Contains(line, ": hung:") || strings.Contains(line, "hang check")) {
			a.t.Log(line)
		}
	}
}

// signal sends a signal to a component through `keepnet kill --signal`.
func (a *appliance) signal(comp, sig string) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := keepnet(ctx, "", "kill", "--signal", sig, comp, "--ctl", a.ctl); err != nil {
		a.t.Fatalf("keepnet kill --signal %s %s: %v\n%s", sig, comp, err, out)
	}
}

// hook runs a test hook in a component through `keepnet hook`.
func (a *appliance) hook(comp, hook string) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := keepnet(ctx, "", "hook", comp, hook, "--ctl", a.ctl); err != nil {
		a.t.Fatalf("keepnet hook %s %s: %v\n%s", comp, hook, err, out)
	}
}

// waitComponent polls status until cond holds for comp, at most
// resumeWait, and returns it.
func (a *appliance) waitComponent(comp string, cond func(ctl.Component) bool) ctl.Component {
	a.t.Helper()
	deadline := time.Now().Add(resumeWait)
	for {
		c, _ := a.status().Component(comp)
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: not as awaited within %v: %+v", comp, resumeWait, c)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// download has curl in the namespace fetch /bytes?n=size&seed=seed in the
// background. got counts the bytes that came; done gets "" once all came
// intact, else what went wrong.
// rate, if given, is curl's --limit-rate, in bytes per second.
func (n *netns) download(t testing.TB, size int64, seed uint64, rate ...int64) (got *atomic.Int64, done <-chan string) {
	args, limit := curlArgsAt(transferLimit(t, size, floorMbps), size, rate)
	url := fmt.Sprintf("http://%s/bytes?n=%d&seed=%d", n.GuestIP, size, seed)
	ctx, cancel := context.WithTimeout(context.Background(), limit+30*time.Second)
	cmd := exec.CommandContext(ctx, "ip", append(append([]string{"netns", "exec", n.Name, "curl"}, args...), url)...)
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	got = new(atomic.Int64)
	result := make(chan string, 1)
	go func() {
		defer cancel()
		h, check := sha256.New(), newSplitCheck(seed)
		_, copyErr := io.Copy(io.MultiWriter(h, check, byteCount{got}), stdout)
		err := cmd.Wait()
		want := sha256.New()
		io.Copy(want, io.LimitReader(splitmix.New(seed), size))
		switch {
		case err != nil || copyErr != nil:
			result <- fmt.Sprintf("curl %s: %v, %v after %d bytes: %s", url, err, copyErr, check.n, stderr.Bytes())
		case check.n != size || check.bad >= 0:
			result <- fmt.Sprintf("%s: %d bytes came, the first wrong one at %d (-1: none); want %d", url, check.n, check.bad, size)
		case !bytes.Equal(h.Sum(nil), want.Sum(nil)):
			result <- fmt.Sprintf("%s: sha256 %x, want %x", url, h.Sum(nil), want.Sum(nil))
		default:
			result <- ""
		}
	}()
	return got, result
}

// byteCount counts what is written to it.
type byteCount struct{ n *atomic.Int64 }

func (c byteCount) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// A device that stops transmitting behind the driver's back (the test hook
// clears TCTL.EN through the BAR) during a download: the driver's watchdog
// resets it, counts it, and the download completes, with no restart of
// the driver.
func TestDeviceWatchdog(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--append", "keepnet.testhooks=1")...)
	httpWarm(t, n)
	before, _ := a.status().Component("e1000.0")
	got, done := n.download(t, hangSize, 7)
	deadline := time.Now().Add(resumeWait)
	for got.Load() < hangSize/8 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stopped := time.Now()
	a.hook("e1000.0", "stop-tx")
	if r := <-done; r != "" {
		t.Errorf("the device stopped during a download: %s", r)
	}
	t.Logf("download done %v after the device stopped", time.Since(stopped).Round(time.Millisecond))
	st := a.waitStats("e1000.0", func(m map[string]any) bool { return num(m, "TxHangResets") >= 1 })
	if num(st, "TxHangResets") != 1 {
		t.Errorf("e1000.0 stats: TxHangResets %v, want 1", st["TxHangResets"])
	}
	if c, _ := a.status().Component("e1000.0"); c.Generation != before.Generation {
		t.Errorf("e1000.0 restarted (%+v): the watchdog, not the supervisor, should have handled a stopped device", c)
	}
	console, _ := os.ReadFile(a.console)
	if !strings.Contains(string(console), "transmit hang: device reset") {
		t.Error("the console does not log the reset")
	}
}
