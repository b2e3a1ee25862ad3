package itest

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// iommuModels are the NIC models checked with --iommu: all four, the
// 8254x with INTx and no reset through VFIO, the 82574L with MSI and a
// reset through VFIO.
var iommuModels = append([]struct{ model, pciID string }{{"e1000", "8086:100e"}}, nicModels...)

// TestNICModelsIOMMU is TestNICModels with an emulated IOMMU (`keepnet up
// --iommu`): the driver takes its NIC through VFIO, its device reaching
// only the driver's pools and rings at IOVAs, and the same boot, ping,
// transfers and kill of e1000.0 must hold. Then a download across `keepnet
// kill ip`: the driver maps the new IP generation's pools, resets the
// device and only then unmaps the old ones, so the device never writes to
// an unmapped address (no DMA fault in the guest's log). In make matrix.
func TestNICModelsIOMMU(t *testing.T) {
	requireITest(t, true)
	for _, m := range iommuModels {
		t.Run(m.model, func(t *testing.T) {
			a, n := checkNICModel(t, m.model, m.pciID, "vfio", "--iommu")
			// Under VFIO the driver keeps CAP_IPC_LOCK (bit 14: pinned
			// DMA memory) alone; uio's CAP_SYS_ADMIN was for physical
			// addresses.
			if c, ok := a.status().Component("e1000.0"); !ok || c.Privilege == nil || c.Privilege.CapEff != "0000000000004000" || !c.Privilege.Seccomp {
				t.Errorf("e1000.0 under VFIO: %+v, want CapEff 0000000000004000 (CAP_IPC_LOCK) and seccomp", c.Privilege)
			}
			const size = 20_000_000
			got, done := n.download(t, size, 78)
			for deadline := time.Now().Add(resumeWait); got.Load() < size/4 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			a.kill("ip")
			if err := a.awaitRunning("ip", 2); err != nil {
				t.Fatal(err)
			}
			if r := <-done; r != "" {
				t.Errorf("download across a kill of ip on %s: %s", m.model, r)
			}
			b, _ := os.ReadFile(a.console)
			if f := dmarFault.FindString(string(b)); f != "" {
				t.Errorf("the device wrote outside its mappings across the restarts: %s", f)
			}
			if r := regexp.MustCompile(`.*(reset through VFIO|VFIO offers no reset).*`).FindAllString(string(b), -1); len(r) > 0 {
				t.Logf("%s: %s (%d driver starts)", m.model, strings.TrimSpace(r[len(r)-1]), len(r))
			}
		})
	}
}

// dmarFault is how the guest kernel reports a DMA write the IOMMU blocked
// (drivers/iommu/intel/dmar.c: "[DMA Write NO_PASID] Request device
// [00:02.0] fault addr 0x... [fault reason 0x..] ...", the words between
// differ by release).
var dmarFault = regexp.MustCompile(`DMAR: \[DMA Write[^\]]*\] Request device \[[0-9a-f:.]+\] fault addr (0x)?([0-9a-f]+)`)

// escapeLine is the driver's report of the descriptor it posted (drivers/nic, escape.go).
var escapeLine = regexp.MustCompile(`dma-escape: receive descriptor .* buffer address 0x([0-9a-f]+)`)

// TestDMAEscape: the driver's test hook dma-escape puts on the receive
// ring a buffer address outside its mappings (the physical address of a
// page of its own, filled with a pattern). With the IOMMU the device's
// write of the frame that lands in that descriptor is blocked: the guest
// kernel logs a DMA fault at that address, the page keeps its pattern, and
// a download with its hash still completes (one frame lost, retransmitted)
// and e1000.0 was never restarted. Without an IOMMU in the guest it skips.
func TestDMAEscape(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--iommu", "--append", "keepnet.testhooks=1")...)
	st := a.waitStats("e1000.0", func(s map[string]any) bool { return s["Backend"] != nil })
	if b, _ := st["Backend"].(string); !strings.HasPrefix(b, "vfio") {
		t.Skipf("e1000.0 reaches its device through %q, not VFIO: the guest has no IOMMU, and the escaping write would land in physical memory", b)
	}
	before := restartsOf(a.status())
	httpWarm(t, n)
	a.hook("e1000.0", "dma-escape")
	// The descriptor goes on the ring behind a ring's worth of IP's
	// buffers: a transfer fills them.
	httpDownload(t, n, 20_000_000, 91, floorMbps)

	var console string
	deadline := time.Now().Add(resumeWait)
	for {
		b, _ := os.ReadFile(a.console)
		console = string(b)
		if strings.Contains(console, "dma-escape: after") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	posted := escapeLine.FindStringSubmatch(console)
	if posted == nil {
		t.Fatalf("the driver did not post the descriptor; console:\n%s", tail(console, 60))
	}
	if m := regexp.MustCompile(`dma-escape: after .*`).FindString(console); m != "" {
		t.Logf("driver: %s", m)
	}
	if !strings.Contains(console, "the device's write did not land: the page is as it was") {
		t.Errorf("the driver did not report the page intact; console:\n%s", tail(console, 60))
	}
	fault := dmarFault.FindStringSubmatch(console)
	switch {
	case fault == nil:
		t.Errorf("the guest kernel logged no DMA write fault; console:\n%s", tail(console, 60))
	case strings.TrimLeft(fault[2], "0") != strings.TrimLeft(posted[1], "0"):
		t.Errorf("DMA fault at %s, want the descriptor's address %s", fault[0], posted[1])
	default:
		t.Logf("blocked: %s", fault[0])
	}
	if got := restartsOf(a.status()); got["e1000.0"] != before["e1000.0"] {
		t.Errorf("e1000.0 restarted (%d, was %d): the fault should stay in the one frame", got["e1000.0"], before["e1000.0"])
	}
	const pings = 5
	if s := n.ping(t, time.Minute, "-c", "5", "-i", "0.2", "-W", "5"); s.received != pings {
		t.Errorf("ping after the escape: %d of %d answered", s.received, pings)
	}
}
