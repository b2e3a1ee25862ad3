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
	for _, c := range []struct {
		p  part
		hw bool
	}{{parts[0], false}, {parts[0], true}, {parts[1], false}, {parts[1], true}} {
		p, hw := c.p, c.hw
		r := newRig(t, model.Config{Hardware: hw, Part: p.model}, e1000.Config{RxRing: 16, TxRing: 16, Variant: p.variant})
		r.fill() // the old driver's posted RX buffers
		before := append([]byte(nil), r.mem[buffsAt:r.next]...)

		if err := e1000.Quiesce(r.m, p.variant, func(time.Duration) {}); err != nil {
			t.Fatalf("%s hardware=%v: Quiesce = %v", p.name, hw, err)
		}
		for i := 0; i < 8; i++ {
			if r.m.Deliver(frame(testMAC, i, 100)) {
				t.Errorf("%s hardware=%v: frame %d delivered after Quiesce, want dropped", p.name, hw, i)
			}
		}
		if string(r.mem[buffsAt:r.next]) != string(before) {
			t.Errorf("%s hardware=%v: DMA into the old driver's buffers after Quiesce", p.name, hw)
		}
		if r.m.Read32(e1000.IMS) != 0 {
			t.Errorf("%s hardware=%v: IMS = %#x after Quiesce, want all masked", p.name, hw, r.m.Read32(e1000.IMS))
		}
	}
}
