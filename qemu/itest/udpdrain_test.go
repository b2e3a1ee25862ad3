package itest

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// pacedCount is the paced stream's length: 10 s at one datagram every
// pacedEvery (200 datagrams/s).
const pacedCount = 2000

// TestUDPPacedStream: a paced stream of 2,000 datagrams of 64 bytes, one
// every 5 ms, to the echo app on port 7 of an idle appliance loses nothing.
// A socket must drain at the rate datagrams arrive, not only when one is in
// flight at a time (TestUDPEchoKeepnet); udp counts what its receive queue
// could not hold in InQueueDrops. The assertion is on loss, not speed: the
// echoes may come late (the helper waits 10 s after the last send).
//
// KEEPNET_UDP_BOOTS (default 1) boots that many appliances one after the
// other, a stream on each: the acceptance is 10 out of 10.
func TestUDPPacedStream(t *testing.T) {
	requireITest(t, true)
	boots := 1
	if v := os.Getenv("KEEPNET_UDP_BOOTS"); v != "" {
		var err error
		if boots, err = strconv.Atoi(v); err != nil || boots < 1 {
			t.Fatalf("KEEPNET_UDP_BOOTS=%q: want a positive number", v)
		}
	}
	for i := 1; i <= boots; i++ {
		t.Run(fmt.Sprintf("boot%d", i), func(t *testing.T) {
			n := newNetns(t)
			a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
			if r := n.udpHelper(t, time.Minute, "echo", n.GuestIP+":7", 20); r["lost"] != "0" {
				t.Fatalf("echo before the stream (ARP, the path warmed): %v", r)
			}
			before := a.stats("udp")
			r := n.udpHelper(t, 2*time.Minute, "paced", n.GuestIP+":7", pacedCount)
			after := a.waitStats("udp", func(m map[string]any) bool {
				return num(m, "InDatagrams")+num(m, "InQueueDrops")-num(before, "InDatagrams")-num(before, "InQueueDrops") >= pacedCount
			})
			t.Logf("paced stream of %d datagrams (64 bytes, every 5 ms) to echo: %v; udp: %s",
				pacedCount, r, deltas(before, after, "InDatagrams", "InQueueDrops", "OutDatagrams"))
			if r["sent"] != strconv.Itoa(pacedCount) || r["lost"] != "0" || r["bad"] != "0" || r["refused"] != "0" {
				t.Errorf("paced UDP echo stream: %v, want %d sent, none lost, corrupted or refused", r, pacedCount)
				// Where the echoes went: echo logs sends that failed (in
				// the console), the servers count the rest.
				for _, c := range []string{"udp", "syscall", "ip", "e1000.0"} {
					if m, err := a.tryStats(c); err == nil {
						t.Logf("keepnet stats %s: %v", c, m)
					}
				}
			}
		})
	}
}
