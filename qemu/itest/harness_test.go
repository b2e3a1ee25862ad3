// Package itest boots the real appliance under QEMU and talks to it the way a
// user does: through bin/keepnet, curl and ping from a network namespace the
// test creates. `make test` sets KEEPNET_ITEST=1, which makes every
// prerequisite mandatory; a plain `go test ./...` skips these tests.
package itest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// root is the repository root (this package lives in qemu/itest).
var root, _ = filepath.Abs("../..")

func keepnetBin() string { return filepath.Join(root, "bin/keepnet") }

// requireITest skips unless KEEPNET_ITEST=1, and then fails on any missing
// prerequisite rather than skipping: under `make test` nothing may be skipped.
func requireITest(t testing.TB, needRoot bool) {
	t.Helper()
	if os.Getenv("KEEPNET_ITEST") != "1" {
		t.Skip("boots QEMU; run with KEEPNET_ITEST=1 (make test)")
	}
	for _, f := range []string{keepnetBin(), filepath.Join(root, "images/kernel/bzImage"), filepath.Join(root, "images/out/initramfs.cpio")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s missing: run 'make all image' first", f)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not installed")
	}
	if needRoot && os.Geteuid() != 0 {
		t.Fatal("this test creates network namespaces and tap devices: run it as root")
	}
}

// run runs a command, failing the test with its output if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keepnet runs bin/keepnet (inside netns when not empty) and returns its
// combined output and error.
func keepnet(ctx context.Context, netns string, args ...string) (string, error) {
	return keepnetAt(ctx, keepnetBin(), netns, args...)
}

// keepnetAt is keepnet with the keepnet command at bin, which may be another
// checkout's (BenchmarkTCPBulkAB).
func keepnetAt(ctx context.Context, bin, netns string, args ...string) (string, error) {
	var cmd *exec.Cmd
	if netns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// appliance is one booted guest.
type appliance struct {
	t       testing.TB
	bin     string // the keepnet command that booted it, and talks to it
	ctl     string
	console string
	netns   string
	ready   time.Duration // QEMU start to ready, as keepnet up measured it
}

// bootWait is how long boot lets `keepnet up` wait for ready.
const bootWait = 5 * time.Minute

// boot starts the appliance detached with the given extra `keepnet up`
// flags and powers it off when the test ends.
func boot(t testing.TB, netns string, args ...string) *appliance {
	t.Helper()
	return bootWith(t, keepnetBin(), netns, args...)
}

// bootWith is boot with the keepnet command at bin: the kernel and
// initramfs it boots are those of bin's checkout (bin/../images).
func bootWith(t testing.TB, bin, netns string, args ...string) *appliance {
	t.Helper()
	dir, err := os.MkdirTemp("", "kn-") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &appliance{t: t, bin: bin, ctl: filepath.Join(dir, "ctl.sock"), console: filepath.Join(dir, "console.log"), netns: netns}
	// Booting takes seconds; a host loaded by other guests has taken 100 s.
	// Only a hang takes bootWait.
	ctx, cancel := context.WithTimeout(context.Background(), bootWait+time.Minute)
	defer cancel()
	start := time.Now()
	out, err := keepnetAt(ctx, bin, netns, append([]string{"up", "--detach", "--ctl", a.ctl, "--console", a.console, "--timeout", bootWait.String()}, args...)...)
	if err != nil {
		t.Fatalf("keepnet up: %v\n%s", err, out)
	}
	t.Logf("keepnet up (%v): %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	var secs float64
	if i := strings.Index(out, "ready in "); i >= 0 {
		fmt.Sscanf(out[i:], "ready in %fs", &secs)
	}
	a.ready = time.Duration(secs * float64(time.Second))
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(a.console); err == nil {
				t.Logf("console:\n%s", tail(string(b), 400))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := keepnetAt(ctx, a.bin, "", "down", "--ctl", a.ctl); err != nil && !strings.Contains(out, "no such file") {
			t.Logf("keepnet down: %v\n%s", err, out)
		}
	})
	return a
}

// status asks the appliance for its status through `keepnet status`.
func (a *appliance) status() ctl.Status {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := keepnetAt(ctx, a.bin, "", "status", "--json", "--ctl", a.ctl)
	if err != nil {
		a.t.Fatalf("keepnet status: %v\n%s", err, out)
	}
	var st ctl.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		a.t.Fatalf("keepnet status printed %q: %v", out, err)
	}
	return st
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// netns is a network namespace with a tap device the appliance's NIC is
// plugged into; the host side of the link has address HostIP.
type netns struct {
	Name, Tap string
	HostIP    string // the namespace's address on the link
	GuestIP   string // the appliance's address
	Prefix    int
}

// newNetns creates a namespace and a tap device in it, removed when the test
// ends. Traffic stays inside the namespace.
func newNetns(t testing.TB) *netns { return newNetnsAt(t, "10.77.0.1", "10.77.0.2") }

// newNetnsAt is newNetns with the namespace at hostIP/24 and the appliance
// at guestIP.
func newNetnsAt(t testing.TB, hostIP, guestIP string) *netns {
	t.Helper()
	id := make([]byte, 3)
	rand.Read(id)
	n := &netns{Name: "kn-" + hex.EncodeToString(id), Tap: "kntap" + hex.EncodeToString(id), HostIP: hostIP, GuestIP: guestIP, Prefix: 24}
	run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	run(t, "ip", "-n", n.Name, "link", "set", "lo", "up")
	run(t, "ip", "-n", n.Name, "tuntap", "add", "dev", n.Tap, "mode", "tap")
	run(t, "ip", "-n", n.Name, "addr", "add", fmt.Sprintf("%s/%d", n.HostIP, n.Prefix), "dev", n.Tap)
	run(t, "ip", "-n", n.Name, "link", "set", n.Tap, "up")
	return n
}

// upArgs are the `keepnet up` flags that plug the appliance into n.
func (n *netns) upArgs() []string {
	return []string{"--net", "tap:" + n.Tap, "--ip", fmt.Sprintf("%s/%d", n.GuestIP, n.Prefix), "--gw", n.HostIP, "--dns", n.HostIP}
}

// exec runs a command inside the namespace with a timeout.
func (n *netns) exec(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// freePort returns a TCP port on 127.0.0.1 nobody listens on right now.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPiped starts cmd with pipes to its standard input and from its
// standard output, as the helpers that talk to a test line by line want;
// it fails t if cmd cannot start.
func startPiped(t testing.TB, cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if stdout, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return stdin, stdout
}
