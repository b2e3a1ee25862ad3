package main

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunRejects(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantMsg  string
	}{
		{[]string{"-stack", "keepnet"}, exitNoRestart, "not started by keepnet's init"},
		{[]string{"-stack", "bsd"}, 2, `unknown stack "bsd"`},
		{[]string{"-port", "70000"}, 2, "-port 70000"},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var stderr strings.Builder
		if got := run(context.Background(), tt.args, &stderr); got != tt.wantCode || !strings.Contains(stderr.String(), tt.wantMsg) {
			t.Errorf("run(%q) = %d, stderr %q; want %d, mentioning %q", tt.args, got, stderr.String(), tt.wantCode, tt.wantMsg)
		}
	}
}

// freePort returns a port free for both TCP and UDP a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

func TestRunEchoes(t *testing.T) {
	port := strconv.Itoa(freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	var stderr strings.Builder
	go func() { code <- run(ctx, []string{"-port", port}, &stderr) }()

	addr := net.JoinHostPort("127.0.0.1", port)
	var c net.Conn
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		c, err = net.Dial("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("dial tcp %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "over tcp")
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); string(got) != "over tcp" || err != nil {
		t.Errorf("tcp echo = %q, %v; want %q", got, err, "over tcp")
	}
	c.Close()

	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(u, "over udp")
	buf := make([]byte, 100)
	if n, err := u.Read(buf); string(buf[:n]) != "over udp" || err != nil {
		t.Errorf("udp echo = %q, %v; want %q", buf[:n], err, "over udp")
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("run after cancel = %d, want 0; stderr %s", c, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
