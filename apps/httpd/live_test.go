package httpd

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// liveStatus is an appliance whose driver has moved rx and tx bytes and
// whose tcp has used cpu milliseconds.
func liveStatus(rx, tx uint64, cpu int64, tcpPID int) *ctl.Status {
	drv, _ := json.Marshal(map[string]any{"Generation": 1, "PCI": "0000:00:03.0", "PCIID": "8086:100e", "MAC": "525400123456", "LinkUp": true,
		"Device": map[string]uint64{"RxBytes": rx, "TxBytes": tx}})
	return &ctl.Status{Ready: true, Stack: "keepnet", Components: []ctl.Component{
		{Name: "e1000.0", PID: 30, State: "running", Ready: true, Generation: 1, Stats: drv},
		{Name: "ip", PID: 31, State: "running", Ready: true, Generation: 1, Stats: json.RawMessage(`{"Ifaces":[{"Driver":"e1000.0","Addr":"10.0.2.15/24"}]}`)},
		{Name: "tcp", PID: tcpPID, State: "running", Ready: true, Generation: 1, CPUMillis: cpu, RSSKiB: 2048},
	}}
}

// TestLive samples twice, 2 s apart on the test's clock: the view has the
// rates and CPU share between the two, a history point, and the events and
// lines of the journal.
func TestLive(t *testing.T) {
	st := liveStatus(1000, 0, 100, 40)
	j := journal.New(nil)
	l := &live{cfg: Config{
		Status: func(context.Context) (*ctl.Status, error) { return st, nil },
		Events: func(_ context.Context, since uint64) ([]journal.Event, uint64, error) {
			e, next := j.Events(since, ctl.ReplyBudget)
			return e, next, nil
		},
		Logs: func(_ context.Context, name string, since uint64) ([]journal.Line, uint64, error) {
			ls, next := j.Lines(name, since, ctl.ReplyBudget)
			return ls, next, nil
		},
	}}
	ctx := context.Background()
	t0 := time.Unix(1e9, 0)
	j.Log("ip", []byte("up on e1000.0"))
	l.sample(ctx, t0)
	v := l.view()
	if len(v.NICs) != 1 || v.NICs[0].RxRate != -1 || v.NICs[0].Addr != "10.0.2.15/24" || len(v.Lines) != 1 {
		t.Fatalf("first view = %+v, want the NIC with its address, no rate yet, ip's line", v)
	}

	st = liveStatus(2001000, 4000, 600, 40)
	j.Add(journal.Event{Component: "tcp", Kind: journal.Crash, Reason: "signal: killed"})
	l.sample(ctx, t0.Add(2*time.Second))
	v = l.view()
	n := v.NICs[0]
	if n.RxRate != 1e6 || n.TxRate != 2000 || len(n.History) != 1 || n.History[0].Rx != 1e6 {
		t.Errorf("NIC after 2 MB in 2 s: rx %v tx %v history %v; want 1e6, 2000 and one point", n.RxRate, n.TxRate, n.History)
	}
	if c := v.Components[2]; c.CPU != 25 {
		t.Errorf("tcp's CPU after 500 ms in 2 s = %v%%, want 25", c.CPU)
	}
	if len(v.Events) != 1 || v.Events[0].Kind != journal.Crash || len(v.Lines) != 1 {
		t.Errorf("events %v, lines %v: want the crash and ip's line, once each", v.Events, v.Lines)
	}

	// A sample without the published statistics (init's store query
	// timed out) keeps the NIC, without a rate.
	st = liveStatus(2001000, 4000, 600, 40)
	for i := range st.Components {
		st.Components[i].Stats = nil
	}
	l.sample(ctx, t0.Add(3*time.Second))
	if v := l.view(); len(v.NICs) != 1 || v.NICs[0].Addr != "10.0.2.15/24" || v.NICs[0].RxRate != -1 || len(v.NICs[0].History) != 1 {
		t.Errorf("after a sample without statistics: NICs %+v, want e1000.0 still there, no rate, no new history point", v.NICs)
	}

	// A restarted tcp (another pid) and a failing status: no CPU share
	// for the new process, the last view stays with the error.
	st = liveStatus(2001000, 4000, 10, 41)
	l.sample(ctx, t0.Add(4*time.Second))
	if c := l.view().Components[2]; c.CPU != -1 {
		t.Errorf("a new tcp process's CPU share = %v, want -1 (unknown)", c.CPU)
	}
	l.cfg.Status = func(context.Context) (*ctl.Status, error) { return nil, context.DeadlineExceeded }
	l.sample(ctx, t0.Add(6*time.Second))
	if v := l.view(); !strings.Contains(v.Error, "deadline") || len(v.Components) != 3 {
		t.Errorf("after a failed sample: error %q, %d components; want the error and the last components", v.Error, len(v.Components))
	}
}

// GET /live.json answers JSON even before any status.
func TestLiveJSON(t *testing.T) {
	srv := newTestServer(t, okStatus)
	resp, body := do(t, "GET", srv.URL+"/live.json", nil)
	var v liveView
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || len(v.Components) != 2 {
		t.Errorf("GET /live.json = %d %s, want the view with both components", resp.StatusCode, body)
	}
}
