package tcp

import (
	"errors"
	"fmt"

	"keepnet/servers/ops"
	"keepnet/servers/transport"
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

// Record encoding (transport.RecordWriter), version 2 (version 1 had
// 6-byte IPv4 addresses):
//
//	0         1                 9                       27          31
//	+---------+-----------------+-----------------------+-----------+
//	| version | id              | local                 | backlog   |
//	| u8 = 2  | u64             | address (16), port    | u32       |
//	+---------+-----------------+-----------------------+-----------+
const recordVersion = 2

// ErrBadRecord: a stored record tcp cannot read.
var ErrBadRecord = errors.New("tcp: bad listener record")

// StoreNS is the store namespace of tcp's listener records, keyed by
// socket id (transport.RecordKey).
const StoreNS = "tcp"

// MarshalBinary encodes r.
func (r ListenerRecord) MarshalBinary() ([]byte, error) {
	return transport.NewRecordWriter(recordVersion, r.ID).Addr(r.Local).Uint32(uint32(r.Backlog)), nil
}

// UnmarshalBinary decodes a record MarshalBinary made, and checks it.
func (r *ListenerRecord) UnmarshalBinary(b []byte) error {
	d := transport.NewRecordReader(b)
	*r = ListenerRecord{ID: d.ID(), Local: d.Addr(), Backlog: int(d.Uint32())}
	if err := d.Err(recordVersion, ErrBadRecord); err != nil {
		return err
	}
	if r.Local.Port() == 0 || r.Backlog <= 0 || r.Backlog > maxBacklog {
		return fmt.Errorf("%w: socket %d on %v, backlog %d", ErrBadRecord, r.ID, r.Local, r.Backlog)
	}
	return nil
}

// SocketID names the record's socket (transport.Record).
func (r ListenerRecord) SocketID() uint64 { return r.ID }

// ParseRecord decodes the stored pair key=value, checking that the key
// names the record's socket.
func ParseRecord(key string, value []byte) (ListenerRecord, error) {
	return transport.ParseRecord[ListenerRecord](key, value, ErrBadRecord)
}

// Journal is where the server reports the listeners that survive a
// restart: Save when a socket starts listening, Forget when it closes.
type Journal = transport.Journal[ListenerRecord]
