package channel

import (
	"cmp"
	"errors"
	"fmt"
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
// An Outstanding is not safe for concurrent use; it belongs to the sending
// component's event loop.
type Outstanding struct {
	next  uint64         // the id Add hands out next
	limit int            // bound on len(reqs)
	reqs  map[uint64]Msg // by id
}

// NewOutstanding returns a table of at most limit requests whose first id is
// next (0 is taken as 1, so that id 0 never names a request).
func NewOutstanding(limit int, next uint64) *Outstanding {
	if next == 0 {
		next = 1
	}
	return &Outstanding{next: next, limit: limit, reqs: make(map[uint64]Msg, limit)}
}

// Add records m under a fresh id and returns it with that id, ready to send.
// It fails with ErrTableFull at the bound.
func (t *Outstanding) Add(m Msg) (Msg, error) {
	if len(t.reqs) >= t.limit {
		return Msg{}, ErrTableFull
	}
	m.ID = t.next
	t.next++
	t.reqs[m.ID] = m
	return m, nil
}

// Complete matches a reply to its request and forgets the request. ok is
// false for a reply whose id is unknown: never issued, already answered, or
// issued before a Resubmit; such a reply must be dropped (its packet, if it
// carries one, is not the caller's to use).
func (t *Outstanding) Complete(reply Msg) (req Msg, ok bool) {
	req, ok = t.reqs[reply.ID]
	if ok {
		delete(t.reqs, reply.ID)
	}
	return req, ok
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
	old := make([]Msg, 0, len(t.reqs))
	for _, m := range t.reqs {
		old = append(old, m)
	}
	slices.SortFunc(old, func(a, b Msg) int { return cmp.Compare(a.ID, b.ID) })
	clear(t.reqs)
	for i := range old {
		old[i].ID = t.next
		t.next++
		t.reqs[old[i].ID] = old[i]
	}
	return old
}

// Len is the number of outstanding requests.
func (t *Outstanding) Len() int { return len(t.reqs) }

// Full reports whether the table is at its bound: Add would fail.
func (t *Outstanding) Full() bool { return len(t.reqs) >= t.limit }

// Next is the id Add hands out next: what a component saves so that its
// successor never reuses an id.
func (t *Outstanding) Next() uint64 { return t.next }
