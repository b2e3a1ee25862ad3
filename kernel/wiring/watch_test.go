package wiring

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// watched is a Watcher on one end of a pair, and init's end.
func watched(t *testing.T, hooks ...Hook) (initEnd *Conn, w *Watcher) {
	t.Helper()
	initEnd, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromFile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	w, err = Watch(c, hooks...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		w.Close()
		initEnd.Close()
	})
	return initEnd, w
}

// awaitFd waits until the watcher's Fd says something came.
func awaitFd(t *testing.T, w *Watcher) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var b [8]byte
		if n, _ := unix.Read(w.Fd(), b[:]); n == 8 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher's Fd never became readable")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPongOnlyFromAlive: a ping is answered by the loop's Alive, with the
// ping's Seq, and not before: a loop that does not run does not answer.
func TestPongOnlyFromAlive(t *testing.T) {
	initEnd, w := watched(t)
	if err := initEnd.Send(Message{Type: TypePing, Seq: 7}); err != nil {
		t.Fatal(err)
	}
	awaitFd(t, w)
	if m, _, err := initEnd.Recv(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("before Alive, init received %+v, %v; want nothing", m, err)
	}
	w.Alive()
	m, _, err := initEnd.Recv(10 * time.Second)
	if err != nil || m.Type != TypePong || m.Seq != 7 {
		t.Fatalf("after Alive, init received %+v, %v; want pong 7", m, err)
	}
	w.Alive() // nothing new: no second pong
	if m, _, err := initEnd.Recv(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("a second Alive sent %+v, %v; want nothing", m, err)
	}
}

// TestHooksOnlyWhenEnabled: a hook runs in Alive's caller when
// EnvTestHooks is set, and is ignored otherwise.
func TestHooksOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		if enabled {
			t.Setenv(EnvTestHooks, "1")
		}
		ran := false
		initEnd, w := watched(t, Hook{Name: "mark", Run: func() { ran = true }})
		initEnd.Send(Message{Type: TypeHook, Name: "mark"})
		initEnd.Send(Message{Type: TypePing, Seq: 1}) // ordered after the hook
		awaitFd(t, w)
		for w.ping.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		w.Alive()
		if ran != enabled {
			t.Errorf("with test hooks enabled=%v the hook ran=%v", enabled, ran)
		}
	}
}

// TestArmFault: an Arm message arms the site in the reading goroutine, loop
// or no loop; a build without fault sites (ArmFault nil) ignores it.
func TestArmFault(t *testing.T) {
	armed := make(chan FaultArm, 1)
	ArmFault = func(a FaultArm) { armed <- a }
	defer func() { ArmFault = nil }()
	initEnd, _ := watched(t)
	want := FaultArm{Site: 42, After: 3, Prob: 0.5, Seed: 9}
	if err := initEnd.Send(Message{Type: TypeArm, Fault: &want}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-armed:
		if got != want {
			t.Errorf("armed %+v, want %+v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Arm never reached ArmFault (no loop runs: the reader must arm)")
	}

	ArmFault = nil
	armFault(&want) // logs and returns
	armFault(nil)
}
