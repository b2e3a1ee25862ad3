package e1000_test

import (
	"testing"

	"keepnet/drivers/netdev"
	"keepnet/e1000"
	"keepnet/e1000/model"
)

// FuzzPollRX: whatever a device (or a corrupted ring) writes back into
// descriptors, PollRX does not panic, returns each posted buffer at most
// once, and never hands out more bytes than the buffer has.
func FuzzPollRX(f *testing.F) {
	f.Add([]byte{0xea, 0x05, 0, 0, 0x03, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0, 0, 0x01, 0xff, 0, 0, 0x40, 0, 0, 0, 0x03, 0x80, 0, 0})
	f.Fuzz(func(t *testing.T, wb []byte) {
		r := newRig(t, model.Config{}, e1000.Config{RxRing: 8, TxRing: 8})
		posted := r.fill()
		for i := 0; i+8 <= len(wb) && i/8 < len(posted); i += 8 {
			d := r.mem[ringsAt+i*2 : ringsAt+i*2+16]
			copy(d[8:], wb[i:i+8])
		}
		seen := map[uint64]bool{}
		r.dev.PollRX(func(c uint64, fr []byte, _ netdev.RxCheck) {
			if seen[c] {
				t.Fatalf("buffer %#x returned twice", c)
			}
			seen[c] = true
			if len(fr) > bufBytes {
				t.Fatalf("frame of %d bytes from a %d-byte buffer", len(fr), bufBytes)
			}
		})
		if n := r.dev.PollRX(func(uint64, []byte, netdev.RxCheck) {}); len(seen)+n > len(posted) {
			t.Fatalf("PollRX returned %d+%d buffers of %d posted", len(seen), n, len(posted))
		}
	})
}
