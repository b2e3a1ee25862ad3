package httpd

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// TestLivePageInBrowser opens the page in headless chromium, if the host
// has it, and checks that live.js drew the live view: the updates
// counter, every component, the NIC's address and rate, the timeline.
func TestLivePageInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium")
	}
	var rx atomic.Uint64
	j := journal.New(nil)
	j.Add(journal.Event{Component: "tcp", Kind: journal.Restart, Generation: 2, Reason: "signal: killed"})
	j.Log("tcp", []byte("generation 2: 3 sockets restored"))
	srv := httptest.NewServer(New(Config{Stack: "keepnet", SampleEvery: 50 * time.Millisecond,
		Status: func(context.Context) (*ctl.Status, error) {
			return liveStatus(rx.Add(123456), 0, 100, 40), nil
		},
		Events: func(_ context.Context, since uint64) ([]journal.Event, uint64, error) {
			e, next := j.Events(since, ctl.ReplyBudget)
			return e, next, nil
		},
		Logs: func(_ context.Context, name string, since uint64) ([]journal.Line, uint64, error) {
			ls, next := j.Lines(name, since, ctl.ReplyBudget)
			return ls, next, nil
		},
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The first request starts the sampler: a few samples, and rates.
	do(t, "GET", srv.URL+"/live.json", nil)
	time.Sleep(300 * time.Millisecond)
	out, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--virtual-time-budget=6000", "--dump-dom", srv.URL+"/").Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	for _, want := range []string{
		`data-updates="`, `data-component="e1000.0"`, `data-component="ip"`, `data-component="tcp"`,
		`<strong class="addr">10.0.2.15/24</strong>`, `<li data-kind="restart" data-component="tcp">`,
		`tcp: generation 2: 3 sockets restored`, `class="marker" data-kind="restart"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page in chromium lacks %q", want)
		}
	}
	if !regexp.MustCompile(`class="rx" data-bps="[1-9]`).MatchString(dom) {
		t.Errorf("the page in chromium shows no receive rate")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
