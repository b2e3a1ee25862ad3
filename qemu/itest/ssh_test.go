package itest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The OpenSSH client runs a command on the appliance with the key given to
// keepnet up --authorized-keys; another key is refused.
func TestSSH(t *testing.T) {
	requireITest(t, true)
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Fatal("ssh-keygen not installed (make deps installs openssh-client)")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	other := filepath.Join(dir, "other")
	for _, k := range []string{key, other} {
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k)
	}
	n := newNetns(t)
	boot(t, n.Name, append(n.upArgs(), "--stack", "linux", "--authorized-keys", key+".pub")...)
	ssh := func(id, cmd string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := n.exec(ctx, nil, "ssh", "-i", id, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", "root@"+n.GuestIP, cmd)
		return string(out), err
	}
	var out string
	var err error
	for i := 0; i < 10; i++ { // sshd may still be binding right after ready
		if out, err = ssh(key, "echo hello"); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || out != "hello\n" {
		t.Fatalf("ssh appliance echo hello = %q, %v; want hello", out, err)
	}
	if out, err := ssh(key, "status"); err != nil || !strings.Contains(out, `"sshd"`) {
		t.Errorf("ssh appliance status = %q, %v; want the components, sshd among them", out, err)
	}
	if out, err := ssh(other, "echo hello"); err == nil {
		t.Errorf("ssh with a key not authorized = %q, want refused", out)
	}
}
