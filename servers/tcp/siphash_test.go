package tcp

import (
	"net/netip"
	"testing"
)

// The paper's test vectors: key 00 01 .. 0f, messages 00 01 .. of each
// length (its appendix A gives 15 bytes; the reference implementation's
// vectors.h the empty message and 8 bytes).
func TestSipHashVectors(t *testing.T) {
	var k [16]byte
	msg := make([]byte, 16)
	for i := range k {
		k[i], msg[i] = byte(i), byte(i)
	}
	for _, c := range []struct {
		n    int
		want uint64
	}{{0, 0x726fdb47dd0e0e31}, {8, 0x93f5f5799a932462}, {15, 0xa129ca6149be45e5}} {
		if got := sipHash(k, msg[:c.n]); got != c.want {
			t.Errorf("SipHash-2-4 of %d bytes = %#x, want %#x", c.n, got, c.want)
		}
	}
}

// A SYN flood makes tcp hash every SYN (an ISN or a cookie, a timestamp
// offset): the hash must not allocate.
func TestHashAllocs(t *testing.T) {
	h := newHarness(t, nil)
	id := tuple{localAddr: netip.MustParseAddr("10.0.0.2"), localPort: 80, remoteAddr: netip.MustParseAddr("10.0.0.1"), remotePort: 4000}
	if n := testing.AllocsPerRun(100, func() { h.tb.hash(id, hashCookie, 1, 2) }); n != 0 {
		t.Errorf("hash allocates %v times a call, want 0", n)
	}
}
