package tcp

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// keptSum tells apart what the checksums of kept memory must: a record
// with any one bit flipped, the same bytes under another nonce, a copy
// torn between two records, and the same bytes split into parts
// differently.
func TestKeptSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rec := make([]byte, 403) // not a multiple of eight
	for i := range rec {
		rec[i] = byte(rng.Uint32())
	}
	const seed = 0x1234_5678_9abc_def1
	want := keptSum(seed, rec)
	if keptSum(seed, rec) != want {
		t.Fatal("keptSum is not a function of its input")
	}
	for bit := range len(rec) * 8 {
		rec[bit/8] ^= 1 << (bit % 8)
		if keptSum(seed, rec) == want {
			t.Fatalf("flipping bit %d leaves the sum %#x", bit, want)
		}
		rec[bit/8] ^= 1 << (bit % 8)
	}
	if keptSum(seed+2, rec) == want {
		t.Error("another nonce gives the same sum")
	}
	other := make([]byte, len(rec))
	for i := range other {
		other[i] = byte(rng.Uint32())
	}
	torn := append(append([]byte(nil), rec[:200]...), other[200:]...)
	if s := keptSum(seed, torn); s == want || s == keptSum(seed, other) {
		t.Error("a copy torn between two records sums as one of them")
	}
	if keptSum(seed, rec[:8], rec[8:]) == keptSum(seed, rec[:16], rec[16:]) {
		t.Error("the same bytes in parts split elsewhere sum the same")
	}
	if keptSum(seed, rec[:100]) == keptSum(seed, append(rec[:100:100], 0)) {
		t.Error("a zero byte appended leaves the sum")
	}
}

// BenchmarkKeptSum against CRC-32C, what it replaced, on a record's
// usual size. Run it under TCG to see why:
//
//	go test -c -o /tmp/tcp.test ./servers/tcp
//	qemu-x86_64 -cpu max /tmp/tcp.test -test.run '^$' -test.bench 'KeptSum|CRC32C'
func BenchmarkKeptSum(b *testing.B) {
	rec := make([]byte, 400)
	for b.Loop() {
		keptSum(1, rec)
	}
}

func BenchmarkCRC32C(b *testing.B) {
	rec, table := make([]byte, 400), crc32.MakeTable(crc32.Castagnoli)
	for b.Loop() {
		crc32.Checksum(rec, table)
	}
}
