package channel

import (
	"errors"
	"testing"
)

func TestOutstanding(t *testing.T) {
	// Each step is one call; ids are what the table must hand out.
	type step struct {
		op      string // add, reply, resubmit
		id      uint64 // add: the id we expect; reply: the id replied to
		ok      bool   // reply: accepted?; add: succeeded?
		resub   []uint64
		fromOps []uint16 // resubmit: the ops of the re-issued requests, in order
	}
	tests := []struct {
		name  string
		limit int
		next  uint64
		steps []step
	}{
		{"ids grow from the seed", 4, 100, []step{
			{op: "add", id: 100, ok: true},
			{op: "add", id: 101, ok: true},
			{op: "reply", id: 101, ok: true},
			{op: "reply", id: 101, ok: false}, // a second reply is stale
			{op: "reply", id: 999, ok: false}, // never issued
			{op: "add", id: 102, ok: true},
		}},
		{"zero seed starts at one", 2, 0, []step{
			{op: "add", id: 1, ok: true},
			{op: "reply", id: 0, ok: false},
		}},
		{"bounded", 2, 1, []step{
			{op: "add", id: 1, ok: true},
			{op: "add", id: 2, ok: true},
			{op: "add", ok: false},
			{op: "reply", id: 1, ok: true},
			{op: "add", id: 3, ok: true},
		}},
		{"resubmit gives fresh ids and old replies are ignored", 8, 1, []step{
			{op: "add", id: 1, ok: true}, // op 1
			{op: "add", id: 2, ok: true}, // op 2
			{op: "add", id: 3, ok: true}, // op 3
			{op: "reply", id: 2, ok: true},
			{op: "resubmit", resub: []uint64{4, 5}, fromOps: []uint16{1, 3}},
			{op: "reply", id: 1, ok: false}, // late reply from before the restart
			{op: "reply", id: 3, ok: false},
			{op: "reply", id: 5, ok: true},
			{op: "add", id: 6, ok: true}, // op 4
			{op: "resubmit", resub: []uint64{7, 8}, fromOps: []uint16{1, 4}},
			{op: "reply", id: 4, ok: false},
			{op: "reply", id: 7, ok: true},
			{op: "reply", id: 8, ok: true},
			{op: "resubmit", resub: []uint64{}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := NewOutstanding(tc.limit, tc.next)
			var op uint16
			for i, s := range tc.steps {
				switch s.op {
				case "add":
					op++
					m, err := tab.Add(Msg{Op: op})
					if ok := err == nil; ok != s.ok {
						t.Fatalf("step %d: Add = %v, want ok %v", i, err, s.ok)
					}
					if err != nil {
						if !errors.Is(err, ErrTableFull) {
							t.Fatalf("step %d: Add = %v, want %v", i, err, ErrTableFull)
						}
						op--
						continue
					}
					if m.ID != s.id || m.Op != op {
						t.Fatalf("step %d: Add = id %d op %d, want id %d op %d", i, m.ID, m.Op, s.id, op)
					}
				case "reply":
					req, ok := tab.Complete(Msg{ID: s.id, Status: 0})
					if ok != s.ok || (ok && req.ID != s.id) {
						t.Fatalf("step %d: Complete(id %d) = %+v, %v, want ok %v", i, s.id, req, ok, s.ok)
					}
				case "resubmit":
					got := tab.Resubmit()
					if len(got) != len(s.resub) {
						t.Fatalf("step %d: Resubmit = %+v, want ids %v", i, got, s.resub)
					}
					for j, m := range got {
						if m.ID != s.resub[j] || m.Op != s.fromOps[j] {
							t.Errorf("step %d: Resubmit[%d] = id %d op %d, want id %d op %d", i, j, m.ID, m.Op, s.resub[j], s.fromOps[j])
						}
					}
					if tab.Len() != len(s.resub) {
						t.Errorf("step %d: Len after Resubmit = %d, want %d", i, tab.Len(), len(s.resub))
					}
				}
			}
		})
	}
}

// A reply to a request never made is the peer breaking the protocol: it
// breaks the channel it came on. A stale reply (answered already, or
// resubmitted) is only dropped.
func TestCompleteFromImpossibleReply(t *testing.T) {
	_, b := localPair(t, 8)
	tab := NewOutstanding(4, 10)
	req, _ := tab.Add(Msg{Op: 1})
	if _, ok := tab.CompleteFrom(b, req); !ok || b.Err() != nil {
		t.Fatalf("CompleteFrom(its reply) = %v, Err %v; want ok, nil", ok, b.Err())
	}
	if _, ok := tab.CompleteFrom(b, req); ok || b.Err() != nil {
		t.Fatalf("CompleteFrom(the same reply again) = %v, Err %v; want stale, not broken", ok, b.Err())
	}
	if _, ok := tab.CompleteFrom(b, Msg{ID: 99}); ok || !errors.Is(b.Err(), ErrProtocol) {
		t.Errorf("CompleteFrom(a reply to request 99, never made) = %v, Err %v; want %v", ok, b.Err(), ErrProtocol)
	}
}

// The ring: ids run many times round it while one request stays
// unanswered; that request's slot is skipped, not overwritten, and a
// reply naming an id that shares its slot is stale, not a match.
func TestOutstandingWrapsAround(t *testing.T) {
	const limit = 4
	tab := NewOutstanding(limit, 1)
	size := uint64(len(tab.slots))
	old, _ := tab.Add(Msg{Op: 1})
	var last uint64
	for i := range 10 * size {
		m, err := tab.Add(Msg{Op: 2})
		if err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
		if m.ID <= last || m.ID&(size-1) == old.ID&(size-1) {
			t.Fatalf("Add %d = id %d after %d: want a larger id, not in the slot of id %d", i, m.ID, last, old.ID)
		}
		last = m.ID
		if _, ok := tab.Complete(Msg{ID: old.ID + size}); ok {
			t.Fatalf("Complete(id %d), never issued, shares id %d's slot: ok, want stale", old.ID+size, old.ID)
		}
		if req, ok := tab.Complete(m); !ok || req.Op != 2 {
			t.Fatalf("Complete(id %d) = %+v, %v; want op 2, ok", m.ID, req, ok)
		}
	}
	if req, ok := tab.Complete(old); !ok || req.Op != 1 || tab.Len() != 0 {
		t.Errorf("Complete(id %d) after %d laps = %+v, %v, Len %d; want op 1, ok, 0", old.ID, 10, req, ok, tab.Len())
	}
}

// Unknown ids, the zero id among them, match nothing and change nothing.
func TestOutstandingUnknownIDs(t *testing.T) {
	tab := NewOutstanding(2, 1)
	a, _ := tab.Add(Msg{Op: 1})
	for _, id := range []uint64{0, a.ID + 1, a.ID + 1<<40, ^uint64(0)} {
		if req, ok := tab.Complete(Msg{ID: id}); ok {
			t.Errorf("Complete(id %d) = %+v, ok; want not ok", id, req)
		}
	}
	if req, ok := tab.Complete(a); !ok || req.Op != 1 || tab.Len() != 0 {
		t.Errorf("Complete(id %d) = %+v, %v, Len %d; want op 1, ok, 0", a.ID, req, ok, tab.Len())
	}
}

// A full table refuses, whatever the ids, and takes one more per reply.
func TestOutstandingFull(t *testing.T) {
	tab := NewOutstanding(3, 7)
	var ms []Msg
	for range 3 {
		m, _ := tab.Add(Msg{})
		ms = append(ms, m)
	}
	if _, err := tab.Add(Msg{}); !errors.Is(err, ErrTableFull) || !tab.Full() {
		t.Fatalf("Add to a full table = %v, Full %v; want %v, true", err, tab.Full(), ErrTableFull)
	}
	tab.Complete(ms[1])
	if _, err := tab.Add(Msg{}); err != nil || !tab.Full() {
		t.Errorf("Add after a reply = %v, Full %v; want nil, true", err, tab.Full())
	}
}

// Adding and completing are what every request costs: neither allocates.
func TestOutstandingAllocs(t *testing.T) {
	tab := NewOutstanding(64, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		m, _ := tab.Add(Msg{Op: 1})
		tab.Complete(m)
	})
	if allocs != 0 {
		t.Errorf("Add and Complete: %v allocations, want 0", allocs)
	}
}
