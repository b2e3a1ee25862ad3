package fault

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestDisarmedIsIdentity(t *testing.T) {
	Disarm()
	err := errors.New("e")
	if !Cond(1, true) || Cond(1, false) || Drop(1) || Int(1, 41, PlusOne) != 41 || Zero(1, err) != err {
		t.Error("a disarmed site changed its value")
	}
	Panic(1)
	Loop(1)
	Block(1)
	if Activated() || Hits() != 0 || Fired() {
		t.Errorf("disarmed: Activated %v Hits %d Fired %v, want false 0 false", Activated(), Hits(), Fired())
	}
}

func TestAfter(t *testing.T) {
	defer Disarm()
	Arm(7, 3, 0)
	var got []bool
	for range 5 {
		got = append(got, Cond(7, true))
		Cond(8, true) // another site: not counted
	}
	want := []bool{true, true, false, false, false} // fires on the third hit, then stays
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Cond(7, true) over 5 hits = %v, want %v", got, want)
		}
	}
	if !Activated() || Hits() != 5 || !Fired() {
		t.Errorf("Activated %v Hits %d Fired %v, want true 5 true", Activated(), Hits(), Fired())
	}
	Disarm()
	if !Cond(7, true) {
		t.Error("Cond(7, true) after Disarm = false, want true")
	}
}

func TestProbReplays(t *testing.T) {
	defer Disarm()
	first := func(seed uint64) uint64 {
		ArmSeeded(3, 0, 0.01, seed)
		for !Drop(3) {
		}
		return Hits()
	}
	a, b := first(42), first(42)
	if a != b {
		t.Errorf("seed 42 fired on hit %d, then on hit %d; want the same", a, b)
	}
	if a < 2 || a > 2000 {
		t.Errorf("probability 0.01 fired on hit %d; implausible", a)
	}
}

func TestInt(t *testing.T) {
	defer Disarm()
	for _, c := range []struct {
		how  Corruption
		v    int32
		want int32
	}{
		{PlusOne, 5, 6},
		{MinusOne, 5, 4},
		{Negate, 5, -5},
		{FlipBit0 + 1, 5, 7},
		{FlipBit0 + 33, 5, 7}, // beyond 32 bits: bit 33 mod 32
	} {
		Arm(1, 1, 0)
		if got := Int(1, c.v, c.how); got != c.want {
			t.Errorf("Int(%d, %v) = %d, want %d", c.v, c.how, got, c.want)
		}
	}
	Arm(1, 1, 0)
	if got := Int(1, uint8(1), Negate); got != 255 {
		t.Errorf("Int(uint8 1, negate) = %d, want 255", got)
	}
}

type ref struct{ Pool, Off, Len uint32 }

type freer struct{ freed []ref }

func (f *freer) Free(r ref) error { f.freed = append(f.freed, r); return nil }

func TestRefs(t *testing.T) {
	defer Disarm()
	r := ref{Pool: 1, Off: 4096, Len: 60}
	Arm(2, 1, 0)
	if got, want := Ref(2, r, OtherBuffer), (ref{1, 4096 + 2048, 60}); got != want {
		t.Errorf("Ref(%+v, other-buffer) = %+v, want %+v", r, got, want)
	}
	Arm(2, 1, 0)
	if got, want := Ref(2, r, OtherPool), (ref{2, 4096, 60}); got != want {
		t.Errorf("Ref(%+v, other-pool) = %+v, want %+v", r, got, want)
	}
	f := &freer{}
	if ReleaseEarly(3, f, r) != r || len(f.freed) != 0 {
		t.Error("ReleaseEarly freed at a site that is not armed")
	}
	Arm(3, 1, 0)
	if ReleaseEarly(3, f, r) != r || len(f.freed) != 1 {
		t.Errorf("armed ReleaseEarly freed %v, want [%+v]", f.freed, r)
	}
}

func TestPanicBlockLoop(t *testing.T) {
	defer Disarm()
	Arm(4, 1, 0)
	func() {
		defer func() {
			if p, ok := recover().(Injected); !ok || p.Site != 4 {
				t.Errorf("Panic(4) armed: recovered %v, want Injected{4}", p)
			}
		}()
		Panic(4)
		t.Error("Panic(4) armed returned")
	}()
	for _, f := range []func(uint32){Block, Loop} {
		Arm(5, 1, 0)
		done := make(chan bool)
		go func() { f(5); close(done) }()
		select {
		case <-done:
			t.Error("armed Block/Loop returned")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Hits from many goroutines are all counted.
func TestConcurrentHits(t *testing.T) {
	defer Disarm()
	Arm(9, 1000000, 0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				Cond(9, true)
			}
		})
	}
	wg.Wait()
	if Hits() != 4000 {
		t.Errorf("Hits() = %d, want 4000", Hits())
	}
}

// BenchmarkDisarmed is the cost of a site when none is armed.
func BenchmarkDisarmed(b *testing.B) {
	Disarm()
	n := 0
	for i := 0; i < b.N; i++ {
		n = Int(1, n, PlusOne) + 1
	}
}
