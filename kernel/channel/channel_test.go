package channel

import (
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// msg is request i as the tests send it: its payload derives from its id.
func msg(id uint64) Msg {
	return Msg{ID: id, Op: 1, Flags: uint16(id), Arg: [4]uint64{id * 3, ^id, id << 7, 42}}
}

func localPair(t *testing.T, slots int) (a, b *Endpoint) {
	t.Helper()
	a, b, err := NewLocal(slots)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func sharedPair(t *testing.T, slots int) (a, b *Endpoint) {
	t.Helper()
	p, err := New(slots)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, err = p.Open(A)
	if err != nil {
		t.Fatal(err)
	}
	b, err = p.Open(B)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Both kinds of channel run the same ring code; the ring tests run on both.
var pairs = []struct {
	name string
	make func(*testing.T, int) (*Endpoint, *Endpoint)
}{
	{"local", localPair},
	{"shared", sharedPair},
}

// TestWrapAround pushes many messages in random batch sizes (fixed seed)
// through a small ring, so the indices wrap the ring thousands of times.
func TestWrapAround(t *testing.T) {
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			a, b := pc.make(t, 8)
			rng := rand.New(rand.NewPCG(1, 2))
			const total = 100_000
			out, in := make([]Msg, 11), make([]Msg, 11)
			var next, want uint64 = 1, 1
			for want <= total {
				k := rng.IntN(len(out)) + 1
				for i := range out[:k] {
					out[i] = msg(next + uint64(i))
				}
				next += uint64(a.Send(out[:k]...))
				n := b.Recv(in[:rng.IntN(len(in))+1])
				for _, m := range in[:n] {
					if m != msg(want) {
						t.Fatalf("received %+v, want %+v", m, msg(want))
					}
					want++
				}
			}
			if s := a.Stats(); s.Sent < total || s.Wakeups != 0 {
				t.Errorf("sender Stats = %+v, want Sent >= %d, no wake-ups", s, total)
			}
		})
	}
}

func TestFullRingAndBatchDrain(t *testing.T) {
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			a, b := pc.make(t, 8)
			batch := make([]Msg, 20)
			for i := range batch {
				batch[i] = msg(uint64(i + 1))
			}
			buf := make([]Msg, 32)
			steps := []struct {
				op   string // "send k" sends batch[sent:sent+k], "recv k" receives into buf[:k]
				k    int
				want int
			}{
				{"send", 10, 8}, // the ring holds 8
				{"send", 2, 0},  // full
				{"recv", 3, 3},
				{"send", 2, 2},
				{"send", 1, 1},
				{"send", 1, 0},
				{"recv", 32, 8}, // drains all that is there, in one batch
				{"recv", 32, 0},
			}
			sent, got := 0, []Msg{}
			for i, s := range steps {
				var n int
				if s.op == "send" {
					n = a.Send(batch[sent:min(sent+s.k, len(batch))]...)
					sent += n
				} else {
					n = b.Recv(buf[:s.k])
					got = append(got, buf[:n]...)
				}
				if n != s.want {
					t.Fatalf("step %d: %s %d = %d, want %d", i, s.op, s.k, n, s.want)
				}
			}
			for i, m := range got {
				if m != batch[i] {
					t.Errorf("message %d = %+v, want %+v", i, m, batch[i])
				}
			}
		})
	}
}

// TestWakeOnlyWhenSleeping counts eventfd writes: none while the receiver
// is busy, one per sleep however many batches follow.
func TestWakeOnlyWhenSleeping(t *testing.T) {
	a, b := sharedPair(t, 64)
	for i := range 10 {
		a.Send(msg(uint64(i)))
	}
	if w := a.Stats().Wakeups; w != 0 {
		t.Fatalf("wake-ups with a busy receiver = %d, want 0", w)
	}
	buf := make([]Msg, 64)
	if n := b.Recv(buf); n != 10 {
		t.Fatalf("Recv = %d, want 10", n)
	}
	if ready, err := b.Arm(); ready || err != nil {
		t.Fatalf("Arm on an empty ring = %v, %v; want false, nil", ready, err)
	}
	if readable(t, b.Fd()) {
		t.Fatal("eventfd readable before any send")
	}
	for i := range 5 {
		a.Send(msg(uint64(i)), msg(uint64(i)))
	}
	if w := a.Stats().Wakeups; w != 1 {
		t.Fatalf("wake-ups for one sleep and five batches = %d, want 1", w)
	}
	if !readable(t, b.Fd()) {
		t.Fatal("eventfd not readable after the wake-up")
	}
	b.Disarm()
	if readable(t, b.Fd()) {
		t.Fatal("eventfd still readable after Disarm")
	}
	if n := b.Recv(buf); n != 10 {
		t.Fatalf("Recv = %d, want 10", n)
	}
	a.Send(msg(1))
	if w := a.Stats().Wakeups; w != 1 {
		t.Fatalf("wake-ups after Disarm = %d, want still 1", w)
	}
	// Arm with a message already there: no sleep, no wake-up owed.
	if ready, err := b.Arm(); !ready || err != nil {
		t.Fatalf("Arm with a message waiting = %v, %v; want true, nil", ready, err)
	}
	a.Send(msg(2))
	if w := a.Stats().Wakeups; w != 1 {
		t.Fatalf("wake-ups after a refused Arm = %d, want still 1", w)
	}
}

func readable(t *testing.T, fd int) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestWait(t *testing.T) {
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			a, b := pc.make(t, 8)
			start := time.Now()
			if err := b.Wait(20 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Wait on an empty ring = %v, want %v", err, os.ErrDeadlineExceeded)
			}
			if d := time.Since(start); d < 20*time.Millisecond {
				t.Errorf("Wait timed out after %v, want >= 20ms", d)
			}
			// A sender that comes late wakes the sleeper.
			go func() {
				time.Sleep(10 * time.Millisecond)
				a.Send(msg(7))
			}()
			if err := b.Wait(10 * time.Second); err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
			buf := make([]Msg, 1)
			if n := b.Recv(buf); n != 1 || buf[0] != msg(7) {
				t.Fatalf("Recv = %d %+v, want 1 %+v", n, buf[0], msg(7))
			}
			if s := b.Stats(); s.Sleeps != 2 {
				t.Errorf("receiver Sleeps = %d, want 2 (the timeout, then the wake-up)", s.Sleeps)
			}
		})
	}
}

// TestPingPong bounces single messages between two goroutines, so that each
// side sleeps and is woken many times: a lost wake-up would hang it.
func TestPingPong(t *testing.T) {
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			a, b := pc.make(t, 4)
			const rounds = 20_000
			done := make(chan error, 1)
			go func() {
				buf := make([]Msg, 1)
				for range rounds {
					if err := b.Wait(10 * time.Second); err != nil {
						done <- err
						return
					}
					b.Recv(buf)
					buf[0].Status = 1
					b.Send(buf[0])
				}
				done <- nil
			}()
			buf := make([]Msg, 1)
			for i := range uint64(rounds) {
				a.Send(msg(i))
				if err := a.Wait(10 * time.Second); err != nil {
					t.Fatalf("round %d: Wait = %v", i, err)
				}
				if n := a.Recv(buf); n != 1 || buf[0].ID != i || buf[0].Status != 1 {
					t.Fatalf("round %d: Recv = %d %+v", i, n, buf[0])
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCorruptIndex(t *testing.T) {
	a, b := localPair(t, 8)
	a.Send(msg(1))
	a.tx.storeProd(1000) // the peer claims 1000 messages in an 8-slot ring
	if n := b.Recv(make([]Msg, 4)); n != 0 {
		t.Errorf("Recv on a corrupt ring = %d, want 0", n)
	}
	if err := b.Wait(0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Wait on a corrupt ring = %v, want %v", err, ErrCorrupt)
	}
	a2, _ := localPair(t, 8) // and a receiver that claims to have read unsent slots
	a2.tx.storeCons(500)
	for range 9 {
		a2.Send(msg(1))
	}
	if !errors.Is(a2.Err(), ErrCorrupt) {
		t.Errorf("sender Err = %v, want %v", a2.Err(), ErrCorrupt)
	}
}

func TestClosed(t *testing.T) {
	a, _ := sharedPair(t, 8)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := a.Send(msg(1)); n != 0 {
		t.Errorf("Send after Close = %d, want 0", n)
	}
	if err := a.Wait(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close = %v, want %v", err, ErrClosed)
	}
}

func TestOpenRejects(t *testing.T) {
	p, err := New(8)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	memfd := func(size int, seal bool, header func([]byte)) *os.File {
		fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "test")
		t.Cleanup(func() { f.Close() })
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			t.Fatal(err)
		}
		if header != nil {
			b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				t.Fatal(err)
			}
			header(b)
			unix.Munmap(b)
		}
		if seal {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	tmp, err := os.Create(t.TempDir() + "/region")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	size := regionSize(8)
	tests := []struct {
		name            string
		mem, wait, wake *os.File
	}{
		{"regular file", tmp, p.WakeA, p.WakeB},
		{"unsealed memfd", memfd(size, false, func(b []byte) { writeRegionHeader(b, 8) }), p.WakeA, p.WakeB},
		{"zero header", memfd(size, true, nil), p.WakeA, p.WakeB},
		{"empty", memfd(0, true, nil), p.WakeA, p.WakeB},
		{"wrong version", memfd(size, true, func(b []byte) { writeRegionHeader(b, 8); b[8] = 9 }), p.WakeA, p.WakeB},
		{"slots not a power of two", memfd(size, true, func(b []byte) { writeRegionHeader(b, 8); b[12] = 7 }), p.WakeA, p.WakeB},
		{"header slots disagree with size", memfd(size, true, func(b []byte) { writeRegionHeader(b, 8); b[12] = 64 }), p.WakeA, p.WakeB},
		{"pipe as wait eventfd", p.Mem, pr, p.WakeB},
		{"memfd as wake eventfd", p.Mem, p.WakeA, p.Mem},
	}
	for _, tc := range tests {
		e, err := Open(tc.mem, tc.wait, tc.wake, A)
		if !errors.Is(err, ErrBadRegion) {
			t.Errorf("%s: Open = %v, want %v", tc.name, err, ErrBadRegion)
		}
		if e != nil {
			e.Close()
		}
	}
	e, err := Open(p.Mem, p.WakeA, p.WakeB, A)
	if err != nil {
		t.Fatalf("Open of a good channel = %v", err)
	}
	e.Close()
}

// takeN is a Port whose ring has room for n messages a round.
type takeN struct {
	Port
	n   int
	got []uint64
}

func (p *takeN) Send(msgs ...Msg) int {
	k := min(p.n, len(msgs))
	for _, m := range msgs[:k] {
		p.got = append(p.got, m.ID)
	}
	return k
}

// Flush sends what fits, keeps the rest in order at the front of the
// queue's array, and a queue refilled and drained round after round never
// grows a new array.
func TestFlush(t *testing.T) {
	p := &takeN{n: 2}
	q := make([]Msg, 0, 8)
	for id := range uint64(5) {
		q = append(q, Msg{ID: id + 1})
	}
	first := &q[:1][0]
	q, sent := Flush(p, q)
	if sent != 2 || len(q) != 3 || q[0].ID != 3 || q[2].ID != 5 || &q[:1][0] != first {
		t.Fatalf("Flush of 5 to a port taking 2 = %d sent, rest %v (same array %v); want 2, ids 3..5 in the same array", sent, q, &q[:1][0] == first)
	}
	p.n = 8
	if q, sent = Flush(p, q); sent != 3 || len(q) != 0 || cap(q) != 8 {
		t.Fatalf("Flush of the rest = %d sent, %d left, cap %d; want 3, 0, 8", sent, len(q), cap(q))
	}
	if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(p.got, want) {
		t.Errorf("port got ids %v, want %v", p.got, want)
	}
	p.n, p.got = 3, make([]uint64, 0, 1<<16)
	allocs := testing.AllocsPerRun(1000, func() {
		for range 5 {
			q = append(q, Msg{})
		}
		for len(q) > 0 {
			q, _ = Flush(p, q)
		}
	})
	if allocs != 0 {
		t.Errorf("refilling and draining a queue: %v allocations a round, want 0", allocs)
	}
}
