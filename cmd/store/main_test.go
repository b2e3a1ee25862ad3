package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"keepnet/servers/store"
)

func TestRun(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "run", "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, socket) }()

	c := store.Dial(socket, store.WithTimeout(2*time.Second), store.WithBackoff(time.Millisecond, 10*time.Millisecond))
	defer c.Close()
	if err := c.Put(ctx, "ip", "addr", []byte("10.0.2.15")); err != nil {
		t.Fatalf("Put(ip/addr) error = %v", err)
	}
	if v, ok, err := c.Get(ctx, "ip", "addr"); err != nil || !ok || string(v) != "10.0.2.15" {
		t.Errorf("Get(ip/addr) = %q, %v, %v; want %q, true, nil", v, ok, err, "10.0.2.15")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run() = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run() did not return after its context ended")
	}
	if _, err := os.Lstat(socket); !os.IsNotExist(err) {
		t.Errorf("socket after stop: Lstat error = %v, want not-exist", err)
	}
}
