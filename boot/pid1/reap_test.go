package pid1

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"
)

type ownerFunc func(pid int) bool

func (f ownerFunc) Owns(pid int) bool { return f(pid) }

// An orphan (a zombie child nobody waits for) is reaped; a child the
// supervisor owns is left for its own Wait, however long it lingers.
func TestReapOrphans(t *testing.T) {
	orphan := exec.Command("true")
	owned := exec.Command("true")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	if err := owned.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		z := zombieChildren()
		if slices.Contains(z, orphan.Process.Pid) && slices.Contains(z, owned.Process.Pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombieChildren() = %v, want both exited children %d and %d", z, orphan.Process.Pid, owned.Process.Pid)
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		reapOrphans(ctx, ownerFunc(func(pid int) bool { return pid == owned.Process.Pid }), 10*time.Millisecond)
		close(done)
	}()
	for slices.Contains(zombieChildren(), orphan.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d still a zombie after 5s", orphan.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // ten more scans
	cancel()
	<-done
	if err := owned.Wait(); err != nil {
		t.Errorf("Wait on the owned child = %v, want its exit status (the reaper must not steal it)", err)
	}
}
