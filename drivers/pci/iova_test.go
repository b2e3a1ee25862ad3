package pci

import (
	"errors"
	"testing"
)

func TestIOVAs(t *testing.T) {
	const mb = 1 << 20
	a := &IOVAs{Base: 16 * mb, Limit: 32 * mb, Align: 2 * mb}
	alloc := func(n uint64) uint64 {
		t.Helper()
		iova, err := a.Alloc(n)
		if err != nil {
			t.Fatalf("Alloc(%d): %v", n, err)
		}
		return iova
	}
	x := alloc(1)      // 16 MiB, one 2 MiB step
	y := alloc(3 * mb) // 18 MiB, two steps
	z := alloc(2 * mb) // 22 MiB
	for _, c := range []struct{ got, want uint64 }{{x, 16 * mb}, {y, 18 * mb}, {z, 22 * mb}} {
		if c.got != c.want {
			t.Errorf("Alloc = %#x, want %#x", c.got, c.want)
		}
	}
	if err := a.Free(y, 3*mb); err != nil {
		t.Fatal(err)
	}
	if err := a.Free(y, 3*mb); err == nil {
		t.Errorf("Free of a free range: no error")
	}
	if err := a.Free(y+2*mb, 1); err == nil {
		t.Errorf("Free of half a free range: no error")
	}
	if got := alloc(2 * mb); got != y { // first fit: the hole
		t.Errorf("Alloc after Free = %#x, want %#x", got, y)
	}
	if got := alloc(4 * mb); got != 24*mb { // the hole's rest (2 MiB) is too short
		t.Errorf("Alloc(4 MiB) = %#x, want %#x", got, 24*mb)
	}
	if _, err := a.Alloc(8 * mb); !errors.Is(err, ErrIOVASpace) {
		t.Errorf("Alloc beyond the space: %v, want ErrIOVASpace", err)
	}
	// Everything back: one range again, merged both ways.
	for _, r := range [][2]uint64{{x, 1}, {z, 2 * mb}, {y, 2 * mb}, {24 * mb, 4 * mb}} {
		if err := a.Free(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.free) != 1 || a.free[0] != (span{16 * mb, 32 * mb}) {
		t.Errorf("after freeing everything: %v, want one span [16 MiB, 32 MiB)", a.free)
	}
	if got := alloc(16 * mb); got != 16*mb {
		t.Errorf("Alloc(all) = %#x", got)
	}
}

func TestIOVAsFreeOutside(t *testing.T) {
	a := NewIOVAs()
	for _, iova := range []uint64{0, DefaultIOVABase + 1, DefaultIOVALimit} {
		if err := a.Free(iova, 1); err == nil {
			t.Errorf("Free(%#x): no error", iova)
		}
	}
}
