package itest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stackComponents are the components of keepnet's stack, which keep no
// capability at all.
var stackComponents = []string{"store", "ip", "udp", "tcp", "syscall"}

// TestPrivilege boots keepnet's stack once and checks that nothing runs
// with more privilege than it needs (issue 11, items 5-7): every component
// its own uid, no capabilities for the stack's servers, no_new_privs and
// a seccomp filter (under which nothing crashes); an
// application cannot kill a component, nor read another's store keys.
func TestPrivilege(t *testing.T) {
	requireITest(t, true)
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--authorized-keys", key+".pub")...)

	st := a.status()
	owner := map[uint32]string{}
	for _, c := range st.Components {
		p := c.Privilege
		if p == nil {
			t.Errorf("%s: no privilege in status (state %s, pid %d)", c.Name, c.State, c.PID)
			continue
		}
		t.Logf("%-8s uid %d CapEff %s seccomp %v no_new_privs %v", c.Name, p.UID, p.CapEff, p.Seccomp, p.NoNewPrivs)
		if p.UID == 0 {
			t.Errorf("%s runs as root", c.Name)
		}
		if other, ok := owner[p.UID]; ok {
			t.Errorf("%s and %s share uid %d", c.Name, other, p.UID)
		}
		owner[p.UID] = c.Name
		if !p.NoNewPrivs || !p.Seccomp {
			t.Errorf("%s: no_new_privs %v, seccomp %v; want both", c.Name, p.NoNewPrivs, p.Seccomp)
		}
		if strings.Contains(c.LastExit, "bad system call") {
			t.Errorf("%s was killed by its seccomp filter (last exit %q): a system call is missing from its profile (the console's audit line says which)", c.Name, c.LastExit)
		}
	}
	for _, name := range stackComponents {
		if c, ok := st.Component(name); !ok || c.Privilege == nil || c.Privilege.CapEff != "0000000000000000" {
			t.Errorf("%s: %+v, want CapEff 0", name, c.Privilege)
		}
	}
	// Publishing counters passes the store's access control.
	for _, name := range []string{"e1000.0", "ip", "udp", "tcp", "syscall"} {
		if c, _ := st.Component(name); c.Stats == nil {
			t.Errorf("%s published no counters: the store refused them?", name)
		}
	}
	// sshd is an application: init answers its status request but
	// refuses its kill.
	before, _ := a.status().Component("tcp")
	var (
		out string
		err error
	)
	for range 3 { // sshd gives init 3 s to answer, which a busy host can exceed
		if out, err = n.ssh(t, key, "status"); err == nil {
			break
		}
	}
	if err != nil || !strings.Contains(out, `"tcp"`) {
		t.Errorf("ssh appliance status = %q, %v; want the components", out, err)
	}
	out, err = n.ssh(t, key, "kill tcp")
	if err == nil || !strings.Contains(out, "only the host") {
		t.Errorf("ssh appliance kill tcp = %q, %v; want refused, only the host may kill", out, err)
	}
	if after, _ := a.status().Component("tcp"); after.Generation != before.Generation || after.PID != before.PID {
		t.Errorf("tcp after an application's kill: generation %d pid %d, was %d and %d", after.Generation, after.PID, before.Generation, before.PID)
	}

	// The store knows sshd by its uid: its own namespace (the host key)
	// and the shared counters are readable, tcp's and ip's are not.
	for _, tc := range []struct {
		ns     string
		wantOK bool
	}{{"sshd", true}, {"stats", true}, {"tcp", false}, {"ip", false}} {
		out, err := n.ssh(t, key, "store "+tc.ns)
		switch {
		case tc.wantOK && err != nil:
			t.Errorf("sshd lists store namespace %s: %q, %v; want its keys", tc.ns, out, err)
		case !tc.wantOK && (err == nil || !strings.Contains(out, "access denied")):
			t.Errorf("sshd lists store namespace %s: %q, %v; want access denied", tc.ns, out, err)
		}
	}
}

// ssh runs a command on the appliance's SSH server with the key id,
// retrying while sshd may still be binding, and returns its output.
func (n *netns) ssh(t testing.TB, id, cmd string) (string, error) {
	var (
		out []byte
		err error
	)
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err = n.exec(ctx, nil, "ssh", "-i", id, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", "root@"+n.GuestIP, cmd)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "exit status 255") { // 255: ssh itself failed
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return string(out), err
}
