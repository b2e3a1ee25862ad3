package pf

import (
	"fmt"
	"strings"
	"testing"
)

// established returns a wire with a TCP connection open through it and a
// data segment and its ACK that fit the windows however often they are
// sent again (the same bytes).
func established(t *testing.T, rules string) (w *wire, data, reply []byte) {
	w = newWire(t, 1024, rules)
	c := w.conn(inside, 40000, outside, 80, Out)
	c.open()
	data = c.fromClient(ack, 1400)
	reply = c.fromServer(ack, 0)
	w.pass(Out, data, ReasonState, "data")
	w.pass(In, reply, ReasonState, "ACK")
	return w, data, reply
}

// TestEstablishedPathAllocatesNothing: a packet of a tracked flow costs no
// allocation, nor does a packet decided by the rules, nor a batch.
func TestEstablishedPathAllocatesNothing(t *testing.T) {
	w, data, reply := established(t, "set default block\npass out proto tcp\npass in proto udp to any port 53 no state\n")
	if n := testing.AllocsPerRun(1000, func() {
		w.f.Verdict(Out, "e1000.0", data, w.now)
		w.f.Verdict(In, "e1000.0", reply, w.now)
	}); n != 0 {
		t.Errorf("established path: %v allocations per run, want 0", n)
	}
	dns := udp(outside, 1000, inside, 53, 20)
	if n := testing.AllocsPerRun(1000, func() { w.f.Verdict(In, "e1000.0", dns, w.now) }); n != 0 {
		t.Errorf("rule path: %v allocations per run, want 0", n)
	}
	batch := []Packet{{Dir: Out, Iface: "e1000.0", Data: data}, {Dir: In, Iface: "e1000.0", Data: reply}, {Dir: In, Iface: "e1000.0", Data: dns}}
	if n := testing.AllocsPerRun(1000, func() { w.f.VerdictBatch(batch, w.now) }); n != 0 {
		t.Errorf("batch: %v allocations per run, want 0", n)
	}
	for i, p := range batch {
		if !p.Verdict.Pass {
			t.Errorf("batch packet %d: %+v, want pass", i, p.Verdict)
		}
	}
}

// BenchmarkEstablished is the cost of a packet of a tracked TCP flow:
// parse, lookup, window check, and the write of the state's record.
func BenchmarkEstablished(b *testing.B) {
	w, data, reply := established(&testing.T{}, "set default block\npass out proto tcp\n")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			w.f.Verdict(Out, "e1000.0", data, w.now)
		} else {
			w.f.Verdict(In, "e1000.0", reply, w.now)
		}
	}
}

// BenchmarkRules100 is the cost of a packet that no state matches, judged
// by 100 rules of which none but the last matches.
func BenchmarkRules100(b *testing.B) {
	var rules strings.Builder
	rules.WriteString("set default block\n")
	for i := range 99 {
		fmt.Fprintf(&rules, "pass in proto tcp from 10.%d.0.0/16 to any port %d no state\n", i, 1000+i)
	}
	rules.WriteString("pass in proto udp to any port 53 no state\n")
	w := newWire(&testing.T{}, 16, rules.String())
	dns := udp(outside, 1000, inside, 53, 20)
	b.ReportAllocs()
	for b.Loop() {
		w.f.Verdict(In, "e1000.0", dns, w.now)
	}
}
