package channel

import (
	"testing"
	"time"
)

// Wake ends a Wait with no timeout, in progress or the next one, though no
// message came.
func TestWakeEndsAWait(t *testing.T) {
	a, b, err := NewLocal(8)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- a.Wait(-1) }()
	time.Sleep(10 * time.Millisecond) // most likely asleep by now; either way it must return
	if err := a.Wake(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait after Wake: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wake did not end a Wait in progress")
	}
	a.Wake()
	go func() { done <- a.Wait(-1) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a Wake before Wait was lost")
	}
	// Consumed: the next Wait sleeps until its timeout.
	if err := a.Wait(5 * time.Millisecond); err == nil {
		t.Fatal("one Wake ended two Waits")
	}
}
