package itest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"keepnet/qemu/report"
)

// rackBytes is BenchmarkTCPLossyRACK's download (KEEPNET_BENCH_BYTES).
const rackBytes = 20_000_000

// BenchmarkTCPLossyRACK is issue 19's RACK-TLP figure: downloads through
// keepnet-relay at 1% loss each way (nothing else impaired), from a
// keepnet guest with keepnet.tcp.rack=on, one with =off, and a Linux
// guest; KEEPNET_BENCH_ROUNDS interleaved rounds (default 3), medians.
// The report goes to KEEPNET_BENCH_OUT, section "tcp-rack": rack=on and
// rack=off are the groups, each beside the same Linux runs.
func BenchmarkTCPLossyRACK(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	size := envInts(b, "KEEPNET_BENCH_BYTES", rackBytes)[0]
	out, load := benchOut(b), hostLoad()
	c := &report.Comparison{
		Title: "TCP through 1% loss: RACK-TLP on and off", Unit: "Mbit/s", GroupBy: "keepnet.tcp.rack",
		Groups: []string{"rack=on", "rack=off"}, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			fmt.Sprintf("Each run boots a fresh guest whose NIC is on keepnet-relay (-drop 0.01, seed 1) in a network namespace; "+
				"curl in the namespace downloads %s from it, hash checked. keepnet runs with keepnet.tcp.rack=on or =off; "+
				"the Linux guest's runs stand beside both groups.", mb(size)),
			"One guest at a time; the order rotates each round (on, off, linux; off, linux, on; ...). " +
				"Host load average when the bench started: " + load + ".",
			"Measured by `make bench` (qemu/itest BenchmarkTCPLossyRACK).",
		},
	}
	var first qemuConfig
	measure := func(variant string) {
		s := newScope(b)
		defer s.close()
		n := newNetns(s)
		sock := filepath.Join(s.TempDir(), "n0.sock")
		rp := startRelay(s, n, sock, "-drop", "0.01", "-seed", "1", "-stats", "0")
		stack := "keepnet"
		if variant == "linux" {
			stack = "linux"
		}
		args := append(n.upArgs(), "--stack", stack)
		args[1] = "stream:" + sock // replace tap:IF
		if stack == "keepnet" {
			args = append(args, "--append", "keepnet.tcp."+variant)
		}
		a := boot(s, n.Name, args...)
		if cfg := readQEMUConfig(s, a); first == (qemuConfig{}) {
			first = cfg
		} else if cfg != first {
			b.Fatalf("%s guest ran with QEMU %+v, the first with %+v: not the same configuration", variant, cfg, first)
		}
		httpWarm(s, n)
		d := httpDownload(s, n, size, 5, lossyFloorMbps)
		fmt.Printf("%s: download %.1f Mbit/s\n", variant, d)
		if stack == "linux" {
			for _, g := range c.Groups {
				c.Add(g, "linux", d)
			}
		} else {
			c.Add(variant, "keepnet", d)
		}
		if in := rp.stop(); counter(in, "errors") != 0 {
			b.Errorf("relay counters %q: want errors=0", in)
		}
	}
	order := []string{"rack=on", "rack=off", "linux"}
	for r := range rounds {
		for i := range order {
			measure(order[(r+i)%len(order)])
		}
	}
	saveComparison(b, c, first, out, "tcp-rack")
	on, off := c.Median("rack=on", "keepnet"), c.Median("rack=off", "keepnet")
	b.ReportMetric(on, "rack-on-Mbit/s")
	b.ReportMetric(off, "rack-off-Mbit/s")
	b.ReportMetric(c.Median("rack=on", "linux"), "linux-Mbit/s")
	b.ReportMetric(0, "ns/op")
}
