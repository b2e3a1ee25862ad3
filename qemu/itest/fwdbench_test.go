package itest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"keepnet/qemu/report"
)

// fwdFirewall is the rule set both stacks forward under, in
// BenchmarkForward and TestLinuxForwardBaseline: a small firewall between
// A (on e1000.0) and B (on e1000.1). A may open TCP connections to B and
// ping it, except to B's fwdOtherPort; B may open nothing to A; the rest
// is blocked. A forwarded flow needs a pass rule in on one NIC and out on
// the other (servers/pf, "States"); both keep state, so the replies pass
// by the states.
const fwdFirewall = "set default block\n" + fwdFirewallRules

// fwdFirewallRules are fwdFirewall's rules, without its options; the
// acceptance test of pf's counters (pfForwardRules) uses them too.
const fwdFirewallRules = `pass in on e1000.0 proto tcp from 10.77.0.0/24 to 10.78.0.0/24
pass out on e1000.1 proto tcp from 10.77.0.0/24 to 10.78.0.0/24
block in quick on e1000.0 proto tcp to any port 8080
pass in on e1000.0 proto icmp from 10.77.0.0/24 to 10.78.0.0/24 icmp-type echoreq
pass out on e1000.1 proto icmp from 10.77.0.0/24 to 10.78.0.0/24 icmp-type echoreq
block in on e1000.1 from 10.78.0.0/24 to 10.77.0.0/24
`

// TestLinuxForwardBaseline: the Linux stack booted as BenchmarkForward
// boots it — a router between A and B with fwdFirewall in nf_tables —
// does the job keepnet does there: curl in A uploads 8 MB to B and
// downloads 8 MB from it through the appliance, hashes right; A's pings
// to B are answered; A's connection to B's blocked port and B's to A time
// out (dropped, not refused), and B's pings to A go unanswered.
func TestLinuxForwardBaseline(t *testing.T) {
	requireITest(t, true)
	f := bootForwardOn(t, "linux", fwdFirewall)
	startForwardServer(t, f.a, fwdPort) // for B to fail to reach
	if console, err := os.ReadFile(f.app.console); err == nil {
		for _, line := range strings.Split(string(console), "\n") {
			if strings.Contains(line, "linux stack:") {
				t.Log(strings.TrimSpace(line))
			}
		}
	}

	httpWarm(t, f.toB)
	const size = 8_000_000
	up := httpUpload(t, f.toB, size, 6, floorMbps)
	down := httpDownload(t, f.toB, size, 5, floorMbps)
	t.Logf("through the Linux stack with fwdFirewall in nftables, A to B: %s at %.0f Mbit/s; B to A: %s at %.0f Mbit/s; hashes match", mb(size), up, mb(size), down)

	if s := f.toB.ping(t, time.Minute, "-c", "3", "-i", "0.2", "-W", "5"); s.received != 3 {
		t.Errorf("ping from A to B: %d of %d answered, want all (echo requests pass, replies by the state)", s.received, s.sent)
	}
	if s := f.toA.ping(t, time.Minute, "-c", "3", "-i", "0.2", "-W", "2"); s.sent != 3 || s.received != 0 {
		t.Errorf("ping from B to A: %d of %d answered, want 3 sent, none answered", s.received, s.sent)
	}
	if code := f.toB.connectTimesOut(t, fwdOtherPort); code != 28 {
		t.Errorf("curl in A to B's port %d exits %d, want 28 (timed out: the rule drops the SYN)", fwdOtherPort, code)
	}
	if code := f.toA.connectTimesOut(t, fwdPort); code != 28 {
		t.Errorf("curl in B to A's port %d exits %d, want 28 (timed out: the rule drops the SYN)", fwdPort, code)
	}
}

// BenchmarkForward compares forwarding through keepnet with forwarding
// through the Linux stack in the same QEMU: the appliance routes between
// namespaces A and B (bootForwardOn's topology: A on the tap of the first
// NIC, B behind keepnet-relay on the second) and filters with fwdFirewall
// — keepnet's pf, or the same rules in Linux's nf_tables. Per run, curl
// in A uploads to the server in B (A to B) and then downloads from it (B
// to A), both hashes checked. It writes the section "forward" of make
// bench's report (the medians, their ratio, every run, a plot) and
// "forward-cpu", the guest's processor time per MB forwarded, and prints
// both. Run it with -benchtime 1x (make bench).
//
//	KEEPNET_BENCH_ROUNDS  rounds (default 3); a round boots each stack once
//	KEEPNET_BENCH_BYTES   bytes each way (default 200000000), or "a2b,b2a"
//	KEEPNET_BENCH_OUT     the report (default images/out/bench.md)
//
// As in BenchmarkTCPBulk, one guest exists at a time, the order of the
// stacks alternates from round to round, medians keep one disturbed run
// from moving the figure, and a 1 MB transfer each way warms the path
// before the measured ones.
func BenchmarkForward(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	sizes := envInts(b, "KEEPNET_BENCH_BYTES", 200_000_000)
	a2b, b2a := sizes[0], sizes[0]
	if len(sizes) > 1 {
		b2a = sizes[1]
	}
	out, load := benchOut(b), hostLoad()

	const toB, toA = "A to B", "B to A"
	c := &report.Comparison{
		Title: "Forwarding through a firewall", Unit: "Mbit/s", GroupBy: "direction",
		Groups: []string{toB, toA}, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			fmt.Sprintf("The appliance routes between two network namespaces, A on its first NIC (a tap) and B on its second "+
				"(keepnet-relay between a tap and QEMU's stream socket), and filters with the same rule set on both stacks: "+
				"keepnet's pf, or Linux's nf_tables with ip_forward on (qemu/itest fwdFirewall: default block, A may open "+
				"TCP connections to B and ping it, all by state, one port of B blocked, B may open nothing). "+
				"curl in A uploads %s to B's web server (A to B), then downloads %s from it (B to A); both hashes are checked.",
				mb(a2b), mb(b2a)),
			"Each run boots a fresh guest (the same QEMU flags apart from --stack); one guest at a time, " +
				"the stacks alternate (linux, keepnet, keepnet, linux, ...). Host load average when the bench started: " + load + ".",
			"Measured by `make bench` (qemu/itest BenchmarkForward).",
		},
	}
	cpu := newPerUnitSection(c, "Guest CPU per MB forwarded", "ms/MB",
		"The guest's processor time (user, system and interrupts, all CPUs, from its /proc/stat) during each transfer above, "+
			"per MB forwarded; on keepnet the drivers' polling included. Lower is better; the ratio is keepnet's over Linux's.",
		"ms/MB of each process's own CPU time")
	first := interleave(b, rounds, func(r int, stack string) qemuConfig {
		run := forwardRun(b, stack, a2b, b2a)
		fmt.Printf("round %d/%d, %s: A to B %.0f Mbit/s (%.1f ms CPU/MB), B to A %.0f Mbit/s (%.1f ms CPU/MB)\n",
			r+1, rounds, stack, run.up, run.upCPU.guest, run.down, run.downCPU.guest)
		c.Add(toB, stack, run.up)
		c.Add(toA, stack, run.down)
		cpu.add(toB, stack, run.upCPU)
		cpu.add(toA, stack, run.downCPU)
		return run.cfg
	})

	saveComparison(b, c, first, out, "forward")
	cpu.save(b, first, out, "forward-cpu")
	reportRates(b, c)
}

// forwardRun boots stack as the router between two fresh namespaces,
// measures one upload from A to B and one download from B to A, and
// powers the guest off and removes the namespaces before it returns.
// The result's up is A to B, its down B to A (as curl in A sees them).
func forwardRun(b *testing.B, stack string, a2b, b2a int64) bulkResult {
	t := newScope(b)
	defer t.close()
	f := bootForwardOn(t, stack, fwdFirewall)
	r := bulkResult{cfg: readQEMUConfig(t, f.app)}
	httpTransfer(t, f.toB, 1_000_000, 1_000_000)
	s0 := f.app.status()
	r.up = httpUpload(t, f.toB, a2b, 6, floorMbps)
	s1 := f.app.status()
	r.down = httpDownload(t, f.toB, b2a, 5, floorMbps)
	s2 := f.app.status()
	r.upCPU, r.downCPU = cpuTime.perMB(s0, s1, a2b), cpuTime.perMB(s1, s2, b2a)
	return r
}
