package transporttest

import (
	"sync"

	"keepnet/servers/transport"
)

// Journal is a transport.Journal the test reads while the process's loop
// writes it: the store namespace of the protocol, in memory. It is also
// the framework's transport.Stored: each change is stored at once, or,
// while the test holds the journal, when it releases it.
type Journal[R transport.Record] struct {
	mu   sync.Mutex
	recs map[uint64]R
	// last numbers the changes; stored is the last one stored; held:
	// changes wait for Release.
	last, stored uint64
	held         bool
}

// NewJournal is an empty Journal.
func NewJournal[R transport.Record]() *Journal[R] { return &Journal[R]{recs: map[uint64]R{}} }

func (j *Journal[R]) Save(r R) { j.mu.Lock(); j.recs[r.SocketID()] = r; j.changed(); j.mu.Unlock() }

func (j *Journal[R]) Forget(id uint64) { j.mu.Lock(); delete(j.recs, id); j.changed(); j.mu.Unlock() }

// changed numbers a change. Lock held.
func (j *Journal[R]) changed() {
	j.last++
	if !j.held {
		j.stored = j.last
	}
}

// Last is transport.Stored's.
func (j *Journal[R]) Last() uint64 { j.mu.Lock(); defer j.mu.Unlock(); return j.last }

// Stored is transport.Stored's.
func (j *Journal[R]) Stored(n uint64) bool { j.mu.Lock(); defer j.mu.Unlock(); return n <= j.stored }

// Hold keeps the changes from now on unstored until Release: a slow store.
func (j *Journal[R]) Hold() { j.mu.Lock(); j.held = true; j.mu.Unlock() }

// Release stores every change so far and stops holding.
func (j *Journal[R]) Release() { j.mu.Lock(); j.held, j.stored = false, j.last; j.mu.Unlock() }

// Get is socket id's record, if it has one.
func (j *Journal[R]) Get(id uint64) (R, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.recs[id]
	return r, ok
}

var (
	_ transport.Journal[transport.Record] = (*Journal[transport.Record])(nil)
	_ transport.Stored                    = (*Journal[transport.Record])(nil)
)
