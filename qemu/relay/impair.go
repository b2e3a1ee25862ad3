package relay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Impairment says what happens to the frames going one way. The zero value
// passes every frame through unchanged, at once and in order.
type Impairment struct {
	Drop    float64 // probability a frame is lost
	Dup     float64 // probability a frame is sent twice, back to back
	Reorder float64 // probability a frame is held back and sent after the next one
	// CE is the probability an ECN-capable IP datagram (ECT(0) or ECT(1),
	// IPv4 or IPv6) is marked CE (congestion experienced) instead of
	// passing unchanged: what an AQM router does in place of a drop
	// (RFC 3168 §5; Mark).
	CE float64

	// ReorderBound is how long a held frame waits for a next one before it
	// is sent anyway; 0 means DefaultReorderBound.
	ReorderBound time.Duration

	// Delay and Jitter: a frame is due Delay ± Jitter (uniform, floored at
	// 0) after it arrives, but never before a frame that arrived earlier —
	// jitter does not reorder; only Reorder does.
	Delay, Jitter time.Duration

	// Rate limits the bytes per second leaving this way (0: unlimited); a
	// frame is due once the link has "serialized" it after the frames
	// before it.
	Rate uint64

	// Limit is how many frames may wait (delayed, rate-limited or held);
	// beyond it frames are dropped and counted as Overflow. 0 means
	// DefaultLimit.
	Limit int
}

const (
	DefaultReorderBound = 10 * time.Millisecond
	DefaultLimit        = 16384
)

// Validate reports a probability outside [0, 1] or a negative duration.
func (c Impairment) Validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"drop", c.Drop}, {"dup", c.Dup}, {"reorder", c.Reorder}, {"ce", c.CE}} {
		if !(p.v >= 0 && p.v <= 1) { // also rejects NaN
			return fmt.Errorf("%s probability %v: want 0..1", p.name, p.v)
		}
	}
	if c.Delay < 0 || c.Jitter < 0 || c.ReorderBound < 0 || c.Limit < 0 {
		return errors.New("delay, jitter, reorder bound and limit must not be negative")
	}
	return nil
}

// Counters count what an Impairer (and the relay around it) did to the
// frames going one way. They are written by the one goroutine that owns the
// direction and may be read from any goroutine.
type Counters struct {
	In, Out    atomic.Uint64 // frames arrived; frames sent (a duplicate counts twice)
	Dropped    atomic.Uint64 // lost on purpose (Drop)
	Duplicated atomic.Uint64 // sent twice (Dup)
	Reordered  atomic.Uint64 // held back behind the next frame (Reorder)
	Delayed    atomic.Uint64 // sent later than they arrived (Delay, Jitter, Rate)
	Overflow   atomic.Uint64 // lost because Limit frames were already waiting
	BytesIn    atomic.Uint64 // set by the relay
	BytesOut   atomic.Uint64 // set by the relay
	Errors     atomic.Uint64 // frames the far side refused or the relay could not make out (set by the relay)
	Split      atomic.Uint64 // offloaded segments the relay cut into wire frames (set by the relay)
	Fragmented atomic.Uint64 // datagrams over the link MTU without DF, cut into fragments (set by the relay)
	TooBig     atomic.Uint64 // datagrams over the link MTU with DF, dropped (set by the relay)
	Marked     atomic.Uint64 // ECN-capable datagrams marked CE (CE)
}

// Stats is a snapshot of Counters.
type Stats struct {
	In, Out, Dropped, Duplicated, Reordered, Delayed, Overflow, BytesIn, BytesOut, Errors, Split uint64
	Fragmented, TooBig, Marked                                                                   uint64
}

// Snapshot reads the counters.
func (c *Counters) Snapshot() Stats {
	return Stats{
		In: c.In.Load(), Out: c.Out.Load(), Dropped: c.Dropped.Load(), Duplicated: c.Duplicated.Load(),
		Reordered: c.Reordered.Load(), Delayed: c.Delayed.Load(), Overflow: c.Overflow.Load(),
		BytesIn: c.BytesIn.Load(), BytesOut: c.BytesOut.Load(), Errors: c.Errors.Load(), Split: c.Split.Load(),
		Fragmented: c.Fragmented.Load(), TooBig: c.TooBig.Load(), Marked: c.Marked.Load(),
	}
}

func (s Stats) String() string {
	return fmt.Sprintf("in=%d out=%d dropped=%d duplicated=%d reordered=%d delayed=%d overflow=%d bytes_in=%d bytes_out=%d errors=%d split=%d fragmented=%d too_big=%d marked=%d",
		s.In, s.Out, s.Dropped, s.Duplicated, s.Reordered, s.Delayed, s.Overflow, s.BytesIn, s.BytesOut, s.Errors, s.Split,
		s.Fragmented, s.TooBig, s.Marked)
}

// Verdict is an Impairer's decision on one arriving frame (Admit).
type Verdict struct {
	Drop   bool // forget the frame
	Direct bool // send it now, Copies times, from the caller's own buffer; the Impairer keeps nothing
	Copies int  // 1, or 2 for a duplicate

	// Otherwise (neither Drop nor Direct) the caller hands a copy it may
	// keep to Enqueue, and gets it back from Pop when it is due.
	at          time.Time
	delayed     bool
	hold        bool
	releaseHeld bool
}

// Impairer decides, for the frames going one way, which are dropped,
// duplicated, held back or delayed, and when each is due. It does no I/O and
// reads no clock: time comes in with each call and randomness from the
// source it was made with, so the same seed and the same arrivals give the
// same decisions. F is the caller's frame handle (the relay uses pooled
// byte slices).
//
// Every frame not chosen for reordering is due no earlier than the frames
// that arrived before it, so the waiting frames form a FIFO (no heap).
//
// An Impairer belongs to one goroutine; only its Counters may be read
// concurrently.
type Impairer[F any] struct {
	Counters Counters

	c    Impairment
	rng  *rand.Rand
	last time.Time // when the latest scheduled frame is due; schedules never go back before it
	busy time.Time // with Rate: when the link finishes serializing the frames scheduled so far

	q []entry[F] // ring buffer of waiting frames, due times non-decreasing
	h int        // head index in q
	n int        // frames in q

	held         bool // a frame chosen for reordering waits for the next one
	heldF        F
	heldAt       time.Time // when it would have been due
	heldDeadline time.Time // when it is sent even if no next frame came
	heldCopies   int
	heldDelayed  bool
}

type entry[F any] struct {
	f       F
	at      time.Time
	copies  int
	delayed bool // due after it arrived: counted as Delayed when sent
}

// NewImpairer returns an Impairer for c drawing from rng. It panics if c is
// invalid: callers Validate configuration where it enters.
func NewImpairer[F any](c Impairment, rng *rand.Rand) *Impairer[F] {
	if err := c.Validate(); err != nil {
		panic(err)
	}
	if c.ReorderBound == 0 {
		c.ReorderBound = DefaultReorderBound
	}
	if c.Limit == 0 {
		c.Limit = DefaultLimit
	}
	return &Impairer[F]{c: c, rng: rng, q: make([]entry[F], 16)}
}

// Waiting returns how many frames are waiting (queued or held).
func (im *Impairer[F]) Waiting() int {
	if im.held {
		return im.n + 1
	}
	return im.n
}

// Admit decides the fate of a frame of size bytes arriving at now. Random
// numbers are drawn only for the impairments that are configured, in a
// fixed order (drop, dup, reorder, jitter), so a run replays exactly.
func (im *Impairer[F]) Admit(now time.Time, size int) Verdict {
	im.Counters.In.Add(1)
	c := &im.c
	if c.Drop > 0 && im.rng.Float64() < c.Drop {
		im.Counters.Dropped.Add(1)
		return Verdict{Drop: true}
	}
	if im.Waiting() >= c.Limit {
		im.Counters.Overflow.Add(1)
		return Verdict{Drop: true}
	}
	v := Verdict{Copies: 1}
	if c.Dup > 0 && im.rng.Float64() < c.Dup {
		v.Copies = 2
	}
	if c.Reorder > 0 && im.rng.Float64() < c.Reorder && !im.held {
		v.hold = true // at most one frame is held: the next one releases it
	}
	d := c.Delay
	if c.Jitter > 0 {
		d += time.Duration(im.rng.Int64N(2*int64(c.Jitter)+1)) - c.Jitter
		d = max(d, 0)
	}
	at := now.Add(d)
	if c.Rate > 0 {
		start := now
		if im.busy.After(start) {
			start = im.busy
		}
		im.busy = start.Add(time.Duration(uint64(size) * uint64(time.Second) / c.Rate))
		at = maxTime(at, im.busy)
	}
	if v.hold {
		// A held frame does not move last: the frames after it may overtake.
		v.at, v.delayed = at, at.After(now)
		return v
	}
	v.at = maxTime(at, im.last)
	v.delayed = v.at.After(now)
	im.last = v.at
	v.releaseHeld = im.held
	if !v.at.After(now) && im.n == 0 {
		v.Direct = true
		im.account(v.Copies, false)
		if v.releaseHeld {
			im.releaseHeld(now)
		}
	}
	return v
}

// Enqueue keeps f, which Admit gave verdict v (neither Drop nor Direct),
// until it is due.
func (im *Impairer[F]) Enqueue(v Verdict, f F) {
	if v.Drop || v.Direct {
		panic("relay: Enqueue of a frame that was dropped or sent directly")
	}
	if v.hold {
		im.held, im.heldF, im.heldAt = true, f, v.at
		// The deadline counts from arrival, which at ≥ arrival bounds from
		// below; reordering never delays a frame beyond its bound.
		im.heldDeadline = v.at.Add(im.c.ReorderBound)
		im.heldCopies, im.heldDelayed = v.Copies, v.delayed
		im.Counters.Reordered.Add(1)
		return
	}
	im.push(entry[F]{f: f, at: v.at, copies: v.Copies, delayed: v.delayed})
	if v.releaseHeld {
		im.releaseHeld(v.at)
	}
}

// releaseHeld queues the held frame behind everything queued so far, due no
// earlier than after.
func (im *Impairer[F]) releaseHeld(after time.Time) {
	at := maxTime(maxTime(im.heldAt, after), im.last)
	im.last = at
	im.push(entry[F]{f: im.heldF, at: at, copies: im.heldCopies, delayed: im.heldDelayed})
	var zero F
	im.held, im.heldF = false, zero
}

// Next returns when the next waiting frame is due (or a held frame's bound
// expires); ok is false when nothing waits.
func (im *Impairer[F]) Next() (at time.Time, ok bool) {
	if im.n > 0 {
		at, ok = im.q[im.h].at, true
	}
	if im.held && (!ok || im.heldDeadline.Before(at)) {
		at, ok = im.heldDeadline, true
	}
	return at, ok
}

// Pop returns the next frame due at now, and how many times to send it; ok
// is false when none is due. The caller owns f again.
func (im *Impairer[F]) Pop(now time.Time) (f F, copies int, ok bool) {
	if im.held && !now.Before(im.heldDeadline) {
		im.releaseHeld(im.heldDeadline)
	}
	if im.n == 0 || im.q[im.h].at.After(now) {
		return f, 0, false
	}
	e := im.q[im.h]
	im.q[im.h] = entry[F]{}
	im.h = (im.h + 1) % len(im.q)
	im.n--
	im.account(e.copies, e.delayed)
	return e.f, e.copies, true
}

func (im *Impairer[F]) account(copies int, delayed bool) {
	im.Counters.Out.Add(uint64(copies))
	if copies > 1 {
		im.Counters.Duplicated.Add(1)
	}
	if delayed {
		im.Counters.Delayed.Add(1)
	}
}

func (im *Impairer[F]) push(e entry[F]) {
	if im.n == len(im.q) {
		q := make([]entry[F], 2*len(im.q))
		for i := range im.n {
			q[i] = im.q[(im.h+i)%len(im.q)]
		}
		im.q, im.h = q, 0
	}
	im.q[(im.h+im.n)%len(im.q)] = e
	im.n++
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Mark marks the Ethernet frame f CE in place, with probability CE, if it
// carries an ECN-capable IPv4 or IPv6 datagram (an IPv4 header checksum is
// fixed), and reports whether it did. A random number is drawn only for an
// ECN-capable datagram, and only with CE set.
func (im *Impairer[F]) Mark(f []byte) bool {
	const eh = 14
	if im.c.CE == 0 || len(f) < eh+40 {
		return false
	}
	ip := f[eh:]
	switch {
	case f[12] == 0x08 && f[13] == 0x00 && ip[0]>>4 == 4:
		ihl := int(ip[0]&0x0f) * 4
		if ecn := ip[1] & 3; ecn == 0 || ecn == 3 || ihl < 20 || im.rng.Float64() >= im.c.CE {
			return false
		}
		ip[1] |= 3
		ip[10], ip[11] = 0, 0
		var sum uint32
		for i := 0; i+1 < ihl; i += 2 {
			sum += uint32(ip[i])<<8 | uint32(ip[i+1])
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		ip[10], ip[11] = byte(^sum>>8), byte(^sum)
	case f[12] == 0x86 && f[13] == 0xdd && ip[0]>>4 == 6:
		// The traffic class spans bytes 0-1; its ECN bits are bits 4-5
		// of byte 1.
		if ecn := ip[1] >> 4 & 3; ecn == 0 || ecn == 3 || im.rng.Float64() >= im.c.CE {
			return false
		}
		ip[1] |= 0x30
	default:
		return false
	}
	im.Counters.Marked.Add(1)
	return true
}
