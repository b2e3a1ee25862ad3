package e1000_test

import (
	"testing"
	"time"

	"keepnet/e1000"
	"keepnet/e1000/model"
)

// A driver that crashed left buffers posted. Its successor quiesces the
// device before it says hello (after which their pool may be freed): from
// then on no frame is written into any of them, and nothing is sent.
func TestQuiesceStopsDMA(t *testing.T) {
	for _, hw := range []bool{false, true} {
		r := newRig(t, model.Config{Hardware: hw}, e1000.Config{RxRing: 16, TxRing: 16})
		r.fill() // the old driver's posted RX buffers
		before := append([]byte(nil), r.mem[buffsAt:r.next]...)

		if err := e1000.Quiesce(r.m, nil, func(time.Duration) {}); err != nil {
			t.Fatalf("hardware=%v: Quiesce = %v", hw, err)
		}
		for i := 0; i < 8; i++ {
			if r.m.Deliver(frame(testMAC, i, 100)) {
				t.Errorf("hardware=%v: frame %d delivered after Quiesce, want dropped", hw, i)
			}
		}
		if string(r.mem[buffsAt:r.next]) != string(before) {
			t.Errorf("hardware=%v: DMA into the old driver's buffers after Quiesce", hw)
		}
		if r.m.Read32(e1000.IMS) != 0 {
			t.Errorf("hardware=%v: IMS = %#x after Quiesce, want all masked", hw, r.m.Read32(e1000.IMS))
		}
	}
}
