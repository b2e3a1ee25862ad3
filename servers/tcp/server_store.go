package tcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"keepnet/servers/ops"
	"keepnet/servers/store"
)

// What the TCP server keeps in the store: one record per listening socket,
// so that a restarted tcp listens again before it serves (issue 5,
// deliverable 2; the restart protocol is in server.go). Connections are
// not kept: a crash of tcp loses them, as in the NewtOS paper.

// ListenerRecord is the stored form of one listening socket.
type ListenerRecord struct {
	ID      uint64   // the id SYSCALL named the socket by
	Local   ops.Addr // the address listened on (0.0.0.0: any) and its port
	Backlog int
}

// Record encoding, version 1, all big-endian:
//
//	0         1                 9              15          19
//	+---------+-----------------+--------------+-----------+
//	| version | id              | local        | backlog   |
//	| u8 = 1  | u64             | IPv4, port   | u32       |
//	+---------+-----------------+--------------+-----------+
const (
	recordVersion = 1
	recordSize    = 19
)

// StoreNS is the store namespace of tcp's listener records; a record's key
// is its socket id in decimal ([RecordKey]).
const StoreNS = "tcp"

// ErrBadRecord: a stored record tcp cannot read.
var ErrBadRecord = errors.New("tcp: bad listener record")

// RecordKey is the store key of socket id's record.
func RecordKey(id uint64) string { return strconv.FormatUint(id, 10) }

// MarshalBinary encodes r.
func (r ListenerRecord) MarshalBinary() ([]byte, error) {
	b := make([]byte, recordSize)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], r.ID)
	r.Local.Put4(b[9:])
	binary.BigEndian.PutUint32(b[15:], uint32(r.Backlog))
	return b, nil
}

// UnmarshalBinary decodes a record MarshalBinary made.
func (r *ListenerRecord) UnmarshalBinary(b []byte) error {
	if len(b) != recordSize || b[0] != recordVersion {
		return fmt.Errorf("%w: %d bytes", ErrBadRecord, len(b))
	}
	*r = ListenerRecord{
		ID:      binary.BigEndian.Uint64(b[1:]),
		Local:   ops.Get4(b[9:]),
		Backlog: int(binary.BigEndian.Uint32(b[15:])),
	}
	if r.Local.Port() == 0 || r.Backlog <= 0 || r.Backlog > maxBacklog {
		return fmt.Errorf("%w: socket %d on %v, backlog %d", ErrBadRecord, r.ID, r.Local, r.Backlog)
	}
	return nil
}

// ParseRecord decodes the stored pair key=value, checking that the key
// names the record's socket.
func ParseRecord(key string, value []byte) (ListenerRecord, error) {
	var r ListenerRecord
	if err := r.UnmarshalBinary(value); err != nil {
		return ListenerRecord{}, fmt.Errorf("key %q: %w", key, err)
	}
	if key != RecordKey(r.ID) {
		return ListenerRecord{}, fmt.Errorf("%w: key %q holds socket %d", ErrBadRecord, key, r.ID)
	}
	return r, nil
}

// Journal is where the server reports the listeners that survive a
// restart: Save when a socket starts listening, Forget when it closes.
type Journal interface {
	Save(ListenerRecord)
	Forget(id uint64)
}

// LoadListeners reads the listener records of a previous generation
// (store.Client.Restore, so the client replays them to a restarted store).
// Records it cannot read are deleted and reported.
func LoadListeners(ctx context.Context, c *store.Client) ([]ListenerRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	return store.RestoreRecords(ctx, c, StoreNS, ParseRecord)
}

// StoreJournal is the process's Journal: a store.Writer on namespace
// StoreNS, so that the loop never waits for the store.
type StoreJournal struct{ w *store.Writer }

// NewStoreJournal starts a journal writing through c.
func NewStoreJournal(c *store.Client) *StoreJournal {
	return &StoreJournal{w: store.NewWriter(c, StoreNS)}
}

// Save queues r to be written.
func (j *StoreJournal) Save(r ListenerRecord) {
	b, _ := r.MarshalBinary()
	j.w.Put(RecordKey(r.ID), b)
}

// Forget queues the deletion of socket id's record.
func (j *StoreJournal) Forget(id uint64) { j.w.Delete(RecordKey(id)) }

// Flush writes everything pending now; for tests.
func (j *StoreJournal) Flush() { j.w.Flush() }

// Close writes what is pending and stops the journal.
func (j *StoreJournal) Close() { j.w.Close() }

var _ Journal = (*StoreJournal)(nil)
