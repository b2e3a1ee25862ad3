package itest

import (
	"context"
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
// every 5 ms, to the echo app on port 7 loses nothing, on an idle
// appliance and beside a download (issue 14).
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
			pacedStream(t, n, a, "idle")

			// The same stream beside a download that lasts as long:
			// the echoes share the driver, IP and the rings with a TCP
			// stream, and still none may be lost. curl's rate limit
			// keeps the download at about pacedCount*pacedEvery and
			// 40 MB, a correctness test's size.
			const besideBytes, besideRate = 40_000_000, 4_000_000
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				out, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--limit-rate", strconv.Itoa(besideRate), "-o", "/dev/null",
					fmt.Sprintf("http://%s/bytes?n=%d", n.GuestIP, besideBytes))
				if err != nil {
					err = fmt.Errorf("%v: %s", err, out)
				}
				done <- err
			}()
			pacedStream(t, n, a, "beside a download")
			if err := <-done; err != nil {
				t.Errorf("the download beside the stream: %v", err)
			}
		})
	}
}

// pacedStream sends the paced stream to a's echo app from n and fails t
// if any of it is lost, corrupted or refused.
func pacedStream(t *testing.T, n *netns, a *appliance, what string) {
	t.Helper()
	before := a.stats("udp")
	r := n.udpHelper(t, 2*time.Minute, "paced", n.GuestIP+":7", pacedCount)
	after := a.waitStats("udp", func(m map[string]any) bool {
		return num(m, "InDatagrams")+num(m, "InQueueDrops")-num(before, "InDatagrams")-num(before, "InQueueDrops") >= pacedCount
	})
	t.Logf("paced stream of %d datagrams (64 bytes, every 5 ms) to echo, %s: %v; udp: %s",
		pacedCount, what, r, deltas(before, after, "InDatagrams", "InQueueDrops", "OutDatagrams"))
	if r["sent"] != strconv.Itoa(pacedCount) || r["lost"] != "0" || r["bad"] != "0" || r["refused"] != "0" {
		t.Errorf("paced UDP echo stream, %s: %v, want %d sent, none lost, corrupted or refused", what, r, pacedCount)
		// Where the echoes went: echo logs sends that failed (in the
		// console), the servers count the rest.
		for _, c := range []string{"udp", "syscall", "ip", "e1000.0"} {
			if m, err := a.tryStats(c); err == nil {
				t.Logf("keepnet stats %s: %v", c, m)
			}
		}
	}
}
