package itest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// Every bad input ends in a clear message and a non-zero exit, never a hang.
func TestBadInputOnRunningAppliance(t *testing.T) {
	requireITest(t, false)
	a := boot(t, "", "--net", "user", "--fwd", fmt.Sprintf("tcp:%d:80", freePort(t)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// An unknown component.
	out, err := keepnet(ctx, "", "kill", "nosuch", "--ctl", a.ctl)
	if err == nil || !strings.Contains(out, "nosuch") {
		t.Errorf("keepnet kill nosuch = %v, %q; want a failure naming the component", err, out)
	}
	out, err = keepnet(ctx, "", "restart", "--ctl", a.ctl)
	if exitCode(err) != 2 || !strings.Contains(out, "usage") {
		t.Errorf("keepnet restart without a name = exit %d, %q; want usage and exit 2", exitCode(err), out)
	}

	// Malformed requests straight onto the control channel: each gets an
	// error answer, and the appliance keeps answering.
	conn, err := net.DialTimeout("unix", a.ctl, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(conn, "this is not json\n{\"id\":77,\"verb\":\"explode\"}\n{\"id\":78,\"verb\":\"kill\"}\n")
	sc := bufio.NewScanner(conn)
	for _, wantID := range []uint64{0, 77, 78} {
		if !sc.Scan() {
			t.Fatalf("no answer to malformed request %d: %v", wantID, sc.Err())
		}
		var r ctl.Response
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.OK || r.ID != wantID || !strings.Contains(r.Error, "malformed") {
			t.Errorf("answer %s, want a 'malformed' error for id %d", sc.Text(), wantID)
		}
	}
	conn.Close()
	if st := a.status(); !st.Ready {
		t.Errorf("after malformed requests status = %+v, want still ready", st)
	}

	// A forwarded port another program holds: keepnet up refuses before
	// starting QEMU.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	out, err = keepnet(ctx, "", "up", "--detach", "--ctl", filepath.Join(dir, "c.sock"), "--fwd", fmt.Sprintf("tcp:%d:80", busy))
	if err == nil || !strings.Contains(out, "in use") {
		t.Errorf("keepnet up with port %d in use = %v, %q; want 'in use'", busy, err, out)
	}
	// A second appliance on the same control channel.
	out, err = keepnet(ctx, "", "up", "--detach", "--ctl", a.ctl, "--fwd", fmt.Sprintf("tcp:%d:80", freePort(t)))
	if err == nil || !strings.Contains(out, "already running") {
		t.Errorf("keepnet up on a live control channel = %v, %q; want 'already running'", err, out)
	}
}

func TestBadInputWithoutAppliance(t *testing.T) {
	requireITest(t, false)
	// A hang runs into this and fails the case it hangs in.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kn-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "c.sock")

	tests := []struct {
		name     string
		args     []string
		env      []string
		want     string
		wantCode int
	}{
		{"missing kernel", []string{"up", "--detach", "--ctl", sock, "--kernel", "/nonexistent/bzImage"}, nil, "kernel /nonexistent/bzImage not found", 1},
		{"no qemu", []string{"up", "--detach", "--ctl", sock}, []string{"PATH=" + dir}, "qemu-system-x86_64 not found", 1},
		{"bad flag", []string{"up", "--stack", "bsd"}, nil, "want keepnet or linux", 2},
		{"unknown command", []string{"reboot"}, nil, "unknown command", 2},
		{"status without appliance", []string{"status", "--ctl", sock}, nil, "keepnet up", 1},
		{"down without appliance", []string{"down", "--ctl", sock}, nil, "keepnet up", 1},
	}
	for _, tt := range tests {
		cmd := exec.CommandContext(ctx, keepnetBin(), tt.args...)
		cmd.Env = append(os.Environ(), tt.env...)
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != tt.wantCode || !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: keepnet %s = exit %d, %q; want exit %d and %q", tt.name, strings.Join(tt.args, " "), code, out, tt.wantCode, tt.want)
		}
	}

	// A guest that never becomes ready: told to use vsock for its control
	// channel while QEMU gives it none, init boots but is never reachable.
	// keepnet up gives up at --timeout (the message names the one it
	// used), says so, shows the console's tail, and leaves no QEMU behind.
	out, err := keepnet(ctx, "", "up", "--detach", "--ctl", sock, "--append", "keepnet.ctl=vsock", "--timeout", "8s", "--fwd", fmt.Sprintf("tcp:%d:80", freePort(t)))
	// (The console is empty when a loaded host has not booted the kernel
	// that far within the 8 s; keepnet up says so.)
	if exitCode(err) != 1 || !strings.Contains(out, "did not become ready within 8s") ||
		!strings.Contains(out, "--- last lines of the console") && !strings.Contains(out, "--- console: (empty)") {
		t.Errorf("keepnet up with an unreachable guest = exit %d, %q; want exit 1, the timeout and the console tail", exitCode(err), out)
	}
	// A guest whose kernel cannot start init (the initramfs is garbage):
	// the kernel panics, QEMU exits, keepnet up says so at once (its
	// --timeout is only for a loaded host's slow panic).
	junk := filepath.Join(dir, "junk.cpio")
	os.WriteFile(junk, []byte(strings.Repeat("not a cpio archive\n", 100)), 0o644)
	out, err = keepnet(ctx, "", "up", "--detach", "--ctl", sock, "--initrd", junk, "--timeout", "5m", "--fwd", fmt.Sprintf("tcp:%d:80", freePort(t)))
	if exitCode(err) != 1 || !strings.Contains(out, "qemu exited before the appliance was ready") {
		t.Errorf("keepnet up with a garbage initramfs = exit %d, %q; want exit 1 and 'qemu exited'", exitCode(err), out)
	}
	for _, marker := range []string{sock, junk} {
		if pids, _ := exec.Command("pgrep", "-f", "qemu-system-x86_64.*"+marker).Output(); len(pids) > 0 {
			t.Errorf("QEMU still running after a failed boot (%s): pids %s", marker, pids)
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
