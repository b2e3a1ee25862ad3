package model

import (
	"testing"

	"keepnet/e1000"
)

var mac = [6]byte{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}

// TestReset contrasts QEMU's CTRL.RST (clears itself only) with a real
// part's (registers back to power-on values).
func TestReset(t *testing.T) {
	for _, tc := range []struct {
		hw      bool
		wantRDT uint32
	}{{false, 5}, {true, 0}} {
		m := New(Config{MAC: mac, Mem: make([]byte, 4096), Hardware: tc.hw})
		m.Write32(e1000.RDLEN, 128)
		m.Write32(e1000.RDT, 5)
		m.Write32(e1000.CTRL, e1000.CTRL_SLU|e1000.CTRL_RST)
		if got := m.Read32(e1000.CTRL) & e1000.CTRL_RST; got != 0 {
			t.Errorf("hardware=%v: CTRL.RST after reset = %#x, want 0", tc.hw, got)
		}
		if got := m.Read32(e1000.RDT); got != tc.wantRDT {
			t.Errorf("hardware=%v: RDT after CTRL.RST = %d, want %d", tc.hw, got, tc.wantRDT)
		}
	}
}

func TestEERDAndICR(t *testing.T) {
	m := New(Config{MAC: mac, Mem: make([]byte, 4096)})
	for w, want := range []uint32{0x5452, 0xab00, 0xefcd} {
		m.Write32(e1000.EERD, uint32(w)<<e1000.EERD_ADDR_SHIFT|e1000.EERD_START)
		v := m.Read32(e1000.EERD)
		if v&e1000.EERD_DONE == 0 || v>>16 != want {
			t.Errorf("EERD word %d = %#x, want DONE and data %#x", w, v, want)
		}
	}
	m.Write32(e1000.ICS, e1000.ICR_LSC)
	if got := m.Read32(e1000.ICR); got != e1000.ICR_LSC {
		t.Errorf("ICR after ICS(LSC) = %#x, want %#x", got, e1000.ICR_LSC)
	}
	if got := m.Read32(e1000.ICR); got != 0 {
		t.Errorf("ICR read twice = %#x, want 0", got)
	}
}

// TestHardwareCachesDescriptors shows why the driver must reset a real part:
// after the tail moves, rewriting a descriptor in memory does not redirect
// the device's DMA; only a reset drops the cached copy.
func TestHardwareCachesDescriptors(t *testing.T) {
	for _, hw := range []bool{false, true} {
		mem := make([]byte, 1<<16)
		m := New(Config{MAC: mac, Mem: mem, Hardware: hw})
		const ring, bufA, bufB = 0x1000, 0x2000, 0x3000
		m.Write32(e1000.RDBAL, ring)
		m.Write32(e1000.RDLEN, 128)
		m.Write32(e1000.RCTL, e1000.RCTL_EN|e1000.RCTL_BAM|e1000.RCTL_SECRC)
		m.Advance(rctlPause)
		e1000.RxDesc(mem[ring:]).SetAddr(bufA)
		m.Write32(e1000.RDT, 1)
		e1000.RxDesc(mem[ring:]).SetAddr(bufB) // a restarted driver's new buffer
		f := make([]byte, 64)
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		f[20] = 0x77
		if !m.Deliver(f) {
			t.Fatalf("hardware=%v: Deliver = false", hw)
		}
		gotA, gotB := mem[bufA+20] == 0x77, mem[bufB+20] == 0x77
		if gotA != hw || gotB != !hw {
			t.Errorf("hardware=%v: frame landed in A %v, B %v; want A %v (cached), B %v", hw, gotA, gotB, hw, !hw)
		}
	}
}

func TestFilter(t *testing.T) {
	m := New(Config{MAC: mac, Mem: make([]byte, 4096)})
	other := [6]byte{0x02, 1, 2, 3, 4, 5}
	mcast := [6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	for _, tc := range []struct {
		dst  [6]byte
		rctl uint32
		want bool
	}{
		{mac, 0, true},
		{other, 0, false},
		{other, e1000.RCTL_UPE, true},
		{[6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0, false},
		{[6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, e1000.RCTL_BAM, true},
		{mcast, 0, false},
		{mcast, e1000.RCTL_MPE, true},
	} {
		f := make([]byte, 64)
		copy(f, tc.dst[:])
		if got := m.accept(f, tc.rctl); got != tc.want {
			t.Errorf("accept(%x, RCTL %#x) = %v, want %v", tc.dst, tc.rctl, got, tc.want)
		}
	}
}
