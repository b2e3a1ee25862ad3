package loop

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/kernel/channel"
	"keepnet/kernel/exitcode"
	"keepnet/kernel/wiring"
)

// localPair is an in-process channel, closed at the test's end.
func localPair(t *testing.T) (a, b *channel.Endpoint) {
	t.Helper()
	a, b, err := channel.NewLocal(16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// fakeProcess counts what the loop asks of it.
type fakeProcess struct {
	attached []string
	polls    atomic.Int64
	busy     int // polls to report busy
	wake     time.Duration
	port     *channel.Endpoint
}

func (f *fakeProcess) Attach(p *wiring.Peer) { f.attached = append(f.attached, p.Name) }

func (f *fakeProcess) Poll() (bool, time.Time) {
	f.polls.Add(1)
	if f.busy > 0 {
		f.busy--
		return true, time.Time{}
	}
	if f.wake > 0 {
		return false, time.Now().Add(f.wake)
	}
	return false, time.Time{}
}

func (f *fakeProcess) AppendPorts(dst []*channel.Endpoint) []*channel.Endpoint {
	if f.port != nil {
		dst = append(dst, f.port)
	}
	return dst
}

// runPolls runs the loop over p until it has polled n times (polls
// counts them; five seconds at most), then ends it, which must return nil.
func runPolls(t *testing.T, peers Peers, p Process, polls *atomic.Int64, n int64, o Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, peers, p, o) }()
	deadline := time.Now().Add(5 * time.Second)
	for polls.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v after ctx ended, want nil", err)
	}
}

func TestRunAttachesPublishesAndEnds(t *testing.T) {
	_, b := localPair(t)
	peers := make(chan *wiring.Peer, 2)
	peers <- &wiring.Peer{Name: "ip"}
	peers <- &wiring.Peer{Name: "syscall"}
	f := &fakeProcess{busy: 3, port: b}
	published := 0
	runPolls(t, Peers{C: peers, Fd: -1}, f, &f.polls, 10, Options{Publish: func() { published++ }, PublishEvery: time.Hour})
	if len(f.attached) != 2 || f.attached[0] != "ip" || f.attached[1] != "syscall" {
		t.Errorf("attached %v, want [ip syscall] in order", f.attached)
	}
	if published != 1 {
		t.Errorf("published %d times in the first hour, want once (at once)", published)
	}
}

// A round that wakes a sleeping neighbour yields to it once
// (channel.Handoff); rounds that wake nobody do not.
func TestRunHandsOffToTheWoken(t *testing.T) {
	a, b := localPair(t)
	f := &sendingProcess{fakeProcess: fakeProcess{port: b}, peer: a, sends: 3}
	before := channel.Handoffs()
	runPolls(t, Peers{C: make(chan *wiring.Peer), Fd: -1}, f, &f.polls, 20, Options{})
	if got := channel.Handoffs() - before; got != 3 {
		t.Errorf("%d hand-offs for 3 rounds that woke the peer (and %d that did not), want 3", got, f.polls.Load()-3)
	}
}

// sendingProcess sends one message a round to a peer that sleeps (armed)
// for its first sends rounds.
type sendingProcess struct {
	fakeProcess
	peer  *channel.Endpoint
	sends int
}

func (s *sendingProcess) Poll() (bool, time.Time) {
	s.fakeProcess.Poll()
	var in [4]channel.Msg
	for s.peer.Recv(in[:]) > 0 {
	}
	if s.sends > 0 {
		s.sends--
		s.peer.Arm() // the peer announces it sleeps
		s.port.Send(channel.Msg{ID: 1})
		s.peer.Disarm()
		return true, time.Time{}
	}
	return false, time.Time{}
}

func TestRunEndsWhenTheWiringCloses(t *testing.T) {
	peers := make(chan *wiring.Peer)
	close(peers)
	err := Run(context.Background(), Peers{C: peers, Fd: -1}, &fakeProcess{}, Options{})
	if !errors.Is(err, ErrWiringClosed) {
		t.Errorf("Run() = %v, want ErrWiringClosed", err)
	}
}

// TestSleepWakesForAMessage: a process asleep on a port gets the message
// sent to it (with no descriptors, Sleep looks again every millisecond).
func TestSleepWakesForAMessage(t *testing.T) {
	a, b := localPair(t)
	go func() {
		time.Sleep(10 * time.Millisecond)
		a.Send(channel.Msg{ID: 1})
	}()
	start := time.Now()
	for b.Recv(make([]channel.Msg, 1)) == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("no message within 5s")
		}
		Sleep([]*channel.Endpoint{b}, Peers{Fd: -1}, time.Hour)
	}
}

// A neighbour that scribbles over the channel's shared memory breaks it: the
// loop ends with the error, which the process turns into its exit status,
// instead of polling a channel nothing will ever come from again.
func TestRunEndsOnABrokenChannel(t *testing.T) {
	pair, err := channel.New(16)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	ep, err := pair.Open(channel.B)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	st, err := pair.Mem.Stat()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(pair.Mem.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = 0xff // every index now claims 4 billion messages
	}

	f := &fakeProcess{port: ep}
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), Peers{C: make(chan *wiring.Peer), Fd: -1}, f, Options{}) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run still going 10s after its channel broke, %d polls", f.polls.Load())
	}
	if !errors.Is(err, channel.ErrCorrupt) || exitcode.Of(err) != exitcode.BrokenChannel {
		t.Errorf("Run() = %v (exit status %d), want %v (exit status %d)", err, exitcode.Of(err), channel.ErrCorrupt, exitcode.BrokenChannel)
	}
	if n := f.polls.Load(); n > 2 {
		t.Errorf("%d polls before the loop ended, want at most 2", n)
	}
}

// A server sleeps once per idle round: Sleep allocates nothing, and
// drains the wiring's fd when it woke on it.
func TestSleepAllocs(t *testing.T) {
	a, b := localPair(t)
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	drained := 0
	peers := Peers{Fd: p[0], Drain: func() { drained++; unix.Read(p[0], make([]byte, 1)) }}
	ports := []*channel.Endpoint{b}
	var in [1]channel.Msg
	allocs := testing.AllocsPerRun(100, func() {
		a.Send(channel.Msg{ID: 1})
		Sleep(ports, peers, time.Hour)
		b.Recv(in[:])
	})
	if allocs != 0 {
		t.Errorf("Sleep woken by a message: %v allocations, want 0", allocs)
	}
	unix.Write(p[1], []byte{1})
	if err := Sleep(ports, peers, time.Hour); err != nil || drained != 1 {
		t.Errorf("Sleep on the readable wiring fd = %v, drained %d times; want nil, 1", err, drained)
	}
}
