package transport

import (
	"testing"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/servers/ops"
)

// The transport sleeps through IP's lazy answers to its OpOutputs only
// while it has buffers to spare: a quarter of the out pool free and no
// segment waiting for one.
func TestBuffersToSpare(t *testing.T) {
	out, err := pool.Create(100, 8, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s := &Server{out: out}
	var lent []pool.Ref
	for s.buffersToSpare() {
		ref, ok := out.Alloc()
		if !ok {
			t.Fatal("buffers to spare with the pool empty")
		}
		lent = append(lent, ref)
	}
	if len(lent) != 7 {
		t.Errorf("impatient after %d of 8 buffers went to IP, want 7 (fewer than a quarter left)", len(lent))
	}
	for _, ref := range lent {
		out.MustFree(ref)
	}
	s.overflow = []heldSegment{{}}
	if s.buffersToSpare() {
		t.Error("buffers to spare with a segment waiting for one")
	}
}

// Only a delivery taken is a lazy answer: one refused (no port) has IP
// answer the sender with an ICMP error at once.
func TestDeliveredWell(t *testing.T) {
	ok := channel.Msg{Op: uint16(ops.OpDeliver)}
	ops.SetStatus(&ok, ops.StatusOK)
	noPort := ok
	ops.SetStatus(&noPort, ops.StatusNoPort)
	for _, c := range []struct {
		m    channel.Msg
		want bool
	}{{ok, true}, {noPort, false}, {channel.Msg{Op: uint16(ops.OpOutput)}, false}} {
		if got := deliveredWell(c.m); got != c.want {
			t.Errorf("deliveredWell(%v, %v) = %v, want %v", ops.OpOf(c.m), ops.StatusOf(c.m), got, c.want)
		}
	}
}
