package tcp

import "testing"

func TestBuddy(t *testing.T) {
	const maxOrder = 3 // blocks of 4 to 32 KiB
	b := newBuddy(make([]byte, 64<<10), maxOrder)
	total := b.freeBytes()
	b1, o1 := b.get(5000) // 8 KiB
	b2, o2 := b.get(4096)
	b3, o3 := b.get(32 << 10)
	if len(b1) != 8<<10 || len(b2) != 4<<10 || len(b3) != 32<<10 {
		t.Fatalf("sizes %d %d %d", len(b1), len(b2), len(b3))
	}
	if o1%(8<<10) != 0 || o3%(32<<10) != 0 {
		t.Fatalf("misaligned: %d %d", o1, o3)
	}
	if _, off := b.get(32 << 10); off >= 0 {
		t.Fatal("a second 32 KiB block in 64 KiB with 12 KiB taken")
	}
	if _, off := b.get(64 << 10); off >= 0 {
		t.Fatal("a block beyond the largest order from the kept memory")
	}
	left := b.freeBytes()
	b.put(b1, o1)
	b.put(b2, o2)
	b.put(b3, o3)
	if b.freeBytes() != left {
		t.Fatal("blocks put became free before the commit settled them")
	}
	b.settle()
	if b.freeBytes() != total || len(b.free[maxOrder]) != 2 {
		t.Fatalf("after settling: %d free in %v, want everything merged", b.freeBytes(), b.free)
	}
}

func TestBuddyClaim(t *testing.T) {
	b := newBuddy(make([]byte, 64<<10), 3)
	if !b.claim(8<<10, 8<<10) || !b.claim(32<<10, 4<<10) || !b.claim(0, 4<<10) {
		t.Fatal("claims of free blocks refused")
	}
	for _, c := range [][2]int{{8 << 10, 4 << 10}, {0, 8 << 10}, {32 << 10, 32 << 10}, {1 << 10, 4 << 10}, {0, 5000}, {64 << 10, 4 << 10}} {
		if b.claim(c[0], c[1]) {
			t.Errorf("claim of %d bytes at %d: overlapping or invalid, yet granted", c[1], c[0])
		}
	}
	if got, want := b.freeBytes(), 64<<10-16<<10; got != want {
		t.Fatalf("%d free after claiming 16 KiB, want %d", got, want)
	}
	// What is left is allocatable, and never overlaps a claim.
	for {
		buf, off := b.get(4096)
		if off < 0 {
			break
		}
		if off == 0 || off == 32<<10 || off >= 8<<10 && off < 16<<10 {
			t.Fatalf("got a claimed block at %d", off)
		}
		buf[0] = 1
	}
}
