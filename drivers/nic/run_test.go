package nic

import (
	"errors"
	"strings"
	"testing"
	"time"

	"keepnet/drivers/link"
	"keepnet/drivers/netdev"
	"keepnet/drivers/netdev/netdevtest"
	"keepnet/drivers/pci"
	"keepnet/kernel/exitcode"
	"keepnet/kernel/pool"
)

// fakeFamily drives two made-up parts; it is not e1000.
func fakeFamily() netdev.Family {
	return netdev.Family{
		Name:      "fake",
		IDs:       []netdev.PCIID{{Vendor: 0x1234, Device: 0x0001}, {Vendor: 0x1234, Device: 0x0002}},
		RingBytes: 4096,
		Quiesce:   func(netdev.Regs, netdev.PCIID) error { return nil },
		Open: func(netdev.Regs, netdev.PCIID, netdev.Region, netdev.Platform) (netdev.Device, error) {
			return netdevtest.New(netdevtest.Config{}), nil
		},
	}
}

// The driver process takes the index-th function a registered family
// drives, in PCI address order, whichever family it is; functions nobody
// drives are passed over.
func TestPick(t *testing.T) {
	reg, err := netdev.NewRegistry(fakeFamily())
	if err != nil {
		t.Fatal(err)
	}
	fns := []pci.Device{
		{Addr: "0000:00:05.0", Vendor: 0x1234, DeviceID: 0x0001},
		{Addr: "0000:00:02.0", Vendor: 0x1af4, DeviceID: 0x1003}, // a virtio console
		{Addr: "0000:00:03.0", Vendor: 0x1234, DeviceID: 0x0002},
		{Addr: "0000:00:04.0", Vendor: 0x8086, DeviceID: 0x10d3}, // a NIC no family here drives
	}
	for index, want := range []string{"0000:00:03.0", "0000:00:05.0"} {
		fn, fam, err := pick(fns, reg, index, "", false)
		if err != nil || fn.Addr != want || fam.Name != "fake" {
			t.Errorf("pick(%d) = %s, family %q, %v; want %s, fake", index, fn.Addr, fam.Name, err, want)
		}
	}
	if fn, _, err := pick(fns, reg, 0, "0000:00:05.0", false); err != nil || fn.Addr != "0000:00:05.0" {
		t.Errorf("pick(0000:00:05.0) = %s, %v; want the function at that address", fn.Addr, err)
	}
	if _, _, err := pick(fns, reg, 0, "0000:00:04.0", false); err == nil || exitcode.Of(err) != exitcode.Config {
		t.Errorf("pick(0000:00:04.0), a NIC no family here drives, = %v; want a configuration error", err)
	}
	_, _, err = pick(fns, reg, 2, "", false)
	if err == nil || !strings.Contains(err.Error(), "number 2") || !strings.Contains(err.Error(), "found 2") {
		t.Errorf("pick(2) = %v, want an error saying there is no function number 2 of the 2 found", err)
	}
}

// A part its family was never tested on keeps its place among the NICs but
// is refused, as a configuration error that says what to do, unless the
// user asks for it.
func TestPickUntested(t *testing.T) {
	fam := fakeFamily()
	untestedID := fam.IDs[len(fam.IDs)-1]
	fam.Untested = map[netdev.PCIID]string{untestedID: "Fake 2000"}
	reg, err := netdev.NewRegistry(fam)
	if err != nil {
		t.Fatal(err)
	}
	fns := []pci.Device{
		{Addr: "0000:00:03.0", Vendor: untestedID.Vendor, DeviceID: untestedID.Device},
		{Addr: "0000:00:04.0", Vendor: fam.IDs[0].Vendor, DeviceID: fam.IDs[0].Device},
	}
	if fn, _, err := pick(fns, reg, 1, "", false); err != nil || fn.Addr != "0000:00:04.0" {
		t.Errorf("pick(1) = %s, %v; want the tested part at 0000:00:04.0 (the untested one still counts as NIC 0)", fn.Addr, err)
	}
	_, _, err = pick(fns, reg, 0, "", false)
	if !errors.Is(err, ErrUntested) || exitcode.Of(err) != exitcode.Config ||
		!strings.Contains(err.Error(), "Fake 2000") || !strings.Contains(err.Error(), "keepnet.nic.untested=1") {
		t.Errorf("pick(0) of an untested part = %v (exit %d); want ErrUntested naming the part and the parameter, a configuration error", err, exitcode.Of(err))
	}
	if fn, f, err := pick(fns, reg, 0, "", true); err != nil || fn.Addr != "0000:00:03.0" || f.Name != fam.Name {
		t.Errorf("pick(0) with untested allowed = %s, %q, %v; want the untested part", fn.Addr, f.Name, err)
	}
}

// Without a registry there is nothing to drive: an error, not a panic.
func TestFindFunctionWithoutFamilies(t *testing.T) {
	if _, _, err := findFunction(nil, 0, "", false); err == nil {
		t.Error("findFunction(nil registry) succeeded, want an error")
	}
}

func TestLinkFeatures(t *testing.T) {
	for f, want := range map[netdev.Features]uint64{
		0:                      0,
		netdev.FeatureChecksum: link.FeatureChecksum,
		netdev.FeatureChecksum | netdev.FeatureTSO: link.FeatureChecksum | link.FeatureTSO,
	} {
		if got := linkFeatures(f); got != want {
			t.Errorf("linkFeatures(%b) = %b, want %b", f, got, want)
		}
	}
}

type fakeHuge bool

func (f fakeHuge) Huge() bool { return bool(f) }

// Memory in ordinary pages is refused with ErrNoHugePages (the driver's
// main exits exitcode.Config), never used.
func TestRequireHuge(t *testing.T) {
	if err := requireHuge("ip.rx", fakeHuge(true)); err != nil {
		t.Errorf("requireHuge(huge pool) = %v, want nil", err)
	}
	err := requireHuge("ip.rx", fakeHuge(false))
	if !errors.Is(err, ErrNoHugePages) || !strings.Contains(err.Error(), "ip.rx") || !strings.Contains(err.Error(), "nr_hugepages") {
		t.Errorf("requireHuge(4 KiB pool) = %v, want ErrNoHugePages naming the pool and the remedy", err)
	}
	if code := exitcode.Of(err); code != exitcode.Config {
		t.Errorf("exit status for %v = %d, want %d (not restarted)", err, code, exitcode.Config)
	}
}

// fakeIRQ is an interrupt line: raised counts interrupts the kernel took
// and the driver has not read.
type fakeIRQ struct {
	raised, count uint32
}

func (f *fakeIRQ) Fd() int       { return -1 }
func (f *fakeIRQ) Enable() error { return nil }
func (f *fakeIRQ) Wait(timeout time.Duration) (uint32, error) {
	if f.raised == 0 {
		return 0, pci.ErrTimeout
	}
	f.count += f.raised
	f.raised = 0
	return f.count, nil
}

// An interrupt raised while the loop polled, for work it served, is
// consumed before the loop sleeps: left readable, it would end the sleep
// at once. Work that comes while the loop settles is served awake.
func TestSettle(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	irq := &fakeIRQ{raised: 1}
	var n Sleeps
	if !settle(b.drv, irq, b.dev, &n) {
		t.Fatal("settle with nothing to do = false, want true (sleep)")
	}
	if irq.raised != 0 || n.StaleInterrupts != 1 || n.InterruptCount != 1 {
		t.Errorf("after settle: %d interrupts unread, Sleeps %+v; want none unread, 1 stale, count 1", irq.raised, n)
	}
	if !settle(b.drv, irq, b.dev, &n) || n.StaleInterrupts != 1 {
		t.Errorf("settle with no interrupt raised: Sleeps %+v, want still 1 stale", n)
	}
	// The interrupt that ended a sleep is read by the next settle, not
	// before the loop serves its frames, and it is not a stale one.
	irq.raised, n.unread = 1, true
	if !settle(b.drv, irq, b.dev, &n) || irq.raised != 0 || n.StaleInterrupts != 1 || n.InterruptCount != 2 || n.unread {
		t.Errorf("settle after a sleep the interrupt ended: %d unread, Sleeps %+v; want none unread, still 1 stale, count 2", irq.raised, n)
	}
	b.send(link.OpInfo.Msg(pool.Ref{}))
	if settle(b.drv, irq, b.dev, &n) {
		t.Error("settle with a request waiting = true, want false (serve it)")
	}
	if n.ServedAwake != 1 || len(b.replies()) != 1 {
		t.Errorf("Sleeps %+v, want 1 served awake, and the request answered", n)
	}
}

// A driver with a processor to spare polls on before it sleeps; one
// confined to a single processor, which it shares with ip, sleeps after
// the first poll that finds nothing (never before: the loop polls only
// there).
func TestSpinRoundsOn(t *testing.T) {
	for _, c := range []struct{ processors, want int }{{1, 1}, {0, 1}, {2, spinRounds}, {8, spinRounds}} {
		if got := spinRoundsOn(c.processors); got != c.want {
			t.Errorf("spinRoundsOn(%d) = %d, want %d", c.processors, got, c.want)
		}
	}
	if n := processors(); n < 1 {
		t.Errorf("processors() = %d", n)
	}
}
