package itest

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"keepnet/qemu/report"
	"keepnet/servers/header"
)

// BenchmarkTCPBulkIPv6 is BenchmarkTCPBulk over IPv6 (issue 20): the
// namespace advertises a prefix (dnsmasq, as TestIPv6), each guest takes
// its SLAAC address — keepnet's stack, and the Linux baseline's kernel with
// its defaults (accept_ra, EUI-64 addresses) — and curl moves the bytes to
// and from it over IPv6, hashes checked; one guest at a time, the stacks
// alternating, medians. It writes the section "tcp-ipv6" of the report.
// KEEPNET_BENCH_ROUNDS and KEEPNET_BENCH_BYTES as for BenchmarkTCPBulk
// (default here 3 rounds, 100 MB down and 50 MB up). Run it with
// -benchtime 1x.
func BenchmarkTCPBulkIPv6(b *testing.B) {
	requireITest(b, true)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	sizes := envInts(b, "KEEPNET_BENCH_BYTES", 100_000_000, 50_000_000)
	down, up := sizes[0], sizes[0]/2
	if len(sizes) > 1 {
		up = sizes[1]
	}
	c := &report.Comparison{
		Title: "TCP bulk transfer over IPv6", Unit: "Mbit/s", GroupBy: "direction",
		Groups: []string{"download", "upload"}, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			fmt.Sprintf("As BenchmarkTCPBulk (%s down, %s up, hashes checked, one fresh guest a run, the stacks alternating), "+
				"over IPv6: the namespace advertises %s (dnsmasq) and each guest serves at its SLAAC address. "+
				"keepnet sends TCP over IPv6 without segmentation offload (the device cuts IPv4 only here).", mb(down), mb(up), ra6Prefix),
			"Host load average when the bench started: " + hostLoad() + ".",
			"Measured by `make bench` (qemu/itest BenchmarkTCPBulkIPv6).",
		},
	}
	first := interleave(b, rounds, func(r int, stack string) qemuConfig {
		down, up, cfg := bulkRun6(b, stack, down, up)
		fmt.Printf("round %d/%d, %s over IPv6: download %.0f Mbit/s, upload %.0f Mbit/s\n", r+1, rounds, stack, down, up)
		c.Add("download", stack, down)
		c.Add("upload", stack, up)
		return cfg
	})
	saveComparison(b, c, first, benchOut(b), "tcp-ipv6")
	reportRates(b, c)
}

// bulkRun6 boots stack in a namespace that advertises an IPv6 prefix,
// waits for the guest's SLAAC address to answer, and moves down bytes
// from it and up bytes to it over HTTP on IPv6.
func bulkRun6(b *testing.B, stack string, down, up int64) (float64, float64, qemuConfig) {
	t := newScope(b)
	defer t.close()
	n := newNetns(t)
	n.raServer(t)
	const mac = "52:54:00:12:34:56"
	a := boot(t, n.Name, append(n.upArgs(), "--stack", stack, "--mac", mac)...)
	cfg := readQEMUConfig(t, a)
	addr := header.WithInterfaceID(netip.MustParsePrefix(ra6Prefix), header.InterfaceID(header.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}))
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := n.exec(ctx, nil, "ping", "-6", "-c", "1", "-W", "1", addr.String())
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %v does not answer ping -6 a minute after boot: %v", stack, addr, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	n6 := *n
	n6.GuestIP = "[" + addr.String() + "]"
	httpTransfer(t, &n6, 1_000_000, 1_000_000)
	return httpDownload(t, &n6, down, 5, floorMbps), httpUpload(t, &n6, up, 6, floorMbps), cfg
}
