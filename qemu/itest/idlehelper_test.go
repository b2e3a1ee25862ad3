package itest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHelperIdleConns is not a test of its own: TestTCPSynFlood runs the
// test binary inside its namespace with IDLE_TARGET set, and this opens
// IDLE_COUNT TCP connections to the target, prints "result: open=N" once
// they are open, holds them until its standard input ends, then closes
// them all. Each sends one byte every 4 minutes (never read back), so that the
// echo app's idle timeout (5 minutes) does not close it while the rest
// are opened.
func TestHelperIdleConns(t *testing.T) {
	target := os.Getenv("IDLE_TARGET")
	if target == "" {
		return // run only as the helper
	}
	n, _ := strconv.Atoi(os.Getenv("IDLE_COUNT"))
	conns := make(chan net.Conn, n)
	done := make(chan struct{})
	defer close(done)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	for range 32 { // dials in flight at once: a few at a time, not a flood
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				c, err := dialRetrying(target, 5*time.Minute)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				conns <- c
				go keepAlive(c, done)
			}
		}()
	}
	wg.Wait()
	close(conns)
	open := len(conns)
	fmt.Printf("result: open=%d err=%v\n", open, firstErr)
	io.Copy(io.Discard, os.Stdin)
	for c := range conns {
		c.Close()
	}
}

// keepAlive writes a byte on c every 4 minutes until done.
func keepAlive(c net.Conn, done chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-time.After(4 * time.Minute):
			c.Write([]byte{0})
		}
	}
}

// dialRetrying dials target until it succeeds or d has passed: a SYN the
// busy appliance dropped is retried.
func dialRetrying(target string, d time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", target, 10*time.Second)
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// idleConns runs TestHelperIdleConns in n's namespace: count connections
// to target held open until the returned function is called (which closes
// them and waits for the helper to end).
func idleConns(t *testing.T, n *netns, target string, count int) (release func()) {
	t.Helper()
	self, _ := os.Executable()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, self, "-test.run=^TestHelperIdleConns$", "-test.v")
	cmd.Env = append(os.Environ(), "IDLE_TARGET="+target, "IDLE_COUNT="+strconv.Itoa(count))
	stdin, stdout := startPiped(t, cmd)
	release = func() {
		stdin.Close()
		cmd.Wait()
		cancel()
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "result:") {
			continue
		}
		go io.Copy(io.Discard, stdout)
		if want := fmt.Sprintf("result: open=%d err=<nil>", count); line != want {
			release()
			t.Fatalf("idle connections helper: %q, want %q", line, want)
		}
		return release
	}
	release()
	t.Fatalf("idle connections helper ended without a result")
	return nil
}
