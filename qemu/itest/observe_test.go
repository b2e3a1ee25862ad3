package itest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"keepnet/boot/journal"
	"keepnet/qemu/schedtrace"
)

// TestOperatorView boots the keepnet stack, kills tcp, and reads what an
// operator would: `keepnet events` has the kill, the crash with its
// reason, the restart and tcp serving again with its recovery time;
// udp stopped (SIGSTOP) is found hung and comes back, and ip's restart
// makes the driver reset its device, both in the events too;
// `keepnet logs ip` has ip's lines; `keepnet status` prints its tables;
// /metrics, scraped before and after the kill and a download, parses
// and counts the restart, the recovery and the bytes sent.
func TestOperatorView(t *testing.T) {
	requireITest(t, false)
	port := freePort(t)
	a := boot(t, "", "--net", "user", "--fwd", fmt.Sprintf("tcp:%d:80", port))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	before := scrapeMetrics(t, base)

	if out, err := keepnet(ctx, "", "kill", "tcp", "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill tcp: %v\n%s", err, out)
	}
	var ready journal.Event
	var evs []journal.Event
	for deadline := time.Now().Add(resumeWait); ready.Kind == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		evs = a.events(ctx)
		for _, e := range evs {
			if e.Component == "tcp" && e.Kind == journal.Ready && e.Generation == 2 {
				ready = e
			}
		}
	}
	if ready.Kind == "" {
		t.Fatalf("keepnet events never showed tcp generation 2 ready; events:\n%s", eventLines(evs))
	}
	t.Logf("tcp back %v after it was killed", ready.RecoveryTime())
	if ready.Recovery <= 0 || ready.Reason != "after signal: killed" {
		t.Errorf("tcp's ready event = %+v, want a recovery time after signal: killed", ready)
	}
	var kinds []string
	for _, e := range evs {
		if e.Component == "tcp" {
			kinds = append(kinds, fmt.Sprintf("%d %s %s", e.Generation, e.Kind, e.Reason))
		}
	}
	want := []string{"1 start ", "1 ready ", "1 signal SIGKILL requested", "1 crash signal: killed", "2 restart signal: killed", "2 ready after signal: killed"}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Errorf("tcp's events:\n%s\nwant:\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}

	// A stopped component is found hung and restarted; a restarted ip
	// makes the driver reset its device. Both are events.
	if out, err := keepnet(ctx, "", "kill", "udp", "--signal", "STOP", "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill udp --signal STOP: %v\n%s", err, out)
	}
	if out, err := keepnet(ctx, "", "kill", "ip", "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill ip: %v\n%s", err, out)
	}
	hung := a.waitEvent(ctx, func(e journal.Event) bool { return e.Component == "udp" && e.Kind == journal.Hang })
	if !strings.HasPrefix(hung.Reason, "hung (no answer for ") {
		t.Errorf("udp's hang event = %+v, want the reason hung (no answer for ...)", hung)
	}
	back := a.waitEvent(ctx, func(e journal.Event) bool {
		return e.Component == "udp" && e.Kind == journal.Ready && e.Generation == 2
	})
	if back.Recovery <= 0 || !strings.HasPrefix(back.Reason, "after hung") {
		t.Errorf("udp's ready event after the hang = %+v, want a recovery time after hung (...)", back)
	}
	reset := a.waitEvent(ctx, func(e journal.Event) bool { return e.Component == "e1000.0" && e.Kind == journal.Reset })
	if !strings.Contains(reset.Reason, "serving ip generation 2, after a device reset") {
		t.Errorf("e1000.0's device reset event = %+v, want it for ip generation 2", reset)
	}
	t.Logf("udp back %v after it was found hung; e1000.0: %s", back.RecoveryTime(), reset.Reason)

	out, err := keepnet(ctx, "", "events", "--ctl", a.ctl)
	if err != nil || !strings.Contains(out, "crash") || !strings.Contains(out, "signal: killed") {
		t.Errorf("keepnet events: %v, printed:\n%s\nwant the crash in the table", err, out)
	}
	out, err = keepnet(ctx, "", "logs", "ip", "--ctl", a.ctl)
	if err != nil || !strings.Contains(out, " ip: up on e1000.0") {
		t.Errorf("keepnet logs ip: %v, printed:\n%s\nwant ip's \"up on e1000.0\"", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(l, " ip: ") {
			t.Errorf("keepnet logs ip printed a line not ip's: %q", l)
		}
	}
	out, err = keepnet(ctx, "", "logs", "tcp", "--ctl", a.ctl)
	if err != nil || !strings.Contains(out, "tcp: generation 1:") || !strings.Contains(out, "tcp: generation 2:") {
		t.Errorf("keepnet logs tcp: %v, printed:\n%s\nwant the lines of both generations", err, out)
	}
	out, err = keepnet(ctx, "", "status", "--ctl", a.ctl)
	if err != nil || !strings.Contains(out, "COMPONENT") || !strings.Contains(out, "e1000.0  82540EM") {
		t.Errorf("keepnet status: %v, printed:\n%s\nwant the component and NIC tables", err, out)
	}
	t.Logf("keepnet status:\n%s", out)

	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Get(base + "/bytes?n=1000000&seed=3")
	if err != nil {
		t.Fatalf("GET /bytes: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 1000000 {
		t.Fatalf("GET /bytes?n=1000000: %d bytes, %v", n, err)
	}
	// The driver publishes its counters every second: wait for the
	// download to show.
	after := scrapeMetrics(t, base)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		b, _ := metricValue(before, "keepnet_nic_transmit_bytes_total", "nic", "e1000.0")
		if a, _ := metricValue(after, "keepnet_nic_transmit_bytes_total", "nic", "e1000.0"); a-b >= 1000000 {
			break
		}
		after = scrapeMetrics(t, base)
	}
	for _, c := range []struct {
		name     string
		labels   []string
		min, max float64 // the growth from before to after
	}{
		{"keepnet_component_restarts_total", []string{"component", "tcp"}, 1, 1},
		{"keepnet_component_restarts_total", []string{"component", "ip"}, 1, 1},
		{"keepnet_component_hangs_total", []string{"component", "udp"}, 1, 1},
		{"keepnet_events_total", []string{"component", "e1000.0", "kind", "device-reset"}, 1, 1},
		{"keepnet_events_total", []string{"component", "tcp", "kind", "crash"}, 1, 1},
		{"keepnet_component_recovery_seconds", []string{"component", "tcp"}, 1, 1},
		{"keepnet_nic_transmit_bytes_total", []string{"nic", "e1000.0"}, 1000000, 1e9},
	} {
		b, _ := metricValue(before, c.name, c.labels...)
		a, ok := metricValue(after, c.name, c.labels...)
		if !ok || a-b < c.min || a-b > c.max {
			t.Errorf("%s%v went from %v to %v (found %v), want a growth of %v to %v", c.name, c.labels, b, a, ok, c.min, c.max)
		}
	}
	if v, ok := metricValue(after, "keepnet_nic_info", "nic", "e1000.0", "address", "10.0.2.15/24"); !ok || v != 1 {
		t.Errorf("keepnet_nic_info for e1000.0 at 10.0.2.15/24: %v, %v", v, ok)
	}
	promtoolCheck(t, base)
}

// promtoolCheck has Prometheus' promtool (Debian's prometheus package)
// check /metrics, where the host has it.
func promtoolCheck(t *testing.T, base string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("no promtool (apt-get install prometheus): /metrics checked by the expfmt parser only")
		return
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n/metrics:\n%s", err, out, body)
	}
}

// scrapeMetrics GETs /metrics and parses it as Prometheus would.
func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	var err error
	// slirp's forwarded port may take a moment.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		var resp *http.Response
		if resp, err = client.Get(base + "/metrics"); err != nil {
			continue
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, perr := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || perr != nil {
			t.Fatalf("GET /metrics: %s, does not parse: %v", resp.Status, perr)
		}
		return fams
	}
	t.Fatalf("GET /metrics: %v", err)
	return nil
}

// metricValue is the value of the metric of family name whose labels
// include labels (name, value pairs), a histogram's by its count.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// events is the appliance's journal of events, through keepnet events --json.
func (a *appliance) events(ctx context.Context) []journal.Event {
	a.t.Helper()
	out, err := keepnetAt(ctx, a.bin, "", "events", "--json", "--ctl", a.ctl)
	if err != nil {
		a.t.Fatalf("keepnet events --json: %v\n%s", err, out)
	}
	var evs []journal.Event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e journal.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			a.t.Fatalf("keepnet events --json printed %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// waitEvent waits (at most resumeWait) for an event that match accepts.
func (a *appliance) waitEvent(ctx context.Context, match func(journal.Event) bool) journal.Event {
	a.t.Helper()
	var evs []journal.Event
	for deadline := time.Now().Add(resumeWait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		evs = a.events(ctx)
		for _, e := range evs {
			if match(e) {
				return e
			}
		}
	}
	a.t.Fatalf("no such event within %v; events:\n%s", resumeWait, eventLines(evs))
	return journal.Event{}
}

func eventLines(evs []journal.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s %d %s %s | %s\n", e.Time.Format("15:04:05.000"), e.Component, e.Generation, e.Kind, e.Reason, e.Action)
	}
	return b.String()
}

// TestStackOnItsProcessor: on two processors the stack's servers run on
// the first, the applications on the second, and the NIC's interrupts
// arrive on the first, where its driver runs (boot/pid1 "Processors");
// keepnet status shows all three.
func TestStackOnItsProcessor(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--smp", "2")...)
	st := a.status()
	on := map[string]string{"e1000.0": "0", "ip": "0", "udp": "0", "tcp": "0", "syscall": "0", "httpd": "1", "echo": "1", "store": "0-1"}
	for name, want := range on {
		if c, ok := st.Component(name); !ok || c.CPUs != want {
			t.Errorf("%s runs on processors %q, want %q", name, c.CPUs, want)
		}
	}
	// The driver shares its processor with ip: it sleeps after the first
	// poll that finds nothing (drivers/nic spinRoundsOn).
	if spin := num(a.stats("e1000.0"), "SpinRounds"); spin != 1 {
		t.Errorf("e1000.0 sleeps after %v empty polls in a row, on the processor it shares with ip; want 1", spin)
	}
	irqs := func() []int64 {
		c, _ := a.status().Component("e1000.0")
		return c.IRQs
	}
	before := irqs()
	if len(before) != 2 {
		t.Fatalf("e1000.0's interrupts per processor = %v, want two counts", before)
	}
	httpTransfer(t, n, 5_000_000, 1_000_000)
	after := irqs()
	if len(after) != 2 || after[0] == before[0] || after[1] != before[1] {
		t.Errorf("e1000.0's interrupts per processor %v before a transfer, %v after: want them all on processor 0", before, after)
	}
	t.Logf("e1000.0's interrupts on processors 0 and 1 during a 5 MB download and a 1 MB upload: %d, %d", after[0]-before[0], after[1]-before[1])

	// keepnet trace: the scheduler's events of both processors, and
	// servers that, idle, sleep in Go's netpoller ("How a process sleeps"
	// in kernel/channel): woken by their work and timers, not a hundred
	// times a second by their sysmon as when they slept unannounced.
	time.Sleep(2 * time.Second) // the transfer's last wake-ups pass
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	file := filepath.Join(t.TempDir(), "trace.txt")
	out, err := keepnet(ctx, "", "trace", "--seconds", "3", "-o", file, "--ctl", a.ctl)
	if err != nil {
		t.Fatalf("keepnet trace: %v\n%s", err, out)
	}
	t.Logf("keepnet trace of the idle appliance:\n%s", out)
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	events, err := schedtrace.Parse(bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	sum := schedtrace.Summarize(events)
	if sum.CPUs != 2 || sum.Span < 2*time.Second {
		t.Fatalf("the trace spans %v on %d processors; want about 3 s on 2", sum.Span, sum.CPUs)
	}
	runs := map[string]float64{}
	for _, p := range sum.Programs {
		runs[p.Comm] = float64(p.Runs) / sum.Span.Seconds()
	}
	for _, comm := range []string{"udp", "syscall", "tcp"} {
		r, ok := runs[comm]
		if !ok {
			t.Errorf("%s never ran in 3 s (hang detection pings it twice a second)", comm)
		} else if r > 50 {
			t.Errorf("idle, %s ran %.0f times a second; want at most 50 (its sysmon looking every 10 ms would be 100 more)", comm, r)
		}
	}
}
