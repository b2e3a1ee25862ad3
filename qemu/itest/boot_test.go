package itest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"keepnet/apps/splitmix"
)

// Boot with user networking (as `make run` does), read the status, kill the
// store and watch the supervisor bring it back, fetch the status page through
// the forwarded port, power off.
func TestBootStatusKillDown(t *testing.T) {
	requireITest(t, false)
	port := freePort(t)
	a := boot(t, "", "--net", "user", "--fwd", fmt.Sprintf("tcp:%d:80", port), "--stack", "linux")
	// How long is BenchmarkBootToReady's figure; keepnet up must say.
	t.Logf("boot to ready: %v", a.ready)
	if a.ready <= 0 {
		t.Errorf("keepnet up reported no boot-to-ready time")
	}

	st := a.status()
	if !st.Ready || st.Stack != "linux" {
		t.Errorf("status = ready %v stack %q, want ready on the linux stack", st.Ready, st.Stack)
	}
	for _, name := range []string{"store", "httpd", "echo", "resolver"} {
		c, ok := st.Component(name)
		if !ok || c.State != "running" || c.PID <= 1 || c.Generation != 1 || c.Restarts != 0 {
			t.Errorf("component %s = %+v (found %v), want running, generation 1, no restarts", name, c, ok)
		}
	}

	back, c, err := a.storeBack()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store running again after %v: %+v", back.Round(time.Millisecond), c)
	if c.Generation != 2 || !strings.Contains(c.LastExit, "killed") {
		t.Errorf("restarted store = %+v, want generation 2 and last exit 'killed'", c)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The status page and its JSON through QEMU's port forward.
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/status.json", port))
	if err != nil {
		t.Fatalf("GET /status.json through the forwarded port: %v", err)
	}
	var page struct {
		Stack      string `json:"stack"`
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || page.Stack != "linux" || len(page.Components) != 4 {
		t.Errorf("/status.json = %+v (%v), want the linux stack's 4 components", page, err)
	}
	resp, err = client.Get(fmt.Sprintf("http://127.0.0.1:%d/bytes?n=100000&seed=7", port))
	if err != nil {
		t.Fatalf("GET /bytes: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, _ := io.ReadAll(io.LimitReader(splitmix.New(7), 100000))
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Errorf("GET /bytes?n=100000&seed=7 returned %d bytes not matching the splitmix64 stream", len(got))
	}

	start := time.Now()
	if out, err := keepnet(ctx, "", "down", "--ctl", a.ctl); err != nil || !strings.Contains(out, "powered off") {
		t.Fatalf("keepnet down: %v\n%s", err, out)
	}
	t.Logf("powered off in %v", time.Since(start).Round(time.Millisecond))
	if out, err := keepnet(ctx, "", "status", "--ctl", a.ctl); err == nil {
		t.Errorf("keepnet status after down succeeded: %s", out)
	}
}

// The Linux baseline stack on a tap device in a namespace: curl downloads
// 10 MB and checks its hash, and uploads 4 MiB to /sink.
func TestLinuxStackHTTP(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "linux")...)
	if st := a.status(); !st.Ready || st.Stack != "linux" {
		t.Fatalf("status = %+v, want ready on the linux stack", st)
	}
	down, up := httpTransfer(t, n, 10_000_000, 4<<20)
	t.Logf("linux stack: download %.0f Mbit/s, upload %.0f Mbit/s", down, up)
}

// `make run`'s configuration: the default (keepnet) stack behind QEMU's user
// networking, the status page through the forwarded port.
func TestBootKeepnetUserNet(t *testing.T) {
	requireITest(t, false)
	port := freePort(t)
	a := boot(t, "", "--net", "user", "--fwd", fmt.Sprintf("tcp:%d:80", port))
	t.Logf("keepnet stack: boot to ready %v", a.ready) // BenchmarkBootToReady's figure
	if a.ready <= 0 {
		t.Errorf("keepnet up reported no boot-to-ready time")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var page struct {
		Ready bool   `json:"ready"`
		Stack string `json:"stack"`
	}
	var err error
	// slirp's forwarded port may take a moment.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		var resp *http.Response
		if resp, err = client.Get(fmt.Sprintf("http://127.0.0.1:%d/status.json", port)); err == nil {
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		time.Sleep(time.Second)
	}
	if err != nil || !page.Ready || page.Stack != "keepnet" {
		t.Errorf("/status.json through the forwarded port = %+v, %v; want ready on the keepnet stack", page, err)
	}
}
