package itest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/kernel/wiring"
	"keepnet/servers/store"
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
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--authorized-keys", key+".pub", "--append", "keepnet.testhooks=1")...)

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
	// No component failed to enter its sandbox (a start that did exits
	// and is retried, which status alone would not show).
	if b, err := os.ReadFile(a.console); err != nil {
		t.Error(err)
	} else if i := strings.Index(string(b), "sandbox: "); i >= 0 {
		t.Errorf("a component could not enter its sandbox: %q", strings.SplitN(string(b[i:]), "\n", 2)[0])
	}
	// A CPU profile still works in the sandbox: SIGUSR1 from init, the
	// profiler's timers, the file in the shared profile directory.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prof := filepath.Join(dir, "tcp.pprof")
	if out, err := keepnet(ctx, "", "profile", "tcp", "--seconds", "1", "-o", prof, "--ctl", a.ctl); err != nil {
		t.Errorf("keepnet profile tcp: %v\n%s", err, out)
	} else if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Errorf("keepnet profile tcp wrote %v (%v), want a profile", fi, err)
	}
	// Publishing counters passes the store's access control. Status
	// gives the store 300 ms, which a loaded host can exceed: ask again.
	for _, name := range []string{"e1000.0", "ip", "udp", "tcp", "syscall"} {
		var c ctl.Component
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			if c, _ = a.status().Component(name); c.Stats != nil {
				break
			}
		}
		if c.Stats == nil {
			t.Errorf("%s published no counters: the store refused them?", name)
		}
	}

	// sshd is an application: init answers its status request but
	// refuses its kill (the supervisor never hears of it).
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
	if b, _ := os.ReadFile(a.console); regexp.MustCompile(`(?m)^supervisor: tcp: .*requested`).Match(b) {
		t.Error("the supervisor killed tcp at an application's request")
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

	// tcp, made to try as a fault in it would, can neither write ip's
	// pools nor read or write another component's store keys.
	a.hook("tcp", wiring.HookProbePools)
	pools := a.consoleLines(`(?m)^tcp: probe: (pool|no read-only).*$`, 1)
	a.hook("tcp", store.HookProbe)
	stores := a.consoleLines(`(?m)^tcp: probe: store .*$`, 3)
	ipPool := false
	for _, l := range pools {
		t.Log(l)
		ipPool = ipPool || strings.HasPrefix(l, "tcp: probe: pool keepnet:ip.")
		if strings.Count(l, ": refused (") != 2 {
			t.Errorf("tcp wrote a pool it reads: %q", l)
		}
	}
	if !ipPool {
		t.Errorf("tcp probed no pool of ip's: %q", pools)
	}
	for _, l := range stores {
		t.Log(l)
		if !strings.Contains(l, ": refused (store: ") || !strings.Contains(l, "access denied") {
			t.Errorf("the store let tcp through: %q", l)
		}
	}
}

// consoleLines waits, at most resumeWait, until the console has at least
// min lines matching re, and returns them.
func (a *appliance) consoleLines(re string, min int) []string {
	a.t.Helper()
	r := regexp.MustCompile(re)
	deadline := time.Now().Add(resumeWait)
	for {
		b, _ := os.ReadFile(a.console)
		// Whole lines only: the serial console may be in the middle of
		// writing the last one.
		b = b[:bytes.LastIndexByte(b, '\n')+1]
		if m := r.FindAllString(string(b), -1); len(m) >= min {
			return m
		} else if time.Now().After(deadline) {
			a.t.Fatalf("console: %d lines matching %s after %v, want %d", len(m), re, resumeWait, min)
		}
		time.Sleep(200 * time.Millisecond)
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
