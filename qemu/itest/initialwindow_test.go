package itest

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rttDelay is the relay's delay each way in TestTCPInitialWindowRTT: a
// round trip of 200 ms, long beside what the guest takes to answer under
// TCG, so that a response's round trips can be counted from its time.
const rttDelay = 100 * time.Millisecond

// TestTCPInitialWindowRTT counts the round trips of a 10 KB response on a
// path with a 200 ms round trip (keepnet-relay -delay 100ms): curl
// fetches 10240 bytes from the appliance's HTTP server, and the time from
// the request to the last byte, in round trips (the handshake's time is
// one), says how many flights the response took. With RFC 6928's initial
// window of ten segments (the default) it all comes in the first; with
// keepnet.tcp.iw=3 (RFC 5681's window, what keepnet had before issue 19)
// it needs a round trip more.
func TestTCPInitialWindowRTT(t *testing.T) {
	requireITest(t, true)
	rounds := map[string]float64{}
	for _, tc := range []struct {
		name, appendArg string
		min, max        float64 // rounds
	}{
		{"iw10", "", 0.5, 1.5},
		{"iw3", "keepnet.tcp.iw=3", 1.5, 2.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNetns(t)
			sock := filepath.Join(t.TempDir(), "n0.sock")
			startRelay(t, n, sock, "-seed", "1", "-stats", "0", "-delay", rttDelay.String())
			args := append(n.upArgs(), "--stack", "keepnet")
			args[1] = "stream:" + sock // replace tap:IF
			if tc.appendArg != "" {
				args = append(args, "--append", tc.appendArg)
			}
			boot(t, n.Name, args...)
			httpWarm(t, n)
			// The fewest of three fetches, each a new connection with a
			// fresh initial window: a slow moment of the guest only adds.
			best := 0.0
			for i := range 3 {
				r := n.fetchRounds(t, 10240)
				t.Logf("fetch %d: %.2f round trips", i+1, r)
				if i == 0 || r < best {
					best = r
				}
			}
			rounds[tc.name] = best
			if best < tc.min || best > tc.max {
				t.Errorf("%s: a 10 KB response took %.2f round trips, want %.1f to %.1f", tc.name, best, tc.min, tc.max)
			}
		})
	}
	t.Logf("10 KB response: %.2f round trips with IW10, %.2f with IW3", rounds["iw10"], rounds["iw3"])
}

// fetchRounds fetches size bytes from the appliance's HTTP server with
// curl and returns the time from the request to the last byte in round
// trips, the connect's time being one.
func (n *netns) fetchRounds(t *testing.T, size int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{time_connect} %{time_pretransfer} %{time_total} %{size_download}",
		fmt.Sprintf("http://%s/bytes?n=%d", n.GuestIP, size))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		t.Fatalf("curl printed %q", out)
	}
	var v [3]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			t.Fatalf("curl printed %q", out)
		}
	}
	if got := atoi(f[3]); got != size {
		t.Fatalf("curl got %d bytes, want %d", got, size)
	}
	connect, pretransfer, total := v[0], v[1], v[2]
	if connect <= 0 {
		t.Fatalf("curl's connect time %v", connect)
	}
	return (total - pretransfer) / connect
}
