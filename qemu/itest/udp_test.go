package itest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpHelper runs TestHelperUDP inside the namespace and returns its result
// fields (key=value).
func (n *netns) udpHelper(t testing.TB, timeout time.Duration, mode, target string, count int) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	self, _ := os.Executable()
	cmd := fmt.Sprintf("UDP_MODE=%s UDP_TARGET=%s UDP_COUNT=%d %s -test.run='^TestHelperUDP$'", mode, target, count, self)
	out, err := n.exec(ctx, nil, "sh", "-c", cmd)
	line := lastLine(string(out), "result:")
	if err != nil || line == "" {
		t.Fatalf("udp helper %s: %v\n%s", mode, err, out)
	}
	res := map[string]string{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, "result:")) {
		k, v, _ := strings.Cut(f, "=")
		res[k] = v
	}
	return res
}

func atoi(s string) int { v, _ := strconv.Atoi(s); return v }

// dnsmasq runs a DNS server in the namespace that answers keepnet.test with
// 10.77.0.99, until the test ends.
func (n *netns) dnsmasq(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq not installed (make deps installs dnsmasq-base)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--port=53", "--listen-address="+n.HostIP, "--bind-interfaces", "--address=/keepnet.test/10.77.0.99",
		"--pid-file=", "--user=root", "--log-facility=-")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
}

func TestUDPEchoKeepnet(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	r := n.udpHelper(t, 10*time.Minute, "echo", n.GuestIP+":7", 10000)
	t.Logf("10,000 datagrams of 1 to 8000 bytes echoed: %v", r)
	if atoi(r["sent"]) != 10000 || r["lost"] != "0" || r["bad"] != "0" {
		t.Errorf("UDP echo: %v, want 10000 sent, none lost or corrupted", r)
	}
	// udp reads and fills the echo app's own buffers (zero copy):
	// syscall copied none of the datagrams.
	sys := a.waitStats("syscall", func(m map[string]any) bool { return num(m, "ZeroCopyUp") >= 10000 && num(m, "ZeroCopyDown") >= 10000 })
	t.Logf("syscall forwarded %.0f bytes down and %.0f up by reference, copied %.0f and %.0f", num(sys, "ZeroCopyDown"), num(sys, "ZeroCopyUp"), num(sys, "CopiedDown"), num(sys, "CopiedUp"))
	if num(sys, "ZeroCopyUp") < 10000 || num(sys, "CopiedDown")+num(sys, "CopiedUp") != 0 {
		t.Errorf("syscall forwarded %.0f bytes up by reference and copied %.0f down, %.0f up; want the echoed datagrams by reference, nothing copied",
			num(sys, "ZeroCopyUp"), num(sys, "CopiedDown"), num(sys, "CopiedUp"))
	}
}

// The resolver answers through dnsmasq; then udp and syscall are killed in
// turn while echo traffic flows and the resolver keeps querying: both apps
// keep their sockets (no restart, same local address) and keep working.
func TestUDPRestarts(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	n.dnsmasq(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	res := a.waitStats("resolver", func(m map[string]any) bool { return num(m, "Answered") >= 2 })
	if num(res, "Answered") < 2 || res["LastAnswer"] != "10.77.0.99" {
		t.Fatalf("resolver stats = %v, want answers (10.77.0.99) from dnsmasq", res)
	}
	local := res["LocalAddr"]
	restarts := restartsOf(a.status())
	for _, comp := range []string{"udp", "syscall"} {
		before := a.stats("resolver")
		r := n.udpOutage(t, a, comp)
		t.Logf("kill %s during a 5 ms UDP echo stream: %v", comp, r) // gap and loss: BenchmarkRecovery
		if r["refused"] != "0" {
			t.Errorf("kill %s: echo stream %v, want it never refused", comp, r)
		}
		if r := n.udpEchoResumes(t); r["lost"] != "0" || r["bad"] != "0" {
			t.Errorf("kill %s: echo %v within %v of the stream, want it to resume", comp, r, resumeWait)
		}
		after := a.waitStats("resolver", func(m map[string]any) bool { return num(m, "Answered") >= num(before, "Answered")+2 })
		if num(after, "Answered") < num(before, "Answered")+2 || after["LocalAddr"] != local {
			t.Errorf("kill %s: resolver %v, want new answers on the same socket %v", comp, after, local)
		}
		st := a.status()
		for _, app := range []string{"echo", "resolver"} {
			if c, _ := st.Component(app); c.Restarts != restarts[app] || c.State != "running" {
				t.Errorf("kill %s: app %s = %+v, want it running, not restarted (%d restarts before the kills)", comp, app, c, restarts[app])
			}
		}
		if c, _ := st.Component(comp); c.Restarts != restarts[comp]+1 {
			t.Errorf("kill %s: %+v, want restarts %d", comp, c, restarts[comp]+1)
		}
	}
}

// Bad UDP input: bad checksums, cut headers and lengths past the datagram
// are dropped and counted; a closed port answers ICMP port unreachable; a
// flood of 100,000 datagrams to a socket nobody reads is dropped with
// memory bounded; and echo still works afterwards.
func TestUDPBadInput(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	if r := n.udpHelper(t, time.Minute, "echo", n.GuestIP+":7", 20); r["lost"] != "0" {
		t.Fatalf("echo before the bad input: %v", r)
	}
	if r := n.udpHelper(t, time.Minute, "closed", n.GuestIP+":9999", 0); r["refused"] != "true" {
		t.Errorf("a datagram to a closed port: %v, want ICMP port unreachable (connection refused)", r)
	}

	before := a.waitStats("udp", func(m map[string]any) bool { return num(m, "InDatagrams") > 0 })
	rss := map[string]int{}
	stBefore := a.status()
	for _, c := range stBefore.Components {
		rss[c.Name] = c.RSSKiB
	}
	restarts := restartsOf(stBefore)
	lostBefore := a.framesLostOnTheWay(n)
	const rounds = 200
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mac, err := n.exec(ctx, nil, "sh", "-c", "ip neigh show "+n.GuestIP+" | awk '{print $5}'")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	cmd := fmt.Sprintf("RAW_KIND=udp RAW_IFACE=%s RAW_DST_MAC=%s RAW_SRC_IP=%s RAW_DST_IP=%s RAW_ROUNDS=%d %s -test.run='^TestHelperRawFrames$' -test.v",
		n.Tap, strings.TrimSpace(string(mac)), n.HostIP, n.GuestIP, rounds, self)
	if out, err := n.exec(ctx, nil, "sh", "-c", cmd); err != nil {
		t.Fatalf("raw UDP sender: %v\n%s", err, out)
	}
	// Each count may be short by the frames the tap or the NIC dropped
	// before ip saw them (a busy host), and by no more.
	var slack float64
	after := a.waitStats("udp", func(m map[string]any) bool {
		slack = a.framesLostOnTheWay(n) - lostBefore
		return num(m, "InBadChecksum")-num(before, "InBadChecksum") >= rounds-slack &&
			num(m, "InTruncated")-num(before, "InTruncated") >= 2*rounds-slack
	})
	if d := num(after, "InBadChecksum") - num(before, "InBadChecksum"); d < rounds-slack {
		t.Errorf("udp InBadChecksum grew by %v, want %d (less the %v frames dropped on the way)", d, rounds, slack)
	}
	if d := num(after, "InTruncated") - num(before, "InTruncated"); d < 2*rounds-slack {
		t.Errorf("udp InTruncated grew by %v, want %d less %v (cut headers and lengths past the datagram)", d, 2*rounds, slack)
	}

	r := n.udpHelper(t, 3*time.Minute, "flood", n.GuestIP+":9", 100000)
	flooded := a.waitStats("udp", func(m map[string]any) bool { return num(m, "InQueueDrops") > num(after, "InQueueDrops") })
	t.Logf("flood of %s datagrams to the discard port: udp queue drops %v, queued bytes %v", r["sent"], num(flooded, "InQueueDrops")-num(after, "InQueueDrops"), flooded["QueuedBytes"])
	if num(flooded, "InQueueDrops") <= num(after, "InQueueDrops") || num(flooded, "QueuedBytes") > 2<<20 {
		t.Errorf("after the flood: udp %v, want queue drops and at most 2 MiB queued", flooded)
	}
	for _, c := range a.status().Components {
		if c.Restarts != restarts[c.Name] {
			t.Errorf("%s restarted during the bad input: %+v (%d restarts before)", c.Name, c, restarts[c.Name])
		}
		if b := rss[c.Name]; b > 0 && c.RSSKiB > b+16384 {
			t.Errorf("%s resident memory grew from %d KiB to %d KiB", c.Name, b, c.RSSKiB)
		}
	}
	if r := n.udpHelper(t, time.Minute, "echo", n.GuestIP+":7", 50); r["lost"] != "0" || r["bad"] != "0" {
		t.Errorf("echo after the bad input: %v", r)
	}
}
