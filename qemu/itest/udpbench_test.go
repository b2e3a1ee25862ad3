package itest

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"keepnet/qemu/report"
)

// udpRateSizes are the datagram sizes BenchmarkUDPRate measures: a small
// one, where the per-datagram cost rules, and the largest that fits one
// Ethernet frame, where the per-byte cost does.
var udpRateSizes = []int{64, 1472}

// BenchmarkUDPRate compares the UDP echo rate of keepnet's stack with
// Linux's (--stack linux) in the same QEMU configuration: the echo app on
// port 7 of each stack answers a window of datagrams kept in flight from
// the namespace (the helper's "rate" mode), for each of udpRateSizes, and
// the report gives the payload rate one way (Mbit/s; the datagram rate is
// in proportion) and the keepnet/linux ratio. As BenchmarkTCPBulk: one guest
// at a time, a fresh guest per run, the stacks alternating, medians of
// KEEPNET_BENCH_ROUNDS rounds (default 3), the section "udp" of the report.
func BenchmarkUDPRate(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	out, load := benchOut(b), hostLoad()
	groups := make([]string, len(udpRateSizes))
	for i, size := range udpRateSizes {
		groups[i] = fmt.Sprintf("%d-byte", size)
	}
	c := &report.Comparison{
		Title: "UDP echo rate", Unit: "Mbit/s", GroupBy: "datagram",
		Groups: groups, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			fmt.Sprintf("Each run boots a fresh guest on a tap device in a network namespace; a client there keeps %d datagrams in flight "+
				"to the appliance's echo app (port 7) for %v per size, one new datagram per echo, and counts the echoes. "+
				"The figure is the echoed payload one way; each datagram also came back.", rateWindow, rateSeconds),
			interleaveNote(load),
			"Measured by `make bench` (qemu/itest BenchmarkUDPRate).",
		},
	}
	first := interleave(b, rounds, func(_ int, stack string) qemuConfig {
		rates, cfg := udpRateRun(b, stack)
		for i, g := range groups {
			c.Add(g, stack, rates[i])
		}
		return cfg
	})
	saveComparison(b, c, first, out, "udp")
	for _, g := range c.Groups {
		b.ReportMetric(c.Ratio(g), g+"-keepnet/linux")
	}
	b.ReportMetric(0, "ns/op")
}

// udpRateRun boots stack in a fresh namespace and measures the echo rate
// of each of udpRateSizes, in Mbit/s of payload one way.
func udpRateRun(b *testing.B, stack string) (rates []float64, cfg qemuConfig) {
	t := newScope(b)
	defer t.close()
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", stack)...)
	cfg = readQEMUConfig(t, a)
	if r := n.udpHelper(t, time.Minute, "echo", n.GuestIP+":7", 20); r["lost"] != "0" {
		t.Fatalf("%s: echo before the measure (ARP, the path warmed): %v", stack, r)
	}
	for _, size := range udpRateSizes {
		r := n.udpHelper(t, time.Minute, "rate", n.GuestIP+":7", size)
		mbps, err := strconv.ParseFloat(r["mbps"], 64)
		if err != nil || r["echoed"] == "0" {
			t.Fatalf("%s: UDP rate of %d-byte datagrams: %v", stack, size, r)
		}
		fmt.Printf("%s, %d-byte datagrams: %s datagrams/s, %.1f Mbit/s, %s lost, %s stalls\n", stack, size, r["pps"], mbps, r["lost"], r["stalls"])
		rates = append(rates, mbps)
	}
	return rates, cfg
}
