package itest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// pfRules is the rule set TestPF boots with: the appliance as a firewall
// of itself. Its line numbers are what `keepnet pf rules` shows.
const pfRules = `set default block
pass out all                                  # line 2: what the appliance sends, with its replies
pass in proto tcp to any port 80 keep state   # line 3: the web server
pass in proto icmp icmp-type echoreq          # line 4: ping
block in quick proto udp to any port 7        # line 5: the echo server, both ways
block in quick proto tcp to any port 7        # line 6
`

// Rule lines of pfRules, for the counters.
const (
	pfLineWeb     = 3
	pfLinePing    = 4
	pfLineUDPEcho = 5
	pfLineTCPEcho = 6
)

// pfDownload is what the download during pf's kill moves.
const pfDownload = 32 << 20

// TestPF boots the appliance with a packet filter (issue 15) and checks
// that what the rules allow works, that what they block does not, that
// the rules' counters move, that a kill of pf during a download is
// transparent (its states are kept; ip holds the datagrams meanwhile),
// and that a bad rule set is refused with its line and changes nothing.
func TestPF(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--pf-rules", writeRules(t, pfRules))...)
	a.waitReady()

	httpWarm(t, n) // port 80 passes
	if s := n.ping(t, time.Minute, "-c", "20", "-i", "0.05", "-W", "2"); s.received != 20 {
		t.Errorf("ping -c 20: %d received, want all: echo requests pass", s.received)
	}
	if r := n.udpHelper(t, 2*time.Minute, "echo", n.GuestIP+":7", 5); r["lost"] != "5" {
		t.Errorf("UDP echo to port 7: %v; want all 5 lost: blocked", r)
	}
	if code := n.connectTimesOut(t, 7); code != 28 {
		t.Errorf("curl --connect-timeout 3 to port 7 exits %d, want 28 (timed out: filtered, neither refused nor answered)", code)
	}

	st := a.waitStats("pf", func(m map[string]any) bool { return rulePackets(m, pfLineTCPEcho) > 0 })
	// A rule decides the packet that opens a flow; a keep state flow's
	// later packets pass by its state (ping's 20 requests are one flow,
	// by their echo id).
	for _, c := range []struct {
		line int
		min  float64
	}{{pfLineWeb, 1}, {pfLinePing, 1}, {pfLineUDPEcho, 5}, {pfLineTCPEcho, 1}} {
		if got := rulePackets(st, c.line); got < c.min {
			t.Errorf("rule at line %d decided %v packets, want at least %v", c.line, got, c.min)
		}
	}
	out := a.keepnetOK(t, "pf", "rules")
	if !strings.Contains(out, "@3") || !strings.Contains(out, "port 80 keep state") {
		t.Errorf("keepnet pf rules printed %q, want the rule at line 3", out)
	}
	t.Logf("keepnet pf rules:\n%s", out)
	if out := a.keepnetOK(t, "pf", "states"); !strings.Contains(out, "states") {
		t.Errorf("keepnet pf states printed %q", out)
	}
	// status carries what pf published (when the store answers at once).
	c := a.waitComponent("pf", func(c ctl.Component) bool { return len(c.Stats) > 0 })
	if !strings.Contains(string(c.Stats), `"NumRules":5`) || !strings.Contains(string(c.Stats), `"NumStates":`) {
		t.Errorf("status of pf: %s; want NumRules 5 and NumStates", c.Stats)
	}
	if p := c.Privilege; p == nil || p.UID != 106 || !p.Seccomp || !p.NoNewPrivs || strings.Trim(p.CapEff, "0") != "" {
		t.Errorf("pf runs with %+v; want uid 106, seccomp, no_new_privs, no capabilities", p)
	}

	// A kill of pf during a download: the flow's state is kept, and ip
	// holds its segments until the next pf answers.
	before, _ := a.status().Component("pf")
	got, done := n.download(t, pfDownload, 1515)
	for deadline := time.Now().Add(resumeWait); got.Load() < pfDownload/8 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	a.signal("pf", "KILL")
	a.waitComponent("pf", func(c ctl.Component) bool { return c.Generation > before.Generation && c.State == "running" })
	if r := <-done; r != "" {
		t.Errorf("download during a kill of pf: %s", r)
	}
	t.Logf("ip's filter counters after the kill: %v", a.stats("ip"))

	// A bad rule set is refused with its line; the rules in force stay.
	bad := writeRules(t, pfRules+"pass in proto udp port 9\n")
	if out, err := a.keepnet("pf", "load", bad); err == nil || !strings.Contains(out, "line 7") {
		t.Errorf("keepnet pf load of a bad line 7: %v, %q; want refused, naming line 7", err, out)
	}
	a.keepnetOK(t, "pf", "load", writeRules(t, pfRules+"pass in proto udp to any port 9\n"))
	a.waitStats("pf", func(m map[string]any) bool { return num(m, "NumRules") == 6 })
	httpWarm(t, n) // the new rules pass the web server too
}

// writeRules writes a rule file for keepnet.
func writeRules(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pf.rules")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// rulePackets is the packets the rule at line decided, from pf's
// published statistics.
func rulePackets(st map[string]any, line int) float64 {
	rules, _ := st["Rules"].([]any)
	for _, r := range rules {
		m, _ := r.(map[string]any)
		if num(m, "Line") == float64(line) {
			return num(m, "Packets")
		}
	}
	return -1
}

// connectTimesOut has curl in the namespace connect to port of the
// appliance and returns curl's exit code: 28 when the connection timed
// out (a SYN dropped), 7 when refused.
func (n *netns) connectTimesOut(t *testing.T, port int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "http://" + n.GuestIP + ":" + strconv.Itoa(port) + "/"
	err := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "curl", "-sS", "-o", "/dev/null", "--connect-timeout", "3", "--max-time", "20", url).Run()
	return exitCode(err)
}

// keepnet runs bin/keepnet with args on the appliance's control channel.
func (a *appliance) keepnet(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return keepnetAt(ctx, a.bin, "", append(args, "--ctl", a.ctl)...)
}

// keepnetOK is keepnet, failing the test if the command fails.
func (a *appliance) keepnetOK(t *testing.T, args ...string) string {
	t.Helper()
	out, err := a.keepnet(args...)
	if err != nil {
		t.Fatalf("keepnet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
