package tcp

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkKeepCommit is the cost keeping adds to each loop pass that
// touched one connection: its record encoded, sealed and written.
func BenchmarkKeepCommit(b *testing.B) {
	r := newCrashRig(&testing.T{}, relayImpairment, 1, 1<<20)
	r.dial(10)
	for range 200 { // some state: data both ways, a scoreboard perhaps
		r.link.deliver()
		r.apps()
		r.commit()
		if next := r.link.next(); next.After(r.clock.now) {
			r.clock.now = next
		}
		r.a.Tick(r.clock.now)
		r.b.Tick(r.clock.now)
	}
	var e *Endpoint
	for _, c := range r.conns {
		if c.a != nil {
			e = c.a
		}
	}
	if e == nil {
		b.Fatal("no connection")
	}
	_ = netip.Addr{}
	_ = time.Now
	w := enc{b: make([]byte, maxRecord)}
	encodeEndpoint(&w, e)
	b.ReportMetric(float64(w.n), "record-bytes")
	b.ResetTimer()
	for range b.N {
		r.a.touch(e)
		r.a.Commit()
	}
}
