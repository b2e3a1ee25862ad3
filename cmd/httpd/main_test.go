package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

func TestRunRejects(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantMsg  string
	}{
		{[]string{"-stack", "keepnet"}, exitNoRestart, "not started by keepnet's init"},
		{[]string{"-stack", "bsd"}, 2, `unknown stack "bsd"`},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-addr", "256.0.0.1:1"}, 1, "256.0.0.1"},
	}
	for _, tt := range tests {
		var stderr strings.Builder
		if got := run(context.Background(), tt.args, &stderr); got != tt.wantCode || !strings.Contains(stderr.String(), tt.wantMsg) {
			t.Errorf("run(%q) = %d, stderr %q; want %d, mentioning %q", tt.args, got, stderr.String(), tt.wantCode, tt.wantMsg)
		}
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunServesStatus wires the main end to end: a fake init on the ctl
// socket, /status.json over HTTP, and a clean exit on cancel.
func TestRunServesStatus(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	ctlL, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ctlL.Close()
	go func() {
		for {
			c, err := ctlL.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadBytes('\n')
			req, _ := ctl.ParseRequest(line)
			json.NewEncoder(c).Encode(ctl.Response{ID: req.ID, OK: true, Status: &ctl.Status{
				Ready: true, Components: []ctl.Component{{Name: "httpd", PID: 7, State: "running"}},
			}})
			c.Close()
		}
	}()

	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"-addr", addr, "-ctl", sock}, io.Discard) }()

	var resp *http.Response
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		resp, err = http.Get("http://" + addr + "/status.json")
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("GET /status.json: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"httpd"`) {
		t.Errorf("GET /status.json = %d %s, want 200 with component httpd", resp.StatusCode, body)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("run after cancel = %d, want 0", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
