package e1000_test

import (
	"testing"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/e1000"
	"keepnet/e1000/model"
)

// The driver process finds e1000 by PCI ID, QEMU's 82540EM first, and
// drives the device only through netdev's types.
func TestFamily(t *testing.T) {
	fam := e1000.Family()
	reg, err := netdev.NewRegistry(fam)
	if err != nil {
		t.Fatal(err)
	}
	if want := (netdev.PCIID{Vendor: 0x8086, Device: 0x100e}); fam.IDs[0] != want {
		t.Errorf("IDs[0] = %s, want %s (QEMU's 82540EM)", fam.IDs[0], want)
	}
	for _, tc := range []struct {
		id               netdev.PCIID
		driven, untested bool
	}{
		{netdev.PCIID{Vendor: 0x8086, Device: 0x100e}, true, false},  // QEMU e1000
		{netdev.PCIID{Vendor: 0x8086, Device: 0x1015}, true, true},   // no QEMU model
		{netdev.PCIID{Vendor: 0x8086, Device: 0x100f}, true, false},  // QEMU e1000-82545em
		{netdev.PCIID{Vendor: 0x8086, Device: 0x100c}, true, false},  // QEMU e1000-82544gc
		{netdev.PCIID{Vendor: 0x8086, Device: 0x10d3}, true, false},  // QEMU e1000e (82574L)
		{netdev.PCIID{Vendor: 0x8086, Device: 0x10f6}, true, true},   // 82574LA: no QEMU model
		{netdev.PCIID{Vendor: 0x8086, Device: 0x150c}, false, false}, // 82583V: not in the table
	} {
		_, untested := reg.Untested(tc.id)
		if got := reg.Drives(tc.id); got != tc.driven || untested != tc.untested {
			t.Errorf("Drives(%s) = %v, Untested %v; want %v, %v", tc.id, got, untested, tc.driven, tc.untested)
		}
	}

	// Quiesce, Open and Reset through the family, as the driver process
	// does, on each part QEMU models: the PCI ID picks the part's sequence.
	for _, tc := range []struct {
		id   netdev.PCIID
		part model.Part
	}{
		{netdev.PCIID{Vendor: 0x8086, Device: 0x100e}, model.Part82540EM},
		{netdev.PCIID{Vendor: 0x8086, Device: 0x10d3}, model.Part82574L},
	} {
		mem := make([]byte, 1<<20)
		m := model.New(model.Config{MAC: testMAC, Mem: mem, Part: tc.part})
		if err := fam.Quiesce(m, tc.id); err != nil {
			t.Fatalf("%s: Quiesce = %v", tc.id, err)
		}
		if len(mem) < fam.RingBytes {
			t.Fatalf("RingBytes = %d, more than the test's memory", fam.RingBytes)
		}
		dev, err := fam.Open(m, tc.id, netdev.Region{Mem: mem[:fam.RingBytes], Addr: 0}, netdev.Platform{QEMU: true})
		if err != nil {
			t.Fatalf("%s: Open = %v", tc.id, err)
		}
		if _, err := dev.Reset(); err != nil {
			t.Fatalf("%s: Reset = %v", tc.id, err)
		}
		m.Advance(time.Second)
		const v4 = netdev.FeatureChecksum | netdev.FeatureTSO
		if dev.MAC() != testMAC || !dev.LinkUp() || dev.Features()&v4 != v4 {
			t.Errorf("%s after Reset: MAC %x, link up %v, features %b; want %x, true, checksum and TSO over IPv4", tc.id, dev.MAC(), dev.LinkUp(), dev.Features(), testMAC)
		}
		if got := m.EEPROMReads(); got != 3 {
			t.Errorf("%s: %d EEPROM words read through EERD, want the address's 3", tc.id, got)
		}
		if dev.RxBufSize() != e1000.DefaultRxBufSize || dev.RxFree() != e1000.DefaultRing-1 {
			t.Errorf("RxBufSize, RxFree = %d, %d; want %d, %d", dev.RxBufSize(), dev.RxFree(), e1000.DefaultRxBufSize, e1000.DefaultRing-1)
		}
	}
	if err := fam.Quiesce(model.New(model.Config{Mem: make([]byte, 4096)}), netdev.PCIID{Vendor: 0x8086, Device: 0x150c}); err == nil {
		t.Error("Quiesce of a part the family does not drive = nil, want an error")
	}
}
