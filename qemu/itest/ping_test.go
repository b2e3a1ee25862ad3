package itest

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pingStats is what ping's summary says.
type pingStats struct {
	sent, received int
	rtts           []float64 // per-reply RTTs in ms, when ping printed them
}

var (
	pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
	pingRTT     = regexp.MustCompile(`time=([0-9.]+) ms`)
)

func parsePing(out string) (pingStats, error) {
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return pingStats{}, fmt.Errorf("no ping summary in %q", tail(out, 5))
	}
	var s pingStats
	s.sent, _ = strconv.Atoi(m[1])
	s.received, _ = strconv.Atoi(m[2])
	for _, r := range pingRTT.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(r[1], 64)
		s.rtts = append(s.rtts, v)
	}
	return s, nil
}

func (s pingStats) median() float64 {
	if len(s.rtts) == 0 {
		return 0
	}
	r := append([]float64(nil), s.rtts...)
	sort.Float64s(r)
	return r[len(r)/2]
}

// ping runs ping in the namespace against the appliance.
func (n *netns) ping(t testing.TB, timeout time.Duration, args ...string) pingStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, _ := n.exec(ctx, nil, "ping", append(args, n.GuestIP)...) // ping exits 1 on loss: judge by its summary
	s, err := parsePing(string(out))
	if err != nil {
		t.Fatalf("ping %s: %v", strings.Join(args, " "), err)
	}
	return s
}

// pingAcceptance is the ping part of the driver/IP issue, for one stack.
func pingAcceptance(t *testing.T, stack string) {
	requireITest(t, true)
	n := newNetns(t)
	boot(t, n.Name, append(n.upArgs(), "--stack", stack)...)

	s := n.ping(t, 2*time.Minute, "-c", "500", "-i", "0.01", "-W", "2")
	if s.sent != 500 || s.received != 500 {
		t.Errorf("%s: ping -c 500 -i 0.01: %d/%d received, want all", stack, s.received, s.sent)
	}
	t.Logf("%s: ping -c 500 -i 0.01: %d/%d, median RTT %.3f ms", stack, s.received, s.sent, s.median())

	s = n.ping(t, time.Minute, "-c", "20", "-i", "0.05", "-s", "8000", "-W", "2")
	if s.received != s.sent || s.sent != 20 {
		t.Errorf("%s: ping -s 8000 (fragmented both ways): %d/%d received, want all", stack, s.received, s.sent)
	}

	s = n.ping(t, 3*time.Minute, "-f", "-c", "5000", "-W", "2")
	if s.received != s.sent || s.sent != 5000 {
		t.Errorf("%s: ping -f -c 5000: %d/%d received, want all", stack, s.received, s.sent)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.exec(ctx, nil, "ip", "neigh", "show", n.GuestIP)
	if err != nil || !strings.Contains(string(out), "lladdr 52:54:00:12:34:56") {
		t.Errorf("%s: the namespace's ARP entry for %s = %q (%v), want the appliance's MAC", stack, n.GuestIP, out, err)
	}
}

func TestPingLinux(t *testing.T) { pingAcceptance(t, "linux") }
