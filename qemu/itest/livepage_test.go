package itest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLivePage opens the appliance's status page in headless chromium,
// as a person would: the live view shows every component, the NIC's
// address, a transmit rate that moves while a download runs, and, after
// tcp is killed, its restart with the reason in the timeline. The last
// look is saved as a screenshot (images/out/status-page.png).
func TestLivePage(t *testing.T) {
	requireITest(t, false)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium: apt-get install chromium")
	}
	port := freePort(t)
	a := boot(t, "", "--net", "user", "--fwd", fmt.Sprintf("tcp:%d:80", port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The first look starts httpd's sampler; rates need two samples.
	dom := openPage(ctx, t, chromium, url)
	dom = openPage(ctx, t, chromium, url)
	if !strings.Contains(dom, `data-updates="`) {
		t.Fatalf("the page never drew its live view:\n%s", dom)
	}
	for _, c := range a.status().Components {
		if !strings.Contains(dom, fmt.Sprintf(`<tr data-component=%q>`, c.Name)) {
			t.Errorf("the live page has no row for %s", c.Name)
		}
	}
	if !strings.Contains(dom, `<strong class="addr">10.0.2.15/24</strong>`) {
		t.Errorf("the live page does not show e1000.0's address 10.0.2.15/24")
	}
	idle := txRate(t, dom)

	// A download, for as long as the test looks.
	dctx, stopDownload := context.WithCancel(ctx)
	defer stopDownload()
	go func() {
		req, _ := http.NewRequestWithContext(dctx, "GET", url+"bytes?n=4000000000&seed=5", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	var busy float64
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		if busy = txRate(t, openPage(ctx, t, chromium, url)); busy > 100e3 {
			break
		}
	}
	t.Logf("e1000.0 transmit rate on the page: %.0f B/s idle, %.0f B/s during the download", idle, busy)
	if busy <= 100e3 || busy == idle {
		t.Errorf("the page's transmit rate went from %.0f to %.0f B/s during a download, want it to move above 100 kB/s", idle, busy)
	}
	stopDownload()

	if out, err := keepnet(ctx, "", "kill", "tcp", "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill tcp: %v\n%s", err, out)
	}
	restart := regexp.MustCompile(`<li data-kind="restart" data-component="tcp">.*?<span class="reason">signal: killed</span>`)
	back := regexp.MustCompile(`<li data-kind="ready" data-component="tcp">.*?back in [0-9.]+ s`)
	marker := `class="marker" data-kind="restart"`
	for deadline := time.Now().Add(resumeWait); ; time.Sleep(2 * time.Second) {
		dom = openPage(ctx, t, chromium, url)
		if restart.MatchString(dom) && back.MatchString(dom) && strings.Contains(dom, marker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed tcp's restart (signal: killed) and its recovery in the timeline, and the restart on the traffic graph:\n%s", dom)
		}
	}

	shot := filepath.Join(root, "images/out/status-page.png")
	os.MkdirAll(filepath.Dir(shot), 0o755)
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--virtual-time-budget=6000", "--window-size=1100,1500", "--screenshot="+shot, url)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("chromium --screenshot: %v\n%s", err, out)
	} else {
		t.Logf("screenshot: %s", shot)
	}
}

// openPage loads url in headless chromium, lets its script run for a few
// seconds of the page's time (its fetches pause that clock), and returns
// the document as it then is.
func openPage(ctx context.Context, t *testing.T, chromium, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--virtual-time-budget=5000", "--dump-dom", url).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v", url, err)
	}
	return string(out)
}

// txRate is the transmit rate e1000.0's card shows, in bytes per second
// (-1: none yet).
func txRate(t *testing.T, dom string) float64 {
	t.Helper()
	m := regexp.MustCompile(`<div class="nic" data-nic="e1000.0">.*?<span class="tx" data-bps="([-0-9.e+]+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no transmit rate for e1000.0 on the page:\n%s", dom)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("transmit rate %q: %v", m[1], err)
	}
	return v
}
