package udp

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"keepnet/servers/ops"
)

// Record is what the store keeps of one socket so that a restarted udp can
// recreate it (the package doc's restart protocol).
type Record struct {
	ID    uint64   // the id SYSCALL named the socket by
	Local ops.Addr // bound address; port 0: unbound
	Peer  ops.Addr // connected peer; 0: none
}

// Record encoding, version 1, all big-endian:
//
//	0         1                 9              15             21
//	+---------+-----------------+--------------+--------------+
//	| version | id              | local        | peer         |
//	| u8 = 1  | u64             | IPv4, port   | IPv4, port   |
//	+---------+-----------------+--------------+--------------+
const (
	recordVersion = 1
	recordSize    = 21
)

// StoreNS is the store namespace of udp's records; the key of a record is
// its socket id in decimal ([RecordKey]).
const StoreNS = "udp"

// ErrBadRecord: a stored record udp cannot read.
var ErrBadRecord = errors.New("udp: bad socket record")

// RecordKey is the store key of socket id's record.
func RecordKey(id uint64) string { return strconv.FormatUint(id, 10) }

// MarshalBinary encodes r.
func (r Record) MarshalBinary() ([]byte, error) {
	b := make([]byte, recordSize)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], r.ID)
	putAddr(b[9:], r.Local)
	putAddr(b[15:], r.Peer)
	return b, nil
}

// UnmarshalBinary decodes a record MarshalBinary made.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) != recordSize || b[0] != recordVersion {
		return fmt.Errorf("%w: %d bytes, version %d", ErrBadRecord, len(b), firstByte(b))
	}
	*r = Record{ID: binary.BigEndian.Uint64(b[1:]), Local: getAddr(b[9:]), Peer: getAddr(b[15:])}
	return nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// An Addr is 6 bytes: the IPv4 address, then the port (ops.Addr.Put4).
func putAddr(b []byte, a ops.Addr) { a.Put4(b) }

func getAddr(b []byte) ops.Addr { return ops.Get4(b) }

// ParseRecord decodes the stored pair key=value, checking that the key
// names the record's socket.
func ParseRecord(key string, value []byte) (Record, error) {
	var r Record
	if err := r.UnmarshalBinary(value); err != nil {
		return Record{}, fmt.Errorf("key %q: %w", key, err)
	}
	if key != RecordKey(r.ID) {
		return Record{}, fmt.Errorf("%w: key %q holds socket %d", ErrBadRecord, key, r.ID)
	}
	return r, nil
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
