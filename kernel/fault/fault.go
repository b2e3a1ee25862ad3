// Package fault is the run-time half of keepnet's software fault injection
// (issue 13, after EDFI: Giuffrida et al., PRDC 2013). The other half,
// kernel/fault/rewrite, copies a component's source and wraps chosen
// expressions and statements — its fault sites — in calls to the helpers
// here, one helper per fault type:
//
//	Cond          a branch condition, inverted
//	Int           an integer operand, corrupted (off by one, a flipped bit, wrong sign)
//	Drop          a statement, not executed
//	Zero          a returned pointer, slice, map or error, replaced by nil
//	Ref           a pool reference, pointed at another buffer or pool
//	ReleaseEarly  a buffer, freed while still in use
//	Panic         a function, panicking on entry
//	Loop          a loop body or function, spinning forever without blocking
//	Block         a function, blocking forever (a lock never released)
//
// Each site has a number the rewriter gave it. Until a site is armed, every
// helper returns what it was handed (or does nothing) after one atomic load:
// the instrumented program behaves exactly as the original. A normal image
// is not rewritten at all and has no sites (images' TestNoFaultSites).
//
// # Arming
//
// One site at a time per process: Arm names the site and when it fires —
// on its after-th hit, or on each hit with probability prob (drawn from a
// seeded generator, so a run replays exactly: ArmSeeded). Once it has
// fired the fault stays: every later hit of the site fires too, as a bug in
// that line would. Panic, Loop and Block end (or never end) the hit that
// fires them, so for them the first firing is the only one that matters.
// Activated and Hits tell a campaign whether the armed site was reached at
// all, Fired whether the fault was injected. So that a campaign on the host
// can tell too, without a question the component might be too stuck to
// answer, the first hit of an armed site and its firing each write one line
// to standard error ("fault: site 12 reached", "fault: site 12 fired on hit
// 1"), which init puts on the console under the component's name.
//
// Every function is safe for concurrent use: sites are hit from any
// goroutine of the component, and arming comes from the wiring's reader.
package fault

import (
	"fmt"
	"math"
	"os"
	"sync/atomic"
)

// armedSite is the armed site, 0 when none: the one load every helper does
// before returning its argument unchanged. Site numbers start at 1.
var armedSite atomic.Uint32

// current is the armed site's trigger and counters. It is stored before
// armedSite when arming and after it when disarming, so a helper that saw
// its own site in armedSite finds its trigger here (or, racing with a
// re-arm, another site's, which it ignores).
var current atomic.Pointer[arming]

type arming struct {
	site  uint32
	after uint64 // fire on this hit (1 = the first); 0: by probability only
	prob  uint64 // fire when the hit's draw is below this (of 2^64); 0: never
	seed  uint64
	hits  atomic.Uint64
	fired atomic.Bool
}

// Arm arms site, disarming any other: the fault fires on the after-th hit of
// the site, or on each hit with probability prob, whichever comes first
// (after 0 and prob 0: on the first hit), and then stays. The draws are
// seeded with the site number (ArmSeeded to choose).
func Arm(site uint32, after uint64, prob float64) {
	ArmSeeded(site, after, prob, uint64(site))
}

// ArmSeeded is Arm with the seed of the probability draws: the same seed
// and the same sequence of hits fire on the same hit.
func ArmSeeded(site uint32, after uint64, prob float64, seed uint64) {
	if site == 0 {
		Disarm()
		return
	}
	a := &arming{site: site, after: after, seed: seed}
	switch {
	case prob >= 1:
		a.prob = math.MaxUint64
	case prob > 0:
		a.prob = uint64(prob * (1 << 64))
	}
	if a.after == 0 && a.prob == 0 {
		a.after = 1
	}
	armedSite.Store(0)
	current.Store(a)
	armedSite.Store(site)
}

// Disarm disarms the armed site, if any. A helper already past its check
// may still inject one last fault.
func Disarm() {
	armedSite.Store(0)
	current.Store(nil)
}

// Armed is the armed site, 0 when none.
func Armed() uint32 { return armedSite.Load() }

// Hits is how many times the armed site was reached since Arm.
func Hits() uint64 {
	if a := current.Load(); a != nil {
		return a.hits.Load()
	}
	return 0
}

// Activated reports whether the armed site was reached since Arm: a fault
// that was never activated says nothing about recovery.
func Activated() bool { return Hits() > 0 }

// Fired reports whether the armed site's fault was injected.
func Fired() bool {
	a := current.Load()
	return a != nil && a.fired.Load()
}

// hit counts one hit of site and reports whether its fault fires now. Only
// the helpers' slow paths call it, after armedSite named site.
func hit(site uint32) bool {
	a := current.Load()
	if a == nil || a.site != site {
		return false
	}
	n := a.hits.Add(1)
	if n == 1 {
		report("fault: site %d reached\n", site)
	}
	if a.fired.Load() {
		return true
	}
	if (a.after != 0 && n >= a.after) || (a.prob != 0 && draw(a.seed, n) < a.prob) {
		if !a.fired.Swap(true) {
			report("fault: site %d fired on hit %d\n", site, n)
		}
		return true
	}
	return false
}

// report writes one line to standard error for a campaign watching the
// console (qemu/campaign): once per arming, so it costs nothing per hit.
// Standard error, not log: a component may have pointed log elsewhere.
func report(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format, args...)
}

// draw is the n-th number of the sequence seed names (splitmix64's mix): a
// pure function, so concurrent hits need no shared generator state.
func draw(seed, n uint64) uint64 {
	z := seed + n*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Injected is the value an injected panic panics with.
type Injected struct{ Site uint32 }

func (e Injected) Error() string { return fmt.Sprintf("fault: injected panic at site %d", e.Site) }

// Cond is a branch condition: c, or !c once the fault fired.
func Cond(site uint32, c bool) bool {
	if armedSite.Load() != site {
		return c
	}
	return c != hit(site)
}

// Drop reports whether to skip the statement it guards (the rewriter writes
// `if !fault.Drop(site) { stmt }`): true once the fault fired.
func Drop(site uint32) bool {
	if armedSite.Load() != site {
		return false
	}
	return hit(site)
}

// Zero is a returned value: v, or T's zero value (nil) once the fault fired.
func Zero[T any](site uint32, v T) T {
	if armedSite.Load() != site || !hit(site) {
		return v
	}
	var zero T
	return zero
}

// Panic panics with Injected once the fault fired.
func Panic(site uint32) {
	if armedSite.Load() == site && hit(site) {
		panic(Injected{Site: site})
	}
}

// spins counts the rounds of injected infinite loops; a store the compiler
// must keep, so the loop stays a loop that burns its CPU.
var spins atomic.Uint64

// Loop never returns once the fault fired: it spins, never blocking, as an
// infinite loop in the code would (Go preempts it; nothing else stops it).
func Loop(site uint32) {
	if armedSite.Load() == site && hit(site) {
		for {
			spins.Add(1)
		}
	}
}

// Block never returns once the fault fired: the goroutine waits forever,
// as on a lock that is never released.
func Block(site uint32) {
	if armedSite.Load() == site && hit(site) {
		select {}
	}
}

// Integer is any integer type, named or not.
type Integer interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 |
		~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uintptr
}

// Corruption is how Int corrupts an operand; the rewriter chooses one per
// site and writes it into the call (and the site list).
type Corruption uint8

const (
	PlusOne  Corruption = iota // v+1
	MinusOne                   // v-1
	Negate                     // -v (for unsigned types, its two's complement)
	FlipBit0                   // FlipBit0+n: v with bit n flipped, n < 64
)

func (c Corruption) String() string {
	switch c {
	case PlusOne:
		return "plus-one"
	case MinusOne:
		return "minus-one"
	case Negate:
		return "negate"
	}
	return fmt.Sprintf("flip-bit-%d", c-FlipBit0)
}

// Int is an integer operand: v, or v corrupted as how says once the fault
// fired. A bit beyond T's width flips bit (n mod width).
func Int[T Integer](site uint32, v T, how Corruption) T {
	if armedSite.Load() != site || !hit(site) {
		return v
	}
	switch how {
	case PlusOne:
		return v + 1
	case MinusOne:
		return v - 1
	case Negate:
		return -v
	}
	var one T = 1
	bits := uint(0)
	for x := ^T(0); x != 0 && bits < 64; bits++ { // T's width (an unsigned ^0 has all of them set)
		x <<= 1
	}
	return v ^ one<<(uint(how-FlipBit0)%bits)
}

// RefCorruption is how Ref corrupts a pool reference.
type RefCorruption uint8

const (
	// OtherBuffer moves the reference one default-sized buffer (2048
	// bytes) on: another buffer of the same pool, or none.
	OtherBuffer RefCorruption = iota
	// OtherPool names the next pool id: a buffer of another pool, or none.
	OtherPool
)

func (c RefCorruption) String() string {
	if c == OtherPool {
		return "other-pool"
	}
	return "other-buffer"
}

// refFields is kernel/pool.Ref's layout. The fault package cannot import
// pool (pool is instrumented, so it imports fault); Ref takes any type of
// this layout instead, which pool.Ref is.
type refFields = struct{ Pool, Off, Len uint32 }

// otherBufferStride is pool.DefaultBufSize.
const otherBufferStride = 2048

// Ref is a pool reference: r, or r naming another buffer as how says once
// the fault fired.
func Ref[R ~struct{ Pool, Off, Len uint32 }](site uint32, r R, how RefCorruption) R {
	if armedSite.Load() != site || !hit(site) {
		return r
	}
	f := refFields(r)
	switch how {
	case OtherPool:
		f.Pool++
	default:
		f.Off += otherBufferStride
	}
	return R(f)
}

// Freer is a pool: what ReleaseEarly frees a buffer in.
type Freer[R any] interface{ Free(R) error }

// ReleaseEarly is a buffer about to be used: r, freed in p first once the
// fault fired, so that the owner may hand it out again while this use goes
// on (and the rightful free later fails as a double free). In a pool this
// process does not own, the free fails and nothing happens.
func ReleaseEarly[R any, P Freer[R]](site uint32, p P, r R) R {
	if armedSite.Load() == site && hit(site) {
		p.Free(r)
	}
	return r
}
