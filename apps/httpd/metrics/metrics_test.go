package metrics

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// scrape GETs /metrics and parses it as Prometheus does.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics = %s, %s:\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the value of the metric of family name whose labels include
// labels (name, value pairs); false if none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
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

// TestMetrics scrapes /metrics twice around a restart of tcp and a
// download: the counters move as they should, and each recovery is in the
// histogram once.
func TestMetrics(t *testing.T) {
	j := journal.New(nil)
	st := &ctl.Status{Ready: true, Stack: "keepnet", CPU: &ctl.CPUTimes{User: 1500, Idle: 9000, NumCPUs: 2}, Components: []ctl.Component{
		{Name: "e1000.0", PID: 30, State: "running", Ready: true, Generation: 1, CPUMillis: 250, RSSKiB: 1024, UptimeMillis: 5000,
			Stats: json.RawMessage(`{"PCI":"0000:00:03.0","PCIID":"8086:100e","MAC":"525400123456","LinkUp":true,"Device":{"RxBytes":1000,"TxBytes":20,"RxFrames":3,"TxFrames":1}}`)},
		{Name: "ip", PID: 31, State: "running", Ready: true, Generation: 1, Stats: json.RawMessage(`{"Ifaces":[{"Driver":"e1000.0","Addr":"10.0.2.15/24"}]}`)},
		{Name: "tcp", PID: 32, State: "running", Ready: true, Generation: 1},
	}}
	srv := newServer(t, config{
		Status: func(context.Context) (*ctl.Status, error) { return st, nil },
		Events: func(_ context.Context, since uint64) ([]journal.Event, uint64, error) {
			evs, next := j.Events(since, ctl.ReplyBudget)
			return evs, next, nil
		},
	})
	j.Add(journal.Event{Component: "tcp", Kind: journal.Start, Generation: 1})

	before := scrape(t, srv.URL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"keepnet_ready", nil, 1},
		{"keepnet_component_restarts_total", []string{"component", "tcp"}, 0},
		{"keepnet_component_up", []string{"component", "tcp"}, 1},
		{"keepnet_component_cpu_seconds_total", []string{"component", "e1000.0"}, 0.25},
		{"keepnet_component_resident_memory_bytes", []string{"component", "e1000.0"}, 1 << 20},
		{"keepnet_nic_receive_bytes_total", []string{"nic", "e1000.0"}, 1000},
		{"keepnet_nic_info", []string{"nic", "e1000.0", "address", "10.0.2.15/24", "mac", "52:54:00:12:34:56"}, 1},
		{"keepnet_cpu_seconds_total", []string{"mode", "user"}, 1.5},
		{"keepnet_events_total", []string{"component", "tcp", "kind", "start"}, 1},
	} {
		if got, ok := value(before, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := before["go_goroutines"]; ok {
		t.Errorf("/metrics has the Go runtime's metrics: httpd's, not the appliance's")
	}

	// tcp is killed and comes back in 400ms; a download comes in.
	j.Add(journal.Event{Component: "tcp", Kind: journal.Crash, Generation: 1, Reason: "signal: killed"})
	j.Add(journal.Event{Component: "tcp", Kind: journal.Restart, Generation: 2})
	j.Add(journal.Event{Component: "tcp", Kind: journal.Ready, Generation: 2, Recovery: 400})
	next := *st
	next.Components = append([]ctl.Component(nil), st.Components...)
	next.Components[2].Restarts, next.Components[2].Generation = 1, 2
	next.Components[0].Stats = json.RawMessage(`{"PCI":"0000:00:03.0","PCIID":"8086:100e","MAC":"525400123456","LinkUp":true,"Device":{"RxBytes":5000000,"TxBytes":20}}`)
	st = &next

	for range 2 { // a second scrape counts nothing twice
		after := scrape(t, srv.URL)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"keepnet_component_restarts_total", []string{"component", "tcp"}, 1},
			{"keepnet_nic_receive_bytes_total", []string{"nic", "e1000.0"}, 5e6},
			{"keepnet_events_total", []string{"component", "tcp", "kind", "crash"}, 1},
			{"keepnet_component_recovery_seconds", []string{"component", "tcp"}, 1}, // one observation
		} {
			if got, ok := value(after, c.name, c.labels...); !ok || got != c.want {
				t.Errorf("after the restart: %s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
			}
		}
		h := after["keepnet_component_recovery_seconds"].Metric[0].Histogram
		if h.GetSampleSum() != 0.4 {
			t.Errorf("recovery histogram sum = %v, want 0.4", h.GetSampleSum())
		}
	}
}

// Without a status, /metrics says so with an error rather than stale
// numbers.
func TestMetricsWithoutStatus(t *testing.T) {
	srv := newServer(t, config{})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		// ContinueOnError serves what it could: nothing of ours.
		fams := scrape(t, srv.URL)
		if _, ok := fams["keepnet_ready"]; ok {
			t.Errorf("/metrics without a status has keepnet_ready")
		}
	}
}

// config is what Handler takes.
type config struct {
	Status func(ctx context.Context) (*ctl.Status, error)
	Events func(ctx context.Context, since uint64) ([]journal.Event, uint64, error)
}

func newServer(t *testing.T, cfg config) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(cfg.Status, cfg.Events))
	t.Cleanup(srv.Close)
	return srv
}
