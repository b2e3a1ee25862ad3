package transporttest

import (
	"sync"

	"keepnet/servers/transport"
)

// Journal is a transport.Journal the test reads while the process's loop
// writes it: the store namespace of the protocol, in memory.
type Journal[R transport.Record] struct {
	mu   sync.Mutex
	recs map[uint64]R
}

// NewJournal is an empty Journal.
func NewJournal[R transport.Record]() *Journal[R] { return &Journal[R]{recs: map[uint64]R{}} }

func (j *Journal[R]) Save(r R) { j.mu.Lock(); j.recs[r.SocketID()] = r; j.mu.Unlock() }

func (j *Journal[R]) Forget(id uint64) { j.mu.Lock(); delete(j.recs, id); j.mu.Unlock() }

// Get is socket id's record, if it has one.
func (j *Journal[R]) Get(id uint64) (R, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.recs[id]
	return r, ok
}

var _ transport.Journal[transport.Record] = (*Journal[transport.Record])(nil)
