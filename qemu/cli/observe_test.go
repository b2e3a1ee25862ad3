package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// observed is an appliance with a history: tcp was killed and came back,
// and ip and tcp said a few things.
func observed(t *testing.T) (*fakeAppliance, string) {
	t.Helper()
	clock := time.Unix(1e9, 0)
	j := journal.New(func() time.Time { clock = clock.Add(time.Second); return clock })
	j.Add(journal.Event{Component: "tcp", Kind: journal.Start, Generation: 1, PID: 40})
	j.Add(journal.Event{Component: "tcp", Kind: journal.Signal, PID: 40, Reason: "SIGKILL requested"})
	j.Add(journal.Event{Component: "tcp", Kind: journal.Crash, PID: 40, Reason: "signal: killed", Action: "restarting"})
	j.Add(journal.Event{Component: "tcp", Kind: journal.Restart, Generation: 2, PID: 41, Reason: "signal: killed"})
	j.Add(journal.Event{Component: "tcp", Kind: journal.Ready, Generation: 2, PID: 41, Reason: "after signal: killed", Recovery: 412.5})
	j.Log("ip", []byte("up on e1000.0"))
	j.Log("tcp", []byte("serving"))
	j.Log("tcp", []byte("serving again"))
	drv := `{"Generation":1,"PCI":"0000:00:03.0","PCIID":"8086:100e","Family":"e1000","Backend":"vfio, MSI","MAC":"525400123456","LinkUp":true,"Device":{"RxBytes":1000,"TxBytes":500}}`
	f := &fakeAppliance{journal: j, status: ctl.Status{Ready: true, Stack: "keepnet", CPU: &ctl.CPUTimes{NumCPUs: 2}, Components: []ctl.Component{
		{Name: "e1000.0", PID: 30, State: "running", Ready: true, Generation: 1, RSSKiB: 2048, CPUMillis: 500, UptimeMillis: 10000, CPUs: "0", Stats: json.RawMessage(drv)},
		{Name: "ip", PID: 31, State: "running", Ready: true, Generation: 1, Stats: json.RawMessage(`{"Ifaces":[{"Driver":"e1000.0","Addr":"10.0.2.15/24"}]}`)},
		{Name: "tcp", PID: 41, State: "running", Ready: true, Generation: 2, Restarts: 1, LastExit: "signal: killed", UptimeMillis: 3000},
	}}}
	return f, f.serve(t)
}

func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Main(args, &out, &errOut); code != 0 {
		t.Fatalf("keepnet %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

func TestStatusTable(t *testing.T) {
	_, sock := observed(t)
	out := runCLI(t, "status", "--ctl", sock, "--interval", "0")
	for _, want := range []string{
		`(?m)^keepnet: ready, keepnet stack, 2 CPUs$`,
		`(?m)^COMPONENT +STATE +PID +GEN +RESTARTS +UPTIME +CPU% +ON CPUS +MEMORY +LAST EXIT$`,
		`(?m)^e1000\.0 +running +30 +1 +0 +10s +5\.0 +0 +2\.0 MiB +-$`,
		`(?m)^tcp +running +41 +2 +1 +3s +0\.0 +- +- +signal: killed$`,
		`(?m)^NIC +MODEL +DMA +MAC +ADDRESS +LINK +RX +TX +RESETS$`,
		`(?m)^e1000\.0 +82540EM \(8086:100e\) +vfio, MSI +52:54:00:12:34:56 +10\.0\.2\.15/24 +up +- +- +0$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("keepnet status has no line matching %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("keepnet status not on a terminal printed colours:\n%q", out)
	}
	var st ctl.Status
	if err := json.Unmarshal([]byte(runCLI(t, "status", "--json", "--ctl", sock)), &st); err != nil || len(st.Components) != 3 {
		t.Errorf("keepnet status --json: %v, %d components; want the status as JSON", err, len(st.Components))
	}
}

// The rates are those between two looks.
func TestStatusRates(t *testing.T) {
	f, sock := observed(t)
	go func() {
		time.Sleep(200 * time.Millisecond)
		f.mu.Lock()
		defer f.mu.Unlock()
		st := f.status
		st.Components = append([]ctl.Component(nil), st.Components...)
		st.Components[0].Stats = json.RawMessage(`{"Generation":1,"PCI":"0000:00:03.0","PCIID":"8086:100e","MAC":"525400123456","LinkUp":true,"Device":{"RxBytes":1000001000,"TxBytes":500}}`)
		f.status = st
	}()
	out := runCLI(t, "status", "--ctl", sock, "--interval", "500ms")
	if !regexp.MustCompile(`(?m)^e1000\.0 .* up +[0-9.]+ (MB|GB)/s +0 B/s +0$`).MatchString(out) {
		t.Errorf("keepnet status after a gigabyte came in: no receive rate in MB/s or GB/s:\n%s", out)
	}
}

func TestTopCount(t *testing.T) {
	_, sock := observed(t)
	out := runCLI(t, "top", "--ctl", sock, "--interval", "100ms", "--count", "2")
	if n := strings.Count(out, "COMPONENT"); n != 2 {
		t.Errorf("keepnet top --count 2 printed %d tables:\n%s", n, out)
	}
}

func TestEventsTable(t *testing.T) {
	_, sock := observed(t)
	out := runCLI(t, "events", "--ctl", sock)
	for _, want := range []string{
		`(?m)^TIME +COMPONENT +GEN +EVENT +REASON +THEN +RECOVERY$`,
		`(?m) tcp +1 +crash +signal: killed +restarting +-$`,
		`(?m) tcp +2 +ready +after signal: killed +- +413ms$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("keepnet events has no line matching %s:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(runCLI(t, "events", "--json", "--ctl", sock)), "\n")
	var e journal.Event
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil || e.Kind != journal.Ready || e.Recovery != 412.5 {
		t.Errorf("keepnet events --json: last line %s (%v), want tcp's ready with its recovery", lines[len(lines)-1], err)
	}
}

func TestLogs(t *testing.T) {
	f, sock := observed(t)
	out := runCLI(t, "logs", "tcp", "--ctl", sock)
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} tcp: serving\n\d\d:\d\d:\d\d\.\d{3} tcp: serving again\n$`).MatchString(out) {
		t.Errorf("keepnet logs tcp = %q, want tcp's two lines", out)
	}
	if out := runCLI(t, "logs", "--ctl", sock, "-n", "1"); !strings.HasSuffix(out, "tcp: serving again\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("keepnet logs -n 1 = %q, want the last line", out)
	}

	// -f prints what comes later, until Ctrl-C (here: the context).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var buf syncWriter
	done := make(chan error, 1)
	go func() { done <- logs(ctx, []string{"ip", "-f", "--ctl", sock}, &buf, &buf) }()
	f.journal.Log("ip", []byte("later"))
	for !strings.Contains(buf.String(), "ip: later") {
		select {
		case err := <-done:
			t.Fatalf("keepnet logs -f ended: %v; printed %q", err, buf.String())
		case <-ctx.Done():
			t.Fatalf("keepnet logs -f never printed the later line; printed %q", buf.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("keepnet logs -f after Ctrl-C: %v, want nil", err)
	}
}

// syncWriter is a buffer one goroutine writes while another reads.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
