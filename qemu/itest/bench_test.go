package itest

import (
	"testing"
	"time"
)

// BenchmarkPingRTT boots each stack in the same QEMU configuration, one
// after the other in one run, and reports the median RTT of 300 pings at
// 10 ms intervals from the namespace. Run it with -benchtime=1x (make
// bench): each sub-benchmark boots a guest once.
func BenchmarkPingRTT(b *testing.B) {
	for _, stack := range []string{"linux", "keepnet"} {
		b.Run(stack, func(b *testing.B) {
			requireITest(b, true)
			n := newNetns(b)
			boot(b, n.Name, append(n.upArgs(), "--stack", stack)...)
			n.ping(b, time.Minute, "-c", "20", "-i", "0.05", "-W", "2") // warm ARP and caches
			b.ResetTimer()
			var s pingStats
			for i := 0; i < b.N; i++ {
				s = n.ping(b, 2*time.Minute, "-c", "300", "-i", "0.01", "-W", "2")
			}
			b.StopTimer()
			if s.received != s.sent {
				b.Errorf("%s: %d/%d answered", stack, s.received, s.sent)
			}
			b.ReportMetric(s.median()*1000, "median-rtt-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}
