package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMainUsageErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{nil, 2, "usage: keepnet COMMAND"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"up", "--stack", "bsd"}, 2, "want keepnet or linux"},
		{[]string{"up", "--net", "bridge"}, 2, "want user, tap:IFNAME or stream:PATH"},
		{[]string{"up", "--fwd", "tcp:99999:80"}, 2, "ports must be 1..65535"},
		{[]string{"up", "--net", "tap:kn0", "--fwd", "tcp:8080:80"}, 2, "--fwd works only with --net user"},
		{[]string{"up", "--ip", "10.0.2.15"}, 2, "prefix length"},
		{[]string{"up", "--net", "tap:kn0", "--net", "tap:kn1"}, 2, "--net number 2 needs its address"},
		{[]string{"up", "--net", "tap:kn1,ip=10.78.0.1"}, 2, "not an IPv4 address with prefix length"},
		{[]string{"up", "--route", "10.90.0.0/16"}, 2, "want IPv4-PREFIX,via=ADDR"},
		{[]string{"up", "--accel", "hvf"}, 2, "want auto, kvm or tcg"},
		{[]string{"up", "--nic", "rtl8139"}, 2, "want one of e1000, e1000-82545em, e1000-82544gc, e1000e"},
		{[]string{"up", "--net", "user,nic=virtio"}, 2, `NIC model "virtio"`},
		{[]string{"up", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"up", "--authorized-keys", "/nonexistent/keys"}, 2, "--authorized-keys"},
		{[]string{"up", "--authorized-keys", "cli_test.go"}, 2, "--authorized-keys cli_test.go"},
		{[]string{"up", "--disk", "a.img", "--iso", "a.iso"}, 2, "give one"},
		{[]string{"up", "--pxe", "--iso", "a.iso"}, 2, "give one"},
		{[]string{"up", "--pxe", "--stack", "linux"}, 2, "--stack: an image boot"},
		{[]string{"up", "--disk", "a.img", "--ip", "10.0.0.2/24", "--append", "quiet"}, 2, "--append, --ip: an image boot takes its kernel command line from the image"},
		{[]string{"up", "--iso", "a.iso", "--firmware", "coreboot"}, 2, "want bios or uefi"},
		{[]string{"up", "--firmware", "uefi"}, 2, "--firmware boots an image: give --disk or --iso"},
		{[]string{"kill", "--ctl", sock}, 2, "usage: keepnet kill NAME"},
		{[]string{"restart", "a", "b", "--ctl", sock}, 2, "unexpected argument"},
		{[]string{"status", "--ctl", sock}, 1, "keepnet up"},
		{[]string{"kill", "store", "--ctl", sock}, 1, "keepnet up"},
		{[]string{"kill", "--signal", "STOP", "store", "--ctl", sock}, 1, "keepnet up"},
		{[]string{"kill", "--signal", "NAP", "store", "--ctl", sock}, 2, `unknown signal "NAP"`},
		{[]string{"hook", "store", "--ctl", sock}, 2, "usage: keepnet hook NAME HOOK"},
		{[]string{"hook", "store", "spin", "--ctl", sock}, 1, "keepnet up"},
		{[]string{"inject", "--ctl", sock}, 2, "usage: keepnet inject NAME"},
		{[]string{"inject", "udp", "--ctl", sock}, 2, "--site or --type is needed"},
		{[]string{"inject", "udp", "tcp", "--site", "1", "--ctl", sock}, 2, `unexpected argument "tcp"`},
		{[]string{"inject", "udp", "--type", "bitrot", "--ctl", sock}, 2, `unknown fault type "bitrot"`},
		{[]string{"inject", "udp", "--site", "1", "--after", "2", "--prob", "0.5", "--ctl", sock}, 2, "--after or --prob, not both"},
		{[]string{"inject", "udp", "--site", "1", "--prob", "2", "--ctl", sock}, 2, "want 0 < P <= 1"},
		{[]string{"inject", "udp", "--site", "1", "--after", "0", "--ctl", sock}, 2, "hits count from 1"},
		{[]string{"inject", "udp", "--site", "99999999999", "--ctl", sock}, 2, "no such site"},
		{[]string{"inject", "--disarm", "--sigkill", "udp", "--ctl", sock}, 2, "one at a time"},
		{[]string{"inject", "--sigstop", "udp", "--site", "1", "--ctl", sock}, 2, "take no --site"},
		{[]string{"inject", "udp", "--site", "1", "--ctl", sock}, 1, "keepnet up"},
		{[]string{"inject", "--sigkill", "udp", "--ctl", sock}, 1, "keepnet up"},
		{[]string{"help"}, 0, ""},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := Main(tt.args, &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("Main(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantErr)
		}
	}
}

// The default control channel lives in a directory only its user enters.
func TestDefaultCtlIsPrivate(t *testing.T) {
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	if got, want := DefaultCtl(), filepath.Join(rt, "keepnet", "ctl.sock"); got != want {
		t.Errorf("DefaultCtl() = %q, want %q", got, want)
	}
	dir := filepath.Dir(DefaultCtl())
	if err := privateDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created %s with mode %v (%v), want 0700", dir, fi.Mode().Perm(), err)
	}
	os.Chmod(dir, 0o755)
	if err := privateDir(dir); err == nil {
		t.Errorf("privateDir(%s) with mode 0755 = nil, want an error", dir)
	}
}
