package itest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Keep-alive on keepnet (issue 19): the echo app's port 8 sets keep-alive
// on every connection it accepts (2 s idle, 1 s interval, 3 probes:
// cmd/echo -keepalive), through the socket library's SetKeepAliveConfig,
// and logs each connection that fails.
const (
	keepAlivePort  = "8"
	keepAliveLimit = 2*time.Second + 3*time.Second // idle + count * interval
	// keepAliveSlack is what the test allows past the limit: the console
	// is polled every 200 ms, and a TCG guest's timers and log lines
	// run late by a fraction of a second.
	keepAliveSlack = 2 * time.Second
)

// TestTCPKeepAlive: a connection from the namespace to the echo app's
// keep-alive port, idle. While the namespace answers, the appliance probes
// it (tcp's KeepAliveProbes grows) and it stays up, also across `keepnet
// kill tcp` (the restarted tcp adopts the connection with its keep-alive
// settings and goes on probing) and `keepnet kill syscall`. Then the namespace drops everything to and
// from the appliance (an nftables rule): the peer has vanished, and the app
// gets an error (ETIMEDOUT) within the 5 s it configured.
func TestTCPKeepAlive(t *testing.T) {
	requireITest(t, true)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft missing: install nftables (scripts/deps.sh does)")
	}
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	h := n.keepAliveConn(t, net.JoinHostPort(n.GuestIP, keepAlivePort))
	defer h.close()
	t.Logf("connection from %s", h.local)

	st := a.waitStats("tcp", func(m map[string]any) bool { return num(m, "KeepAliveProbes") >= 2 })
	if num(st, "KeepAliveProbes") < 2 {
		t.Fatalf("tcp sent %v keep-alive probes on the idle connection in %v, want 2 or more", st["KeepAliveProbes"], statsWait)
	}
	gen := num(st, "Generation")
	h.ping(t) // probes answered: the connection is up

	a.kill("tcp")
	st = a.waitStats("tcp", func(m map[string]any) bool {
		return num(m, "Generation") > gen && num(m, "KeepAliveProbes") >= 2
	})
	if num(st, "Generation") <= gen || num(st, "KeepAliveProbes") < 2 {
		t.Fatalf("after keepnet kill tcp: generation %v (was %v), %v keep-alive probes; want the new generation probing", st["Generation"], gen, st["KeepAliveProbes"])
	}
	t.Logf("tcp generation %v probes the adopted connection: KeepAliveProbes %v, KeptConns %v", st["Generation"], st["KeepAliveProbes"], st["KeptConns"])
	h.ping(t)

	// A restart of syscall leaves them alone too: the app adopts its
	// sockets, the options stay in tcp.
	probes := num(st, "KeepAliveProbes")
	a.kill("syscall")
	if err := a.awaitRunning("syscall", 2); err != nil {
		t.Fatal(err)
	}
	h.ping(t)
	st = a.waitStats("tcp", func(m map[string]any) bool { return num(m, "KeepAliveProbes") >= probes+2 })
	if num(st, "KeepAliveProbes") < probes+2 {
		t.Fatalf("after keepnet kill syscall: KeepAliveProbes %v, was %v; want the probes going on", st["KeepAliveProbes"], probes)
	}

	// The peer vanishes.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rules := fmt.Sprintf(`table inet knka {
	chain in { type filter hook input priority 0; policy accept; ip saddr %[1]s drop; }
	chain out { type filter hook output priority 0; policy accept; ip daddr %[1]s drop; }
}
`, n.GuestIP)
	if out, err := n.exec(ctx, []byte(rules), "nft", "-f", "-"); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	dropped := time.Now()
	re := `echo: tcp ` + regexp.QuoteMeta(h.local) + `: connection failed [^\n]*`
	line := a.consoleLines(re, 1)[0]
	took := time.Since(dropped)
	t.Logf("the app heard %v after the peer vanished: %s", took.Round(10*time.Millisecond), line)
	if !strings.Contains(line, "timed out") {
		t.Errorf("the app's error: %q, want a timeout", line)
	}
	if took > keepAliveLimit+keepAliveSlack {
		t.Errorf("the app heard %v after the peer vanished, want within %v (keep-alive's idle + count * interval) and %v of slack",
			took.Round(10*time.Millisecond), keepAliveLimit, keepAliveSlack)
	}
	st = a.waitStats("tcp", func(m map[string]any) bool { return num(m, "KeepAliveTimeouts") >= 1 })
	if num(st, "KeepAliveTimeouts") < 1 {
		t.Errorf("tcp's KeepAliveTimeouts = %v, want 1", st["KeepAliveTimeouts"])
	}
}

// kaHelper is TestHelperKeepAliveConn running in the namespace.
type kaHelper struct {
	local string // the connection's address in the namespace
	stdin io.WriteCloser
	lines *bufio.Scanner
	cmd   *exec.Cmd
}

// keepAliveConn runs TestHelperKeepAliveConn in n's namespace: one idle
// connection to target, held until close.
func (n *netns) keepAliveConn(t *testing.T, target string) *kaHelper {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", n.Name, self, "-test.run=^TestHelperKeepAliveConn$")
	cmd.Env = append(os.Environ(), "KA_TARGET="+target)
	cmd.Stderr = os.Stderr
	stdin, stdout := startPiped(t, cmd)
	h := &kaHelper{stdin: stdin, lines: bufio.NewScanner(stdout), cmd: cmd}
	r := h.result(t)
	local, ok := strings.CutPrefix(r, "open ")
	if !ok {
		h.close()
		t.Fatalf("keep-alive helper: %q, want open", r)
	}
	h.local = local
	return h
}

// result is the helper's next "result:" line.
func (h *kaHelper) result(t *testing.T) string {
	t.Helper()
	for h.lines.Scan() {
		if r, ok := strings.CutPrefix(h.lines.Text(), "result: "); ok {
			return r
		}
	}
	t.Fatal("keep-alive helper ended without a result")
	return ""
}

// ping has the helper send a line and read its echo.
func (h *kaHelper) ping(t *testing.T) {
	t.Helper()
	fmt.Fprintln(h.stdin, "ping")
	if r := h.result(t); r != "ping ok" {
		t.Fatalf("keep-alive helper: %q, want the echo back", r)
	}
}

func (h *kaHelper) close() {
	h.stdin.Close()
	h.cmd.Wait()
}

// TestHelperKeepAliveConn is not a test of its own: TestTCPKeepAlive runs
// the test binary in its namespace with KA_TARGET set, and this dials the
// target (no keep-alive of its own: the namespace's kernel only answers
// the appliance's probes), sends a line and reads its echo, prints
// "result: open LOCALADDR", then for each "ping" on its standard input
// does it again ("result: ping ok" or the error), until the input ends.
func TestHelperKeepAliveConn(t *testing.T) {
	target := os.Getenv("KA_TARGET")
	if target == "" {
		return // run only as the helper
	}
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1}
	c, err := d.Dial("tcp", target)
	if err != nil {
		fmt.Printf("result: dial %v\n", err)
		return
	}
	defer c.Close()
	echo := func() error {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		got, err := bufio.NewReader(io.LimitReader(c, 5)).ReadString('\n')
		if err != nil || got != "ping\n" {
			return fmt.Errorf("echo %q: %v", got, err)
		}
		return nil
	}
	if err := echo(); err != nil {
		fmt.Printf("result: first echo %v\n", err)
		return
	}
	fmt.Printf("result: open %s\n", c.LocalAddr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := echo(); err != nil {
			fmt.Printf("result: ping %v\n", err)
			continue
		}
		fmt.Println("result: ping ok")
	}
}
