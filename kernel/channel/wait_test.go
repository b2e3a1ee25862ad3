package channel

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWaitAny(t *testing.T) {
	pair, err := New(64)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	a, err := pair.Open(A)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pair.Open(B)
	if err != nil {
		t.Fatal(err)
	}
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	start := time.Now()
	if r := WaitAny([]*Endpoint{b}, []int{p[0]}, 50*time.Millisecond); r[0] {
		t.Error("WaitAny on a silent pipe reported it readable")
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("WaitAny with nothing to do returned after %v, want about 50ms", d)
	}

	// A message wakes it long before its timeout (an hour: only a hang
	// takes that long, and the test's deadline ends it first).
	go func() { time.Sleep(20 * time.Millisecond); a.Send(Msg{ID: 1}) }()
	WaitAny([]*Endpoint{b}, []int{p[0]}, time.Hour)
	var buf [4]Msg
	if n := b.Recv(buf[:]); n != 1 {
		t.Errorf("Recv after WaitAny = %d messages, want 1", n)
	}

	unix.Write(p[1], []byte{1})
	if r := WaitAny([]*Endpoint{b}, []int{p[0]}, time.Hour); !r[0] {
		t.Error("WaitAny did not report the written pipe readable")
	}
}
