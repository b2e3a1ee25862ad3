package channel

import (
	"errors"
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

	r := make([]bool, 1)
	start := time.Now()
	if err := WaitAny(r, []*Endpoint{b}, []int{p[0]}, 50*time.Millisecond); r[0] || err != nil {
		t.Errorf("WaitAny on a silent pipe = %v, %v; want it not readable", r, err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("WaitAny with nothing to do returned after %v, want about 50ms", d)
	}

	// A message wakes it long before its timeout (an hour: only a hang
	// takes that long, and the test's deadline ends it first).
	go func() { time.Sleep(20 * time.Millisecond); a.Send(Msg{ID: 1}) }()
	WaitAny(r, []*Endpoint{b}, []int{p[0]}, time.Hour)
	var buf [4]Msg
	if n := b.Recv(buf[:]); n != 1 {
		t.Errorf("Recv after WaitAny = %d messages, want 1", n)
	}

	unix.Write(p[1], []byte{1})
	if WaitAny(r, []*Endpoint{b}, []int{p[0]}, time.Hour); !r[0] {
		t.Error("WaitAny did not report the written pipe readable")
	}
}

// A corrupted ring index breaks the channel for good: WaitAny reports the
// error, every time, instead of returning as if a message were waiting (a
// loop around it used to spin, about 400,000 returns in 200 ms, while Send
// returned 0 forever).
func TestWaitAnyOnACorruptRing(t *testing.T) {
	a, b := sharedPair(t, 8)
	a.Send(msg(1))
	a.tx.storeProd(1000) // the peer claims 1000 messages in an 8-slot ring
	// A server loop: sleep until something happens, stop on an error.
	returns := 0
	var err error
	for deadline := time.Now().Add(200 * time.Millisecond); err == nil && time.Now().Before(deadline); {
		err = WaitAny(nil, []*Endpoint{b}, nil, 50*time.Millisecond)
		returns++
	}
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrBroken) || returns != 1 {
		t.Fatalf("WaitAny on a corrupt ring: %d returns in 200ms, the last with %v; want 1, with %v (an ErrBroken)", returns, err, ErrCorrupt)
	}
	if err := WaitAny(nil, []*Endpoint{b}, nil, time.Hour); !errors.Is(err, ErrCorrupt) {
		t.Errorf("WaitAny on the corrupt ring again = %v, want %v: it stays broken", err, ErrCorrupt)
	}
	if ready, err := b.Arm(); ready || !errors.Is(err, ErrCorrupt) {
		t.Errorf("Arm on a corrupt ring = %v, %v; want false, %v", ready, err, ErrCorrupt)
	}
	if n := b.Recv(make([]Msg, 4)); n != 0 {
		t.Errorf("Recv on a corrupt ring = %d, want 0", n)
	}
}

// A user that finds the peer broke the protocol breaks the Endpoint: the
// next wait reports it.
func TestBreak(t *testing.T) {
	_, b := sharedPair(t, 8)
	b.Break("a reply to request 99, never made")
	if err := WaitAny(nil, []*Endpoint{b}, nil, time.Hour); !errors.Is(err, ErrProtocol) || !errors.Is(err, ErrBroken) {
		t.Errorf("WaitAny after Break = %v, want %v", err, ErrProtocol)
	}
	if err := b.Wait(time.Hour); !errors.Is(err, ErrProtocol) {
		t.Errorf("Wait after Break = %v, want %v", err, ErrProtocol)
	}
}

// A sleep allocates nothing, whether a message ends it or its timeout,
// and reports afresh in the caller's array: a silent fd is not readable,
// whatever the array held.
func TestWaitAnyAllocs(t *testing.T) {
	pair, err := New(64)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	a, _ := pair.Open(A)
	b, _ := pair.Open(B)
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	ports, fds := []*Endpoint{b}, []int{p[0]}
	var r [1]bool
	var in [1]Msg
	woken := testing.AllocsPerRun(100, func() {
		a.Send(Msg{ID: 1})
		r[0] = true
		WaitAny(r[:], ports, fds, time.Hour)
		b.Recv(in[:])
	})
	if r[0] {
		t.Error("WaitAny left a silent fd reported readable")
	}
	timedOut := testing.AllocsPerRun(5, func() { WaitAny(r[:], ports, fds, time.Millisecond) })
	if woken != 0 || timedOut != 0 {
		t.Errorf("WaitAny: %v allocations woken by a message, %v timed out; want 0", woken, timedOut)
	}
}

// The wake-up that ends a sleep is read by the next sleep, not on waking
// (the loop moves the messages first), and that next sleep lasts its
// timeout: the unread wake-up does not end it.
func TestWaitAnyReadsTheWakeUpLater(t *testing.T) {
	a, b := sharedPair(t, 64)
	signalled := func() bool {
		fds := []unix.PollFd{{Fd: int32(b.Fd()), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		return n == 1
	}
	go func() { time.Sleep(20 * time.Millisecond); a.Send(Msg{ID: 1}) }()
	if err := WaitAny(nil, []*Endpoint{b}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if !signalled() {
		t.Error("the wake-up was read on waking, want it left for the next sleep")
	}
	var buf [4]Msg
	if n := b.Recv(buf[:]); n != 1 {
		t.Fatalf("Recv after the wake-up = %d messages, want 1", n)
	}
	start := time.Now()
	if err := WaitAny(nil, []*Endpoint{b}, nil, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("the next sleep ended after %v, want about 50ms: the old wake-up ended it", d)
	}
	if signalled() {
		t.Error("after the next sleep the old wake-up is still unread")
	}
}

// TestPatientSleep: a lazy message does not end a patient sleep, an
// ordinary one does, and both then wait in the ring; a lazy message ends
// an impatient sleep, and one already waiting makes Arm refuse to sleep,
// patient or not.
func TestPatientSleep(t *testing.T) {
	a, b := sharedPair(t, 64)
	var buf [4]Msg
	b.SetPatient(true)
	a.SendLazy(Msg{ID: 1}) // before the sleep: Arm finds it
	if err := WaitAny(nil, []*Endpoint{b}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := b.Recv(buf[:]); n != 1 {
		t.Fatalf("Recv after a sleep with a lazy message waiting = %d, want 1", n)
	}

	go func() {
		time.Sleep(20 * time.Millisecond)
		a.SendLazy(Msg{ID: 2})
		time.Sleep(100 * time.Millisecond)
		a.Send(Msg{ID: 3})
	}()
	start := time.Now()
	if err := WaitAny(nil, []*Endpoint{b}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("a patient sleep ended after %v: the lazy message (sent at 20ms) woke it, want the ordinary one (120ms)", d)
	}
	if n := b.Recv(buf[:]); n != 2 || buf[0].ID != 2 || buf[1].ID != 3 {
		t.Fatalf("Recv = %d messages %v, want the lazy one and the ordinary one", n, buf[:n])
	}
	if w := a.Wakeups(); w != 1 {
		t.Errorf("sender's wake-ups = %d, want 1 (the ordinary message)", w)
	}

	b.SetPatient(false)
	go func() { time.Sleep(20 * time.Millisecond); a.SendLazy(Msg{ID: 4}) }()
	start = time.Now()
	if err := WaitAny(nil, []*Endpoint{b}, nil, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("an impatient sleep ended after %v: the lazy message did not wake it", d)
	}
	if n := b.Recv(buf[:]); n != 1 || buf[0].ID != 4 {
		t.Fatalf("Recv = %d messages %v, want the lazy one", n, buf[:n])
	}
}

// TestFlushLazyIf: FlushLazyIf sends what fits without waking a patient
// sleeper if every message is lazy, wakes it if one is not, and falls back
// to Send on a Port with no lazy sends.
func TestFlushLazyIf(t *testing.T) {
	a, b := sharedPair(t, 4)
	b.SetPatient(true)
	if ready, err := b.Arm(); ready || err != nil {
		t.Fatalf("Arm = %v, %v", ready, err)
	}
	lazy := func(m Msg) bool { return m.Op == 1 }
	q := []Msg{{ID: 1, Op: 1}, {ID: 2, Op: 1}, {ID: 3, Op: 1}, {ID: 4, Op: 1}, {ID: 5, Op: 1}}
	rest, sent := FlushLazyIf(a, q, lazy)
	if sent != 4 || len(rest) != 1 || rest[0].ID != 5 {
		t.Fatalf("FlushLazyIf sent %d, left %v; want 4 sent, message 5 left", sent, rest)
	}
	if a.Wakeups() != 0 {
		t.Error("FlushLazyIf of lazy messages woke a patient sleeper")
	}
	var buf [4]Msg
	b.Recv(buf[:])
	if ready, err := b.Arm(); ready || err != nil {
		t.Fatalf("Arm = %v, %v", ready, err)
	}
	if _, sent := FlushLazyIf(a, []Msg{{ID: 6, Op: 1}, {ID: 7, Op: 2}}, lazy); sent != 2 || a.Wakeups() != 1 {
		t.Errorf("FlushLazyIf with one message not lazy sent %d, woke %d times; want 2 and 1", sent, a.Wakeups())
	}
	b.Disarm()

	f := &sendOnly{}
	if _, sent := FlushLazyIf(f, []Msg{{ID: 1, Op: 1}}, lazy); sent != 1 || f.sent != 1 {
		t.Errorf("FlushLazyIf on a Port without SendLazy sent %d (Send saw %d), want 1", sent, f.sent)
	}
}

// sendOnly is a Port with no SendLazy.
type sendOnly struct{ sent int }

func (s *sendOnly) Send(msgs ...Msg) int     { s.sent += len(msgs); return len(msgs) }
func (s *sendOnly) Recv([]Msg) int           { return 0 }
func (s *sendOnly) Wait(time.Duration) error { return nil }
func (s *sendOnly) Close() error             { return nil }
