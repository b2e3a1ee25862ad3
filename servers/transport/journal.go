package transport

import (
	"context"
	"encoding"
	"fmt"
	"strconv"
	"time"

	"keepnet/servers/store"
)

// What a transport keeps in the store: one record per socket that must
// survive a restart, in the protocol's namespace, under its socket id in
// decimal (the package doc's restart protocol).

const restoreTimeout = 5 * time.Second

// Record is a stored socket record: it names its socket.
type Record interface {
	encoding.BinaryMarshaler
	SocketID() uint64
}

// Journal is where a core reports the sockets that survive a restart: Save
// when one is made or changes, Forget when it closes.
type Journal[R Record] interface {
	Save(R)
	Forget(id uint64)
}

// RecordKey is the store key of socket id's record.
func RecordKey(id uint64) string { return strconv.FormatUint(id, 10) }

// ParseRecord decodes the stored pair key=value into a new R, checking
// that the key names the record's socket; errors wrap bad.
func ParseRecord[R Record, P interface {
	*R
	encoding.BinaryUnmarshaler
}](key string, value []byte, bad error) (R, error) {
	var r R
	if err := P(&r).UnmarshalBinary(value); err != nil {
		return r, fmt.Errorf("key %q: %w", key, err)
	}
	if id := r.SocketID(); key != RecordKey(id) {
		var zero R
		return zero, fmt.Errorf("%w: key %q holds socket %d", bad, key, id)
	}
	return r, nil
}

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

// Flush writes everything pending now; for tests.
func (j *StoreJournal[R]) Flush() { j.w.Flush() }

// Close writes what is pending and stops the journal.
func (j *StoreJournal[R]) Close() { j.w.Close() }
