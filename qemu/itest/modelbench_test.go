package itest

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"keepnet/qemu/report"
)

// BenchmarkTCPBulkModels is BenchmarkTCPBulk for each NIC model (issue
// 16): keepnet's driver against Linux's own driver for the same device
// (e1000 for the 8254x parts, e1000e for the 82574L), each pair
// interleaved as in BenchmarkTCPBulk, one guest at a time, medians. It
// writes the section "tcp-models" of the report. Run it with -benchtime 1x.
//
//	KEEPNET_BENCH_NICS    the models (default e1000,e1000e; also
//	                      e1000-82545em, e1000-82544gc)
//	KEEPNET_BENCH_IOMMU   1: each model also with --iommu (keepnet's
//	                      driver then takes its device through VFIO, and
//	                      Linux's through the IOMMU's DMA API), beside the
//	                      runs without (uio): groups "MODEL download,
//	                      IOMMU"...; make bench sets it
//	KEEPNET_BENCH_ROUNDS, KEEPNET_BENCH_BYTES, KEEPNET_BENCH_OUT as for
//	                      BenchmarkTCPBulk (default here 2 rounds, 100 MB
//	                      down and 50 MB up)
func BenchmarkTCPBulkModels(b *testing.B) {
	requireITest(b, true)
	models := strings.Split(envString("KEEPNET_BENCH_NICS", "e1000,e1000e"), ",")
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 2)[0])
	sizes := envInts(b, "KEEPNET_BENCH_BYTES", 100_000_000, 50_000_000)
	down, up := sizes[0], sizes[0]/2
	if len(sizes) > 1 {
		up = sizes[1]
	}
	type config struct {
		suffix string   // of the groups
		args   []string // `keepnet up`'s
	}
	configs := []config{{}}
	if os.Getenv("KEEPNET_BENCH_IOMMU") == "1" {
		configs = append(configs, config{", IOMMU", []string{"--iommu"}})
	}
	var groups []string
	for _, m := range models {
		for _, cf := range configs {
			groups = append(groups, m+" download"+cf.suffix, m+" upload"+cf.suffix)
		}
	}
	c := &report.Comparison{
		Title: "TCP bulk transfer per NIC model", Unit: "Mbit/s", GroupBy: "model and direction",
		Groups: groups, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			fmt.Sprintf("As BenchmarkTCPBulk (%s down, %s up, hashes checked, one fresh guest a run, the stacks alternating), "+
				"for each model with `keepnet up --nic MODEL`: keepnet's driver against the Linux baseline's own (e1000 or e1000e).",
				mb(down), mb(up)),
			"Groups marked IOMMU: booted with --iommu (q35, an emulated VT-d): keepnet's driver through VFIO with DMA mapped to its pools and rings, " +
				"Linux's driver through the IOMMU's DMA API (intel_iommu=on, no passthrough); the others without: keepnet's driver through uio with physical addresses.",
			"Host load average when the bench started: " + hostLoad() + ".",
			"Measured by `make bench` (qemu/itest BenchmarkTCPBulkModels).",
		},
	}
	var first qemuConfig
	for r := range rounds {
		for _, model := range models {
			for _, cf := range configs {
				order := []string{"linux", "keepnet"}
				if r%2 == 1 {
					slices.Reverse(order)
				}
				for _, stack := range order {
					run := bulkRunWith(b, stack, down, up, append([]string{"--nic", model}, cf.args...)...)
					if first == (qemuConfig{}) {
						first = run.cfg
					}
					fmt.Printf("round %d/%d, %s on %s%s: download %.0f Mbit/s, upload %.0f Mbit/s\n", r+1, rounds, stack, model, cf.suffix, run.down, run.up)
					c.Add(model+" download"+cf.suffix, stack, run.down)
					c.Add(model+" upload"+cf.suffix, stack, run.up)
				}
			}
		}
	}
	saveComparison(b, c, first, benchOut(b), "tcp-models")
	reportRates(b, c)
}

// envString is the environment variable name, or def if it is empty.
func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
