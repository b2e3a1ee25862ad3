package transport

import (
	"context"
	"time"

	"keepnet/servers/store"
)

// What a transport keeps in the store: one record per socket that must
// survive a restart, in the protocol's namespace, under its socket id in
// decimal (the package doc's restart protocol).

const restoreTimeout = 5 * time.Second

// LoadRecords reads the records of a previous generation from namespace ns
// (store.Client.Restore, so the client replays them to a restarted store).
// Records parse cannot read are deleted and reported.
func LoadRecords[R any](ctx context.Context, c *store.Client, ns string, parse func(string, []byte) (R, error)) ([]R, error) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	return store.RestoreRecords(ctx, c, ns, parse)
}

// StoreJournal is the process's Journal: a store.Writer on the protocol's
// namespace, so that the loop never waits for the store.
type StoreJournal[R Record] struct{ w *store.Writer }

// NewStoreJournal starts a journal writing to namespace ns through c.
func NewStoreJournal[R Record](c *store.Client, ns string) *StoreJournal[R] {
	return &StoreJournal[R]{w: store.NewWriter(c, ns)}
}

// Save queues r to be written.
func (j *StoreJournal[R]) Save(r R) {
	b, _ := r.MarshalBinary()
	j.w.Put(RecordKey(r.SocketID()), b)
}

// Forget queues the deletion of socket id's record.
func (j *StoreJournal[R]) Forget(id uint64) { j.w.Delete(RecordKey(id)) }

// Last is the number of the latest change queued (Stored).
func (j *StoreJournal[R]) Last() uint64 { return j.w.Last() }

// Stored reports whether change n and all before it are in the store.
func (j *StoreJournal[R]) Stored(n uint64) bool { return j.w.Stored(n) }

// Flush writes everything pending now; for tests.
func (j *StoreJournal[R]) Flush() { j.w.Flush() }

// Close writes what is pending and stops the journal.
func (j *StoreJournal[R]) Close() { j.w.Close() }
