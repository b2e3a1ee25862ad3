package relay

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

// sent is one frame leaving an Impairer: which one (its arrival index) and
// when, in the fake clock's time since t0.
type sent struct {
	id int
	at time.Duration
}

// simulate feeds frames arriving every gap (the i-th of size sizes[i%len]) to
// im and runs a fake clock from event to event: an arrival or the time Next
// reports. It returns every frame sent, a duplicate twice.
func simulate(im *Impairer[int], n int, gap time.Duration, size int) []sent {
	var out []sent
	emit := func(now time.Time) {
		for {
			f, copies, ok := im.Pop(now)
			if !ok {
				return
			}
			for range copies {
				out = append(out, sent{f, now.Sub(t0)})
			}
		}
	}
	for i := 0; i < n || im.Waiting() > 0; {
		arrive := t0.Add(time.Duration(i) * gap)
		if next, ok := im.Next(); ok && (i == n || next.Before(arrive)) {
			emit(next)
			continue
		}
		if i == n {
			break
		}
		emit(arrive)
		switch v := im.Admit(arrive, size); {
		case v.Drop:
		case v.Direct:
			for range v.Copies {
				out = append(out, sent{i, arrive.Sub(t0)})
			}
		default:
			im.Enqueue(v, i)
		}
		i++
	}
	return out
}

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

func TestImpairerReplaysFromSeed(t *testing.T) {
	c := Impairment{Drop: 0.05, Dup: 0.05, Reorder: 0.05, Delay: 3 * time.Millisecond, Jitter: 2 * time.Millisecond, Rate: 10_000_000}
	run := func(seed uint64) ([]sent, Stats) {
		im := NewImpairer[int](c, seeded(seed))
		return simulate(im, 20_000, 100*time.Microsecond, 1000), im.Counters.Snapshot()
	}
	a, sa := run(7)
	b, sb := run(7)
	if !reflect.DeepEqual(a, b) || sa != sb {
		t.Fatalf("two runs with seed 7 differ: stats %v and %v", sa, sb)
	}
	c2, _ := run(8)
	if reflect.DeepEqual(a, c2) {
		t.Errorf("seeds 7 and 8 gave the same run")
	}
}

func TestImpairerDropRate(t *testing.T) {
	const n = 100_000
	for _, p := range []float64{0, 0.01, 0.1, 0.5, 1} {
		im := NewImpairer[int](Impairment{Drop: p}, seeded(1))
		out := simulate(im, n, time.Microsecond, 64)
		st := im.Counters.Snapshot()
		// Five standard deviations of a binomial: fails by chance ~1 in 10⁶.
		tol := 5 * math.Sqrt(p*(1-p)/n)
		if got := float64(st.Dropped) / n; math.Abs(got-p) > tol {
			t.Errorf("drop %v: dropped %d of %d = %.4f, want %v ± %.4f", p, st.Dropped, n, got, p, tol)
		}
		if st.In != n || st.Out != uint64(len(out)) || st.Out+st.Dropped != n {
			t.Errorf("drop %v: stats %v, %d sent, want in=%d out+dropped=in", p, st, len(out), n)
		}
		if !slices.IsSortedFunc(out, func(a, b sent) int { return a.id - b.id }) {
			t.Errorf("drop %v: frames out of order", p)
		}
	}
}

func TestImpairerDuplicates(t *testing.T) {
	const n = 100_000
	im := NewImpairer[int](Impairment{Dup: 0.2}, seeded(2))
	out := simulate(im, n, time.Microsecond, 64)
	st := im.Counters.Snapshot()
	if got := float64(st.Duplicated) / n; math.Abs(got-0.2) > 0.01 {
		t.Errorf("duplicated %d of %d = %.4f, want 0.2 ± 0.01", st.Duplicated, n, got)
	}
	if uint64(len(out)) != n+st.Duplicated || st.Out != uint64(len(out)) {
		t.Errorf("%d sent, stats %v; want in + duplicated", len(out), st)
	}
	// Every frame appears once or twice, twice only back to back, in order.
	seen := 0
	for i := 0; i < len(out); i++ {
		if out[i].id != seen {
			t.Fatalf("sent[%d] = frame %d, want %d", i, out[i].id, seen)
		}
		if i+1 < len(out) && out[i+1].id == seen {
			i++
		}
		seen++
	}
}

func TestImpairerReorderSwapsOnlyChosenFrames(t *testing.T) {
	const n = 10_000
	im := NewImpairer[int](Impairment{Reorder: 0.1, ReorderBound: time.Second}, seeded(3))
	out := simulate(im, n, time.Millisecond, 64)
	st := im.Counters.Snapshot()
	if len(out) != n {
		t.Fatalf("%d frames sent, want %d", len(out), n)
	}
	// The order is the arrival order with disjoint neighbours swapped: a
	// held frame goes out right after the one that followed it.
	swaps := 0
	for i := 0; i < n; i++ {
		switch {
		case out[i].id == i:
		case i+1 < n && out[i].id == i+1 && out[i+1].id == i:
			swaps++
			i++
		default:
			t.Fatalf("sent[%d] = frame %d, want %d or a swap with %d", i, out[i].id, i, i+1)
		}
	}
	if uint64(swaps) != st.Reordered {
		t.Errorf("%d swaps, Reordered = %d", swaps, st.Reordered)
	}
	if got := float64(swaps) / n; got < 0.07 || got > 0.11 {
		t.Errorf("swapped %d of %d frames, want about 10%% (a frame behind a held one is never held)", swaps, n)
	}
}

func TestImpairerReorderBound(t *testing.T) {
	im := NewImpairer[int](Impairment{Reorder: 1, ReorderBound: 5 * time.Millisecond}, seeded(4))
	v := im.Admit(t0, 64)
	if v.Drop || v.Direct {
		t.Fatalf("Admit with Reorder 1 = %+v, want the frame held", v)
	}
	im.Enqueue(v, 1)
	if at, ok := im.Next(); !ok || !at.Equal(t0.Add(5*time.Millisecond)) {
		t.Fatalf("Next() = %v, %v; want the bound, t0+5ms", at.Sub(t0), ok)
	}
	if f, _, ok := im.Pop(t0.Add(5*time.Millisecond - 1)); ok {
		t.Fatalf("Pop before the bound = frame %d, want nothing", f)
	}
	if f, c, ok := im.Pop(t0.Add(5 * time.Millisecond)); !ok || f != 1 || c != 1 {
		t.Fatalf("Pop at the bound = %d, %d, %v; want frame 1 once", f, c, ok)
	}
}

func TestImpairerDelayKeepsOrder(t *testing.T) {
	const n = 5000
	c := Impairment{Delay: 10 * time.Millisecond, Jitter: 8 * time.Millisecond}
	im := NewImpairer[int](c, seeded(5))
	out := simulate(im, n, 500*time.Microsecond, 64)
	if len(out) != n {
		t.Fatalf("%d frames sent, want %d", len(out), n)
	}
	var prev time.Duration
	for i, s := range out {
		arrived := time.Duration(i) * 500 * time.Microsecond
		if s.id != i {
			t.Fatalf("sent[%d] = frame %d: jitter reordered frames", i, s.id)
		}
		if d := s.at - arrived; d < c.Delay-c.Jitter || s.at < prev {
			t.Fatalf("frame %d: sent %v after arrival at %v (previous at %v), want ≥ %v and not before the previous", i, d, s.at, prev, c.Delay-c.Jitter)
		}
		prev = s.at
	}
	if st := im.Counters.Snapshot(); st.Delayed != n {
		t.Errorf("Delayed = %d, want %d", st.Delayed, n)
	}
	// Without jitter a frame is due exactly Delay after it arrived.
	im = NewImpairer[int](Impairment{Delay: 10 * time.Millisecond}, seeded(5))
	for i, s := range simulate(im, 100, 3*time.Millisecond, 64) {
		if want := time.Duration(i)*3*time.Millisecond + 10*time.Millisecond; s.at != want {
			t.Fatalf("frame %d sent at %v, want %v", s.id, s.at, want)
		}
	}
}

func TestImpairerRate(t *testing.T) {
	// 1000 B/s: frames of 100 bytes arriving together leave 100 ms apart.
	im := NewImpairer[int](Impairment{Rate: 1000}, seeded(6))
	out := simulate(im, 5, 0, 100)
	want := []sent{{0, 100 * time.Millisecond}, {1, 200 * time.Millisecond}, {2, 300 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 500 * time.Millisecond}}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("sent %v, want %v", out, want)
	}
}

func TestImpairerLimit(t *testing.T) {
	im := NewImpairer[int](Impairment{Delay: time.Second, Limit: 10}, seeded(7))
	out := simulate(im, 25, time.Millisecond, 64)
	st := im.Counters.Snapshot()
	if len(out) != 10 || st.Overflow != 15 {
		t.Errorf("%d sent, Overflow = %d; want 10 and 15", len(out), st.Overflow)
	}
}

func TestImpairerZeroPassesThrough(t *testing.T) {
	im := NewImpairer[int](Impairment{}, seeded(8))
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Microsecond)
		v := im.Admit(now, 1500)
		if !v.Direct || v.Copies != 1 || v.Drop {
			t.Fatalf("Admit(frame %d) = %+v, want sent directly once", i, v)
		}
		if _, ok := im.Next(); ok {
			t.Fatalf("after frame %d something waits", i)
		}
	}
	if st := im.Counters.Snapshot(); st != (Stats{In: 1000, Out: 1000}) {
		t.Errorf("stats %v, want in=out=1000 and nothing else", st)
	}
}

func TestImpairmentValidate(t *testing.T) {
	for _, tc := range []struct {
		c  Impairment
		ok bool
	}{
		{Impairment{}, true},
		{Impairment{Drop: 1, Dup: 1, Reorder: 1}, true},
		{Impairment{Drop: -0.1}, false},
		{Impairment{Dup: 1.5}, false},
		{Impairment{Reorder: math.NaN()}, false},
		{Impairment{Delay: -1}, false},
		{Impairment{Jitter: -1}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tc.c, err, tc.ok)
		}
	}
}

func BenchmarkImpairerZero(b *testing.B) {
	im := NewImpairer[int](Impairment{}, seeded(1))
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		im.Admit(now, 1500)
	}
}

// Mark: an ECN-capable datagram is marked CE (the IPv4 header checksum
// still right), a Not-ECT one never; nothing without CE set.
func TestMarkCE(t *testing.T) {
	v4 := func(tos byte) []byte {
		f := make([]byte, 14+40)
		f[12], f[13] = 0x08, 0x00
		ip := f[14:]
		ip[0], ip[1], ip[3], ip[8], ip[9] = 0x45, tos, 40, 64, 6
		copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(ip[i])<<8 | uint32(ip[i+1])
		}
		sum = sum>>16 + sum&0xffff
		ip[10], ip[11] = byte(^sum>>8), byte(^sum)
		return f
	}
	v6 := func(ecn byte) []byte {
		f := make([]byte, 14+60)
		f[12], f[13] = 0x86, 0xdd
		f[14], f[15] = 0x60|0x0b, ecn<<4 // traffic class 0xb0|ecn
		return f
	}
	valid := func(ip []byte) bool {
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(ip[i])<<8 | uint32(ip[i+1])
		}
		sum = sum>>16 + sum&0xffff
		return sum == 0xffff
	}
	im := NewImpairer[int](Impairment{CE: 1}, rand.New(rand.NewPCG(1, 2)))
	for _, c := range []struct {
		name string
		f    []byte
		want bool
	}{
		{"v4 ECT(0)", v4(0xb8 | 2), true},
		{"v4 ECT(1)", v4(1), true},
		{"v4 Not-ECT", v4(0xb8), false},
		{"v4 CE", v4(3), false},
		{"v6 ECT(0)", v6(2), true},
		{"v6 Not-ECT", v6(0), false},
	} {
		before := append([]byte(nil), c.f...)
		if got := im.Mark(c.f); got != c.want {
			t.Errorf("%s: Mark = %v, want %v", c.name, got, c.want)
		}
		switch {
		case !c.want && string(before) != string(c.f):
			t.Errorf("%s: frame changed", c.name)
		case c.want && c.f[12] == 0x08 && (c.f[15]&3 != 3 || c.f[15]&^3 != before[15]&^3 || !valid(c.f[14:])):
			t.Errorf("%s: TOS %#x (was %#x), checksum valid %v", c.name, c.f[15], before[15], valid(c.f[14:]))
		case c.want && c.f[12] == 0x86 && (c.f[15] != 0x30 || c.f[14] != before[14]):
			t.Errorf("%s: traffic class bytes % x", c.name, c.f[14:16])
		}
	}
	if n := im.Counters.Marked.Load(); n != 3 {
		t.Errorf("Marked = %d, want 3", n)
	}
	if off := NewImpairer[int](Impairment{}, rand.New(rand.NewPCG(1, 2))); off.Mark(v4(2)) {
		t.Error("Mark without CE marked")
	}
}
