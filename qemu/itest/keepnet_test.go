package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPingKeepnet(t *testing.T) { pingAcceptance(t, "keepnet") }

// stats reads a component's published counters through `keepnet stats`.
func (a *appliance) stats(name string) map[string]any {
	a.t.Helper()
	m, err := a.tryStats(name)
	if err != nil {
		a.t.Fatal(err)
	}
	return m
}

func (a *appliance) tryStats(name string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := keepnet(ctx, "", "stats", name, "--ctl", a.ctl)
	if err != nil {
		return nil, fmt.Errorf("keepnet stats %s: %v\n%s", name, err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("keepnet stats %s printed %q: %v", name, out, err)
	}
	return m, nil
}

func num(m map[string]any, key string) float64 {
	v, _ := m[key].(float64)
	return v
}

// statsWait is how long waitStats polls: components publish their counters
// once a second, a loaded host may delay that by seconds.
const statsWait = 30 * time.Second

// waitStats polls a component's counters until cond holds, at most
// statsWait, and returns the last it read.
func (a *appliance) waitStats(name string, cond func(map[string]any) bool) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(statsWait)
	for {
		m, err := a.tryStats(name) // it may not have published yet
		if err == nil && cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			if err != nil {
				a.t.Fatal(err)
			}
			return m
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var pingStamp = regexp.MustCompile(`(?m)^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+)`)

// outage pings the appliance every 5 ms, kills a component two seconds in,
// and returns the longest silence between two replies, the replies after
// the kill, and the packets lost. The ping lasts 7 s: a longer outage shows
// as fewer replies after the kill, not as a longer gap.
func outage(t testing.TB, n *netns, a *appliance, component string) (gap time.Duration, after, lost int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := n.exec(ctx, nil, "ping", "-D", "-i", "0.005", "-c", "1400", "-W", "1", n.GuestIP)
		done <- result{out, err}
	}()
	// A flood ping runs beside it, so the component dies under load.
	flood := make(chan result, 1)
	go func() {
		out, err := n.exec(ctx, nil, "ping", "-f", "-w", "7", "-W", "1", n.GuestIP)
		flood <- result{out, err}
	}()
	time.Sleep(2 * time.Second)
	killed := float64(time.Now().UnixNano()) / 1e9
	if out, err := keepnet(ctx, "", "kill", component, "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill %s: %v\n%s", component, err, out)
	}
	r := <-done
	f := <-flood
	if fs, err := parsePing(string(f.out)); err != nil || fs.received == 0 {
		t.Errorf("flood ping during the kill of %s: %+v, %v", component, fs, err)
	} else {
		t.Logf("flood ping during the kill of %s: %d/%d answered", component, fs.received, fs.sent)
	}
	s, perr := parsePing(string(r.out))
	if perr != nil {
		t.Fatalf("ping during the kill of %s: %v (%v)", component, perr, r.err)
	}
	var stamps []float64
	for _, m := range pingStamp.FindAllStringSubmatch(string(r.out), -1) {
		ts, _ := strconv.ParseFloat(m[1], 64)
		stamps = append(stamps, ts)
	}
	sort.Float64s(stamps)
	for i := 1; i < len(stamps); i++ {
		if d := time.Duration((stamps[i] - stamps[i-1]) * 1e9); d > gap {
			gap = d
		}
		if stamps[i] > killed {
			after++
		}
	}
	return gap, after, s.sent - s.received
}

// A crash of the driver or of IP during a ping: the supervisor restarts
// it, the driver resets the device (or IP restores its configuration from
// the store), and replies resume. How long they stop is BenchmarkRecovery's
// figure; here a hang-catching deadline only.
func TestKeepnetRestarts(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	if s := n.ping(t, time.Minute, "-c", "3", "-i", "0.2", "-W", "5"); s.received == 0 {
		t.Fatalf("no ping answer before any kill: %+v", s)
	}
	for _, comp := range []string{"e1000.0", "ip"} {
		gap, after, lost := outage(t, n, a, comp)
		t.Logf("kill %s during a 5 ms ping: longest gap %v, %d packets lost, %d replies after the kill", comp, gap.Round(time.Millisecond), lost, after)
		if s := n.pingResumes(t); s.received < resumePings {
			t.Errorf("kill %s: %d of %d pings answered within %v of the outage, want pings to resume", comp, s.received, resumePings, resumeWait)
		}
		c, _ := a.status().Component(comp)
		if c.State != "running" || c.Restarts != 1 || c.Generation != 2 {
			t.Errorf("after kill %s: %+v, want running, restarts 1, generation 2", comp, c)
		}
	}
	ipStats := a.waitStats("ip", func(m map[string]any) bool { return num(m, "DriverGeneration") == 2 && num(m, "Generation") == 2 })
	if num(ipStats, "DriverGeneration") != 2 || num(ipStats, "Generation") != 2 {
		t.Errorf("ip stats = generation %v, driver generation %v; want 2 and 2", ipStats["Generation"], ipStats["DriverGeneration"])
	}
	console, _ := os.ReadFile(a.console)
	if !strings.Contains(string(console), "configuration from the store") {
		t.Error("the restarted ip did not take its configuration from the store")
	}
}

// framesLostOnTheWay counts the frames that never reached ip: those the
// host's tap dropped (tapDropped) and those the NIC had no buffer for.
func (a *appliance) framesLostOnTheWay(n *netns) float64 {
	d, _ := a.stats("e1000.0")["Device"].(map[string]any)
	return n.tapDropped(a.t) + num(d, "RxMissed") + num(d, "RxNoBuffer")
}

// tapDropped is the number of frames the host's tap dropped on their way
// to the guest (its tx_dropped: QEMU did not read them in time).
func (n *netns) tapDropped(t testing.TB) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.exec(ctx, nil, "cat", "/sys/class/net/"+n.Tap+"/statistics/tx_dropped")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("tap %s tx_dropped %q: %v", n.Tap, out, err)
	}
	return v
}

// Malformed and foreign frames from a raw socket in the namespace are
// dropped and counted, nothing crashes, memory stays flat, and ping still
// works afterwards.
func TestKeepnetMalformedFrames(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	if s := n.ping(t, time.Minute, "-c", "3", "-i", "0.2", "-W", "5"); s.received == 0 {
		t.Fatalf("no ping answer: %+v", s)
	}
	before := a.waitStats("ip", func(m map[string]any) bool { return num(m, "FramesIn") > 0 })
	nicBefore := a.stats("e1000.0")
	tapBefore := n.tapDropped(t)
	rssBefore := map[string]int{}
	stBefore := a.status()
	for _, c := range stBefore.Components {
		rssBefore[c.Name] = c.RSSKiB
	}
	restarts := restartsOf(stBefore)

	const rounds = 300
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mac, err := n.exec(ctx, nil, "sh", "-c", "ip neigh show "+n.GuestIP+" | awk '{print $5}'")
	if err != nil || len(strings.TrimSpace(string(mac))) != 17 {
		t.Fatalf("the appliance's MAC from the namespace's ARP cache: %q, %v", mac, err)
	}
	self, _ := os.Executable()
	cmd := fmt.Sprintf("RAW_IFACE=%s RAW_DST_MAC=%s RAW_SRC_IP=%s RAW_DST_IP=%s RAW_ROUNDS=%d %s -test.run='^TestHelperRawFrames$' -test.v",
		n.Tap, strings.TrimSpace(string(mac)), n.HostIP, n.GuestIP, rounds, self)
	out, err := n.exec(ctx, nil, "sh", "-c", cmd)
	if err != nil || !strings.Contains(string(out), "sent ") {
		t.Fatalf("raw frame sender: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(lastLine(string(out), "sent ")))

	// Frames the device itself dropped for want of a buffer are counted
	// there, and frames the host's tap dropped because QEMU did not read
	// them in time (a busy host) in the tap's tx_dropped; each kind below
	// may be short by at most that many. Frames for
	// another MAC never reach the driver: the NIC's address filter drops
	// them (and no 8254x register counts that).
	device := func(m map[string]any) float64 {
		d, _ := m["Device"].(map[string]any)
		return num(d, "RxMissed") + num(d, "RxNoBuffer")
	}
	wants := []struct {
		counter string
		atLeast float64
	}{
		{"IPBadChecksum", rounds},
		{"IPTruncated", 2 * rounds}, // a cut header, and a total length past the frame
		{"IPBadIHL", rounds},
		{"IPBadLength", rounds}, // the ping of death: a fragment ending past 65535
		{"IPBadVersion", rounds},
		{"ReassemblyOverlaps", rounds},
		{"ARPNotForUs", rounds},
		{"ICMPBad", rounds},
	}
	// Wait for every counter, not one: ip may still be working through
	// the last round's frames when the first kind is all counted.
	var slack float64
	after := a.waitStats("ip", func(m map[string]any) bool {
		slack = device(a.stats("e1000.0")) - device(nicBefore) + n.tapDropped(t) - tapBefore
		for _, w := range wants {
			if num(m, w.counter)-num(before, w.counter) < w.atLeast-slack {
				return false
			}
		}
		return true
	})
	t.Logf("frames the NIC dropped for want of a buffer, or the tap before QEMU read them: %v", slack)
	for _, w := range wants {
		if d := num(after, w.counter) - num(before, w.counter); d < w.atLeast-slack {
			t.Errorf("ip counter %s grew by %v, want at least %v (less the %v frames the NIC dropped)", w.counter, d, w.atLeast, slack)
		}
	}
	st := a.status()
	for _, c := range st.Components {
		if c.State != "running" || c.Restarts != restarts[c.Name] {
			t.Errorf("after the malformed frames %s = %+v, want running with no restart (%d before)", c.Name, c, restarts[c.Name])
		}
		if b := rssBefore[c.Name]; b > 0 && c.RSSKiB > b+8192 {
			t.Errorf("%s resident memory grew from %d KiB to %d KiB", c.Name, b, c.RSSKiB)
		}
	}
	if s := n.ping(t, time.Minute, "-c", "20", "-i", "0.05", "-W", "2"); s.received != s.sent {
		t.Errorf("ping after the malformed frames: %d/%d", s.received, s.sent)
	}
}

func lastLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, prefix) {
			return l
		}
	}
	return ""
}
