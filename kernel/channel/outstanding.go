package channel

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// ErrTableFull: the Outstanding table is at its bound; the caller queues the
// request until replies come back.
var ErrTableFull = errors.New("channel: too many outstanding requests")

// Outstanding is a sender's table of requests that have not had their reply,
// keyed by request id: what it resubmits after its peer restarts.
//
// Ids come from a counter that only grows, so an id is never reused: once
// Resubmit has re-issued a request under a fresh id, a late reply to the old
// one finds nothing in the table and Complete reports it as stale. A
// component that restarts itself must seed the counter above every id it
// issued before (NewOutstanding's next, e.g. from store or from its restart
// generation in the high bits).
//
// The table is a ring of slots indexed by the id's low bits, allocated once:
// every request of a busy channel is added and completed, and neither
// allocates. The ring has at least twice limit slots, so a fresh id's slot
// is almost always free; when it is not (a request issued a whole ring of
// ids ago is still unanswered) Add skips that id and takes the next, so ids
// still only grow but may leave gaps. A slot holds its request with its id,
// and a reply matches only the id it names: an id whose slot has moved on
// to a later request is stale, as one never issued is.
//
// An Outstanding is not safe for concurrent use; it belongs to the sending
// component's event loop.
type Outstanding struct {
	next  uint64 // the id Add hands out next
	limit int    // bound on n
	n     int    // requests in slots
	slots []Msg  // by id & (len(slots)-1); a free slot has ID 0
}

// NewOutstanding returns a table of at most limit requests whose first id is
// next (0 is taken as 1, so that id 0 never names a request).
func NewOutstanding(limit int, next uint64) *Outstanding {
	if next == 0 {
		next = 1
	}
	size := 1 << bits.Len(uint(max(2*limit-1, 1))) // a power of two, at least 2*limit
	return &Outstanding{next: next, limit: limit, slots: make([]Msg, size)}
}

// slot is where the request with id lives, if it is outstanding.
func (t *Outstanding) slot(id uint64) *Msg { return &t.slots[id&uint64(len(t.slots)-1)] }

// Add records m under a fresh id and returns it with that id, ready to send.
// It fails with ErrTableFull at the bound.
func (t *Outstanding) Add(m Msg) (Msg, error) {
	if t.n >= t.limit {
		return Msg{}, ErrTableFull
	}
	for t.slot(t.next).ID != 0 { // there is a free slot: n < limit < len(slots)
		t.next++
	}
	m.ID = t.next
	t.next++
	*t.slot(m.ID) = m
	t.n++
	return m, nil
}

// Complete matches a reply to its request and forgets the request. ok is
// false for a reply whose id is unknown: never issued, already answered, or
// issued before a Resubmit; such a reply must be dropped (its packet, if it
// carries one, is not the caller's to use).
func (t *Outstanding) Complete(reply Msg) (req Msg, ok bool) {
	s := t.slot(reply.ID)
	if reply.ID == 0 || s.ID != reply.ID {
		return Msg{}, false
	}
	req, *s = *s, Msg{}
	t.n--
	return req, true
}

// CompleteFrom is Complete for a reply that came on e: a reply to a request
// this table never issued (an id it has not handed out yet) is not stale but
// impossible, a peer breaking the protocol, and breaks e (ErrProtocol).
func (t *Outstanding) CompleteFrom(e *Endpoint, reply Msg) (req Msg, ok bool) {
	req, ok = t.Complete(reply)
	if !ok && reply.ID >= t.next {
		e.Break(fmt.Sprintf("a reply to request %d, never made (the next is %d)", reply.ID, t.next))
	}
	return req, ok
}

// Resubmit re-issues every outstanding request under a fresh id, in the
// order they were first issued, and forgets the old ids. The caller sends
// the result on the new channel.
func (t *Outstanding) Resubmit() []Msg {
	old := make([]Msg, 0, t.n)
	for _, m := range t.slots {
		if m.ID != 0 {
			old = append(old, m)
		}
	}
	slices.SortFunc(old, func(a, b Msg) int { return cmp.Compare(a.ID, b.ID) })
	clear(t.slots)
	t.n = 0
	for i := range old {
		old[i], _ = t.Add(old[i]) // the table is empty: room for all
	}
	return old
}

// Len is the number of outstanding requests.
func (t *Outstanding) Len() int { return t.n }

// Full reports whether the table is at its bound: Add would fail.
func (t *Outstanding) Full() bool { return t.n >= t.limit }

// Next is the least id Add can hand out next (more if it must skip a busy
// slot): what a component saves so that its successor never reuses an id.
func (t *Outstanding) Next() uint64 { return t.next }
