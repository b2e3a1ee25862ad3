package splitmix

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// reference is splitmix64 written out the long way, one byte at a time, to
// check Reader against something that shares none of its code.
func reference(seed uint64, n int) []byte {
	out := make([]byte, 0, n)
	state := seed
	for len(out) < n {
		state += 0x9E3779B97F4A7C15
		z := state
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		for i := 0; i < 8 && len(out) < n; i++ {
			out = append(out, byte(z>>(8*i)))
		}
	}
	return out
}

func TestNextKnownVectors(t *testing.T) {
	// splitmix64 from state 0, as published with the reference C code
	// (prng.di.unimi.it/splitmix64.c) and used to seed xoshiro.
	want := []uint64{0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F}
	var state uint64
	for i, w := range want {
		if got := Next(&state); got != w {
			t.Errorf("output %d of seed 0 = %#016x, want %#016x", i, got, w)
		}
	}
}

func TestReaderKnownBytes(t *testing.T) {
	// The first word of seed 0, little-endian.
	want := []byte{0xAF, 0xCD, 0x1D, 0x7B, 0x39, 0xA8, 0x20, 0xE2, 0xF4, 0x65}
	got := make([]byte, len(want))
	io.ReadFull(New(0), got)
	if !bytes.Equal(got, want) {
		t.Errorf("first bytes of seed 0 = % x, want % x", got, want)
	}
	if ref := reference(0, len(want)); !bytes.Equal(ref, want) {
		t.Errorf("reference(0) = % x, want % x", ref, want)
	}
}

func TestReaderMatchesReference(t *testing.T) {
	for _, seed := range []uint64{0, 1, 42, 0xDEADBEEF, 1<<64 - 1} {
		want := reference(seed, 10007)
		got := make([]byte, len(want))
		if n, err := New(seed).Read(got); n != len(got) || err != nil {
			t.Fatalf("New(%#x).Read(%d bytes) = %d, %v; want %d, nil", seed, len(got), n, err, len(got))
		}
		if !bytes.Equal(got, want) {
			t.Errorf("New(%#x) stream differs from reference at byte %d", seed, firstDiff(got, want))
		}
	}
}

func TestZeroReaderIsSeedZero(t *testing.T) {
	var r Reader
	got := make([]byte, 100)
	r.Read(got)
	if want := reference(0, 100); !bytes.Equal(got, want) {
		t.Errorf("Reader{} stream differs from seed 0 at byte %d", firstDiff(got, want))
	}
}

func TestReadSizesGiveSameStream(t *testing.T) {
	const total = 50000
	for _, size := range []int{1, 3, 7, 8, 13, 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			want := make([]byte, total)
			New(7).Read(want)
			r := New(7)
			var got []byte
			buf := make([]byte, size)
			for len(got) < total {
				n, err := r.Read(buf)
				if n != size || err != nil {
					t.Fatalf("Read(%d bytes) = %d, %v; want %d, nil", size, n, err, size)
				}
				got = append(got, buf...)
			}
			if got = got[:total]; !bytes.Equal(got, want) {
				t.Errorf("reads of %d bytes differ from one read at byte %d", size, firstDiff(got, want))
			}
		})
	}
}

func TestEmptyRead(t *testing.T) {
	r := New(3)
	one := make([]byte, 3)
	r.Read(one)
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	rest := make([]byte, 13)
	r.Read(rest)
	if got, want := append(one, rest...), reference(3, 16); !bytes.Equal(got, want) {
		t.Errorf("stream around an empty read = % x, want % x", got, want)
	}
}

// FuzzReadSizes reads the stream in the chunk sizes given by the fuzzer's
// bytes and checks it against the reference.
func FuzzReadSizes(f *testing.F) {
	f.Add(uint64(0), []byte{1, 3, 7, 8, 13, 0, 255})
	f.Add(uint64(1<<63), []byte{9, 9, 9, 16})
	f.Fuzz(func(t *testing.T, seed uint64, sizes []byte) {
		r := New(seed)
		var got []byte
		for _, s := range sizes {
			buf := make([]byte, s)
			r.Read(buf)
			got = append(got, buf...)
		}
		if want := reference(seed, len(got)); !bytes.Equal(got, want) {
			t.Errorf("seed %#x, sizes %v: differs from reference at byte %d", seed, sizes, firstDiff(got, want))
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func BenchmarkRead(b *testing.B) {
	for _, size := range []int{4 << 10, 256 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r := New(0)
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				r.Read(buf)
			}
		})
	}
}
