package itest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"keepnet/qemu/report"
)

// The durations the tests do not assert (a test fails on wrong behaviour,
// never on a slow machine): boot to ready, how long each component's kill
// interrupts the service it carries, and what the impairment relay costs.
// `make bench` runs these with -benchtime 1x; each writes its section of
// the report (benchOut: images/out/bench.md) and prints it.
//
//	KEEPNET_BENCH_ROUNDS  rounds (default 5 for boot, 3 for the others)
//	KEEPNET_BENCH_BYTES   for the relay's cost: the size of each transfer
//	                      (its first number; default relayBytes)

// BenchmarkBootToReady boots each stack once a round, one guest at a time
// and the order alternating (as BenchmarkTCPBulk), on a tap device in a
// namespace, and reports the medians of the time from QEMU's start to ready
// as `keepnet up` measures it: section "boot", plot bench-boot.png.
func BenchmarkBootToReady(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 5)[0])
	out, load := benchOut(b), hostLoad()
	const group = "QEMU start to ready"
	c := &report.Comparison{
		Title: "Boot to ready", Unit: "s", GroupBy: "from",
		Groups: []string{group}, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			"Each run boots a fresh guest (the same QEMU flags apart from --stack) on a tap device in a network namespace; " +
				"`keepnet up --detach` reports the time from QEMU's start to the appliance's ready.",
			interleaveNote(load),
			"Measured by `make bench` (qemu/itest BenchmarkBootToReady).",
		},
	}
	first := interleave(b, rounds, func(r int, stack string) qemuConfig {
		s := newScope(b)
		n := newNetns(s)
		a := boot(s, n.Name, append(n.upArgs(), "--stack", stack)...)
		cfg := readQEMUConfig(s, a)
		s.close()
		if a.ready <= 0 {
			b.Fatalf("%s: keepnet up reported no boot-to-ready time", stack)
		}
		fmt.Printf("round %d/%d, %s: boot to ready %.2f s\n", r+1, rounds, stack, a.ready.Seconds())
		c.Add(group, stack, a.ready.Seconds())
		return cfg
	})
	saveComparison(b, c, first, out, "boot")
	for _, s := range c.Stacks {
		b.ReportMetric(c.Median(group, s), s+"-ready-s")
	}
	b.ReportMetric(0, "ns/op")
}

// The components BenchmarkRecovery kills, in order, and what it measures
// for each.
var recoveryRows = []struct{ component, how string }{
	{"e1000.0", "longest silence of a ping every 5 ms, a flood ping beside it (outage)"},
	{"ip", "longest silence of a ping every 5 ms, a flood ping beside it (outage)"},
	{"udp", "longest silence of a UDP echo stream, a datagram every 5 ms (udpOutage)"},
	{"syscall", "longest silence of a UDP echo stream, a datagram every 5 ms (udpOutage)"},
	{"tcp", "kill to the first new HTTP connection served, curl retrying (acceptAfterKill)"},
	{"store", "kill to the supervisor reporting a new store process running (storeBack)"},
}

// BenchmarkRecovery boots the keepnet stack once a round and kills each
// component once, the way TestKeepnetRestarts, TestUDPRestarts,
// TestTCPKeepnet and TestBootStatusKillDown do, waiting after each kill
// until the service works again; it reports the median of each gap:
// section "recovery".
func BenchmarkRecovery(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	out, load := benchOut(b), hostLoad()
	s := &report.Series{
		Title: "Recovery after a kill (keepnet stack)", Unit: "ms", RowBy: "killed",
		How: map[string]string{}, Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			"Each round boots a fresh guest on a tap device in a network namespace and kills every component once, in the table's order, " +
				"waiting after each kill until the service works again. A ping or echo stream sends for 7 s and the kill comes 2 s in: " +
				"an outage past its end is cut short, and a UDP stream stops listening after 3 s of silence " +
				"(see the lines printed for each kill: replies after it, datagrams echoed).",
			"Host load average when the bench started: " + load + ".",
			"Measured by `make bench` (qemu/itest BenchmarkRecovery).",
		},
	}
	for _, r := range recoveryRows {
		s.Rows = append(s.Rows, r.component)
		s.How[r.component] = r.how
	}
	for r := range rounds {
		sc := newScope(b)
		n := newNetns(sc)
		a := boot(sc, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
		cfg := readQEMUConfig(sc, a)
		s.Accel, s.GuestCPUs = cfg.accel, atoi(cfg.smp)
		if p := n.ping(sc, time.Minute, "-c", "3", "-i", "0.2", "-W", "5"); p.received == 0 {
			b.Fatalf("no ping answer before any kill: %+v", p)
		}
		httpWarm(sc, n)
		for _, row := range recoveryRows {
			comp := row.component
			var gap time.Duration
			switch comp {
			case "e1000.0", "ip":
				var after, lost int
				gap, after, lost = outage(sc, n, a, comp)
				fmt.Printf("round %d/%d, kill %s: longest ping gap %v, %d lost, %d replies after the kill\n", r+1, rounds, comp, gap.Round(time.Millisecond), lost, after)
				if p := n.pingResumes(sc); p.received < resumePings {
					b.Fatalf("kill %s: pings did not resume: %+v", comp, p)
				}
			case "udp", "syscall":
				res := n.udpOutage(sc, a, comp)
				gap = time.Duration(atoi(res["gap_ms"])) * time.Millisecond
				fmt.Printf("round %d/%d, kill %s: UDP echo stream %v\n", r+1, rounds, comp, res)
				if e := n.udpEchoResumes(sc); e["lost"] != "0" {
					b.Fatalf("kill %s: echo did not resume: %v", comp, e)
				}
			case "tcp":
				var err error
				if gap, err = n.acceptAfterKill(sc, a, 2*time.Second, resumeWait); err != nil {
					b.Fatal(err)
				}
				fmt.Printf("round %d/%d, kill tcp: a new connection served %v after the kill\n", r+1, rounds, gap.Round(time.Millisecond))
			case "store":
				var err error
				if gap, _, err = a.storeBack(); err != nil {
					b.Fatal(err)
				}
				fmt.Printf("round %d/%d, kill store: running again %v after the kill\n", r+1, rounds, gap.Round(time.Millisecond))
			}
			s.Add(comp, float64(gap.Microseconds())/1000)
		}
		sc.close()
	}
	if err := s.Save(out, "recovery"); err != nil {
		b.Fatal(err)
	}
	fmt.Println()
	s.Markdown(os.Stdout)
	fmt.Printf("\nreport %s\n", out)
	for _, r := range s.Rows {
		b.ReportMetric(s.Median(r), r+"-gap-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// relayRuns is how many downloads and uploads BenchmarkRelayCost measures
// per guest.
const relayRuns = 2

// BenchmarkRelayCost compares TCP through keepnet-relay without impairment
// with the appliance's NIC on the tap directly: per round one guest of each
// (keepnet stack), one at a time and the order alternating, each doing
// relayRuns downloads and uploads of relayBytes (KEEPNET_BENCH_BYTES) with
// their hashes checked.
// A guest's speed varies from boot to boot by about as much as the relay
// costs, so it takes several rounds. Section "relay", plot bench-relay.png;
// the cost is 1 - relay/tap.
func BenchmarkRelayCost(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	size := envInts(b, "KEEPNET_BENCH_BYTES", relayBytes)[0]
	out, load := benchOut(b), hostLoad()
	c := &report.Comparison{
		Title: "The relay's cost at 0% loss", Unit: "Mbit/s", GroupBy: "direction",
		Groups: []string{"download", "upload"}, Stacks: [2]string{"relay", "tap"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			fmt.Sprintf("Each run boots a fresh keepnet-stack guest whose NIC is on a tap device in a namespace, directly (tap) or through "+
				"keepnet-relay without impairment (relay); curl in the namespace downloads and uploads %s %d times each, hashes checked. "+
				"The relay's cost is 1 - relay/tap.", mb(size), relayRuns),
			"One guest at a time; the two alternate (tap, relay, relay, tap, ...). Host load average when the bench started: " + load + ".",
			"Measured by `make bench` (qemu/itest BenchmarkRelayCost).",
		},
	}
	var first qemuConfig
	measure := func(relay bool) {
		s := newScope(b)
		defer s.close()
		n := newNetns(s)
		args := append(n.upArgs(), "--stack", "keepnet")
		var rp *relayProc
		path := "tap"
		if relay {
			sock := filepath.Join(s.TempDir(), "n0.sock")
			rp = startRelay(s, n, sock, "-seed", "1", "-stats", "0")
			args[1] = "stream:" + sock // replace tap:IF
			path = "relay"
		}
		a := boot(s, n.Name, args...)
		if cfg := readQEMUConfig(s, a); first == (qemuConfig{}) {
			first = cfg
		} else if cfg != first {
			b.Fatalf("%s guest ran with QEMU %+v, the first with %+v: not the same configuration", path, cfg, first)
		}
		httpWarm(s, n)
		for range relayRuns {
			d := httpDownload(s, n, size, 5, floorMbps)
			u := httpUpload(s, n, size, 6, floorMbps)
			fmt.Printf("%s: download %.0f Mbit/s, upload %.0f Mbit/s\n", path, d, u)
			c.Add("download", path, d)
			c.Add("upload", path, u)
		}
		if relay {
			if in := rp.stop(); counter(in, "errors") != 0 {
				b.Errorf("relay counters %q: want errors=0", in)
			}
		}
	}
	for r := range rounds {
		measure(r%2 == 1)
		measure(r%2 == 0)
	}
	saveComparison(b, c, first, out, "relay")
	for _, g := range c.Groups {
		b.ReportMetric(100*(1-c.Ratio(g)), g+"-cost-%")
		for _, s := range c.Stacks {
			b.ReportMetric(c.Median(g, s), s+"-"+g+"-Mbit/s")
		}
	}
	b.ReportMetric(0, "ns/op")
}
