// Package journal is init's memory of the appliance's life: a bounded ring
// of events — every start, exit, crash, hang, restart, device reset and
// fault injection, and every recovery with how long it took — and the last
// lines each component printed, timestamped. The supervisor writes both
// (boot/supervisor), init adds what only it sees (fault injection, and
// device resets the drivers report in their output: Rule), and the control
// protocol reads them (boot/ctl verbs events and logs; `keepnet events`,
// `keepnet logs`).
//
// # Bounds
//
// Nothing here grows with the appliance's uptime: MaxEvents events are kept
// in all, MaxLines lines per component, each line cut at MaxLineBytes. The
// components are the supervisor's table plus init and the supervisor
// itself, so the memory is bounded by the table.
//
// # Cursors
//
// Every event and every line gets a sequence number, from one counter for
// events and another for lines, that only grows. A reader passes the
// number after the last one it saw (Since) and gets what came since, in
// order, as far as a byte budget allows, with the cursor to continue from:
// a follower (`keepnet logs -f`) polls that way and never holds the
// control channel while it waits. What the ring already dropped is gone;
// the reader sees the gap in the numbers.
//
// # Concurrency
//
// A Journal is safe for concurrent use; its mutex is a leaf (no callback
// runs under it), so the supervisor may write while holding its own locks.
package journal

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bounds.
const (
	MaxEvents    = 1024
	MaxLines     = 200  // per component
	MaxLineBytes = 1024 // a longer line is kept cut, with "…"
)

// Kind says what an event is.
type Kind string

// Kinds of events.
const (
	Start   Kind = "start"   // a component's first process started
	Restart Kind = "restart" // a later process started; Reason says why
	Ready   Kind = "ready"   // the process said it serves; after a restart with Recovery
	Exit    Kind = "exit"    // a process ended with status 0
	Crash   Kind = "crash"   // a process ended otherwise (status and its meaning, or signal)
	Hang    Kind = "hang"    // a process was killed because it showed no sign of life
	Stop    Kind = "stop"    // a process was stopped: a restart or poweroff asked for it
	Signal  Kind = "signal"  // the host sent the component a signal (keepnet kill)
	Reset   Kind = "device-reset"
	Inject  Kind = "inject" // a fault site was armed or disarmed (keepnet inject)
)

// Event is one thing that happened to a component.
type Event struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Component string    `json:"component"`
	// Generation is the component's process the event is about (for
	// an exit, the one that ended); 0 when unknown.
	Generation int    `json:"generation,omitempty"`
	Kind       Kind   `json:"kind"`
	PID        int    `json:"pid,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Action is what the supervisor does next after an exit, crash or
	// hang: "restarting", "restarting in 400ms", "left failed"...
	Action string `json:"action,omitempty"`
	// Recovery, on a Ready event that follows a restart, is the time from
	// the end of the previous process to this one serving, in
	// milliseconds: how long the component was away.
	Recovery float64 `json:"recovery_ms,omitempty"`
}

// RecoveryTime is e.Recovery as a duration.
func (e Event) RecoveryTime() time.Duration {
	return time.Duration(e.Recovery * float64(time.Millisecond))
}

// Line is one line a component printed.
type Line struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Component string    `json:"component"`
	Text      string    `json:"text"`
}

// Rule turns a component's output line into an event: a line of a
// component whose name starts with Prefix, containing Contains, becomes an
// event of Kind with the line as its Reason. It is for what a component
// reports only by saying it (a driver's "device reset").
type Rule struct {
	Prefix, Contains string
	Kind             Kind
}

// Journal keeps the events and lines. The zero value is not usable: New.
type Journal struct {
	now   func() time.Time
	rules []Rule

	// mu guards everything below; nothing is called while it is held.
	mu     sync.Mutex
	events ring[Event]
	lines  map[string]*ring[Line]
	// nextLine is the sequence number of the next line, of any component.
	nextLine uint64
	// generation is each component's current generation, from its last
	// Start or Restart event: the generation of the events Rules make.
	generation map[string]int
}

// New returns an empty journal that stamps entries with now (time.Now if
// nil) and makes events from lines by rules.
func New(now func() time.Time, rules ...Rule) *Journal {
	if now == nil {
		now = time.Now
	}
	return &Journal{
		now: now, rules: slices.Clone(rules),
		events:     newRing[Event](MaxEvents),
		lines:      map[string]*ring[Line]{},
		nextLine:   1,
		generation: map[string]int{},
	}
}

// Add records e, stamped now unless it carries a time, and returns its
// sequence number. A nil Journal records nothing.
func (j *Journal) Add(e Event) uint64 {
	if j == nil {
		return 0
	}
	if e.Time.IsZero() {
		e.Time = j.now()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.addLocked(e)
}

func (j *Journal) addLocked(e Event) uint64 {
	if e.Kind == Start || e.Kind == Restart {
		j.generation[e.Component] = e.Generation
	}
	if e.Generation == 0 {
		e.Generation = j.generation[e.Component]
	}
	e.Seq = j.events.next
	j.events.add(e)
	return e.Seq
}

// Log records a line component printed (without its newline), and the
// event a Rule makes of it. A nil Journal records nothing.
func (j *Journal) Log(component string, text []byte) {
	if j == nil {
		return
	}
	s := string(text)
	if len(s) > MaxLineBytes {
		s = strings.ToValidUTF8(s[:MaxLineBytes], "") + "…"
	}
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.lines[component]
	if r == nil {
		r = ptr(newRing[Line](MaxLines))
		j.lines[component] = r
	}
	r.add(Line{Seq: j.nextLine, Time: now, Component: component, Text: s})
	j.nextLine++
	for _, rule := range j.rules {
		if strings.HasPrefix(component, rule.Prefix) && strings.Contains(s, rule.Contains) {
			j.addLocked(Event{Time: now, Component: component, Kind: rule.Kind, Reason: s})
		}
	}
}

// Events returns the events numbered since and later, oldest first, as many
// as fit in about budget bytes of text (at least one), and the number to
// continue from.
func (j *Journal) Events(since uint64, budget int) ([]Event, uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Event
	size := 0
	next := max(since, j.events.first())
	for ; next < j.events.next; next++ {
		e := j.events.at(next)
		size += 160 + len(e.Reason) + len(e.Action)
		if len(out) > 0 && size > budget {
			break
		}
		out = append(out, e)
	}
	return out, next
}

// Lines returns the lines of component (every component's, merged in
// order, if component is empty) numbered since and later, oldest first, as
// many as fit in about budget bytes (at least one), and the number to
// continue from.
func (j *Journal) Lines(component string, since uint64, budget int) ([]Line, uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var all []Line
	for name, r := range j.lines {
		if component != "" && name != component {
			continue
		}
		for i := r.first(); i < r.next; i++ {
			if l := r.at(i); l.Seq >= since {
				all = append(all, l)
			}
		}
	}
	slices.SortFunc(all, func(a, b Line) int { return cmp.Compare(a.Seq, b.Seq) })
	size := 0
	for i, l := range all {
		size += 64 + len(l.Text)
		if i > 0 && size > budget {
			return all[:i], l.Seq
		}
	}
	return all, max(since, j.nextLine)
}

// Components names every component that printed a line, sorted.
func (j *Journal) Components() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	names := make([]string, 0, len(j.lines))
	for n := range j.lines {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func ptr[T any](v T) *T { return &v }

// ring keeps the last len(buf) items added; item number n (counted from 0
// over all adds) is at buf[n % len(buf)] while it is kept.
type ring[T any] struct {
	buf  []T
	next uint64 // number of the next item added
}

func newRing[T any](n int) ring[T] { return ring[T]{buf: make([]T, n)} }

func (r *ring[T]) add(v T) {
	r.buf[r.next%uint64(len(r.buf))] = v
	r.next++
}

// first is the number of the oldest item kept.
func (r *ring[T]) first() uint64 {
	if r.next < uint64(len(r.buf)) {
		return 0
	}
	return r.next - uint64(len(r.buf))
}

// at is item n; first() <= n < next.
func (r *ring[T]) at(n uint64) T { return r.buf[n%uint64(len(r.buf))] }
