package udp

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"keepnet/servers/ops"
	"keepnet/servers/transport"
)

// Record is what the store keeps of one socket so that a restarted udp can
// recreate it (the package doc's restart protocol).
type Record struct {
	ID    uint64   // the id SYSCALL named the socket by
	Local ops.Addr // bound address; port 0: unbound
	Peer  ops.Addr // connected peer; 0: none
}

// Record encoding (transport.RecordWriter), version 2 (version 1 had
// 6-byte IPv4 addresses):
//
//	0         1                 9                       27                      45
//	+---------+-----------------+-----------------------+-----------------------+
//	| version | id              | local                 | peer                  |
//	| u8 = 2  | u64             | address (16), port    | address (16), port    |
//	+---------+-----------------+-----------------------+-----------------------+
const recordVersion = 2

// StoreNS is the store namespace of udp's records, keyed by socket id
// (transport.RecordKey).
const StoreNS = "udp"

// ErrBadRecord: a stored record udp cannot read.
var ErrBadRecord = errors.New("udp: bad socket record")

// MarshalBinary encodes r.
func (r Record) MarshalBinary() ([]byte, error) {
	return transport.NewRecordWriter(recordVersion, r.ID).Addr(r.Local).Addr(r.Peer), nil
}

// UnmarshalBinary decodes a record MarshalBinary made.
func (r *Record) UnmarshalBinary(b []byte) error {
	d := transport.NewRecordReader(b)
	*r = Record{ID: d.ID(), Local: d.Addr(), Peer: d.Addr()}
	return d.Err(recordVersion, ErrBadRecord)
}

// SocketID names the record's socket (transport.Record).
func (r Record) SocketID() uint64 { return r.ID }

// ParseRecord decodes the stored pair key=value, checking that the key
// names the record's socket.
func ParseRecord(key string, value []byte) (Record, error) {
	return transport.ParseRecord[Record](key, value, ErrBadRecord)
}

// Records returns the record of every open socket, by id.
func (t *Table) Records() []Record {
	rs := make([]Record, 0, len(t.socks))
	for _, s := range t.socks {
		rs = append(rs, Record{ID: s.id, Local: s.local, Peer: s.peer})
	}
	slices.SortFunc(rs, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	return rs
}

// Restore recreates sockets from their records, as a restarted udp does
// before it serves: same ids, bindings and peers, empty queues. Records
// are not saved again (the store has them). A record that conflicts with
// a socket already there (same id, or same port) is skipped, reported, and
// forgotten in the Journal.
func (t *Table) Restore(rs []Record) (restored int, errs []error) {
	for _, r := range rs {
		var err error
		switch p := r.Local.Port(); {
		case t.socks[r.ID] != nil:
			err = fmt.Errorf("%w: socket %d twice", ErrBadRecord, r.ID)
		case p != 0 && t.ports[p] != nil:
			err = fmt.Errorf("%w: socket %d and %d both bound to port %d", ErrBadRecord, t.ports[p].id, r.ID, p)
		case p == 0 && !r.Peer.IsZero():
			err = fmt.Errorf("%w: socket %d connected but not bound", ErrBadRecord, r.ID)
		}
		if err != nil {
			errs = append(errs, err)
			if t.socks[r.ID] == nil && t.journal != nil {
				t.journal.Forget(r.ID)
			}
			continue
		}
		s := &socket{id: r.ID, local: r.Local, peer: r.Peer}
		t.socks[r.ID] = s
		if s.bound() {
			t.ports[r.Local.Port()] = s
		}
		restored++
	}
	return restored, errs
}
