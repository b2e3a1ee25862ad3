package transport

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"strconv"

	"keepnet/servers/ops"
)

// A stored record, all big-endian: a version byte, the socket id (u64),
// then the transport's fields, an address as 18 bytes (16 of address, IPv4
// mapped, and the port: ops.Addr.Put). Each
// transport draws its layout in its own doc; [RecordWriter] and
// [RecordReader] write and read the fields, so that an address is stored
// the same way everywhere.

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

// RecordWriter builds a record: NewRecordWriter, then the fields in
// order.
type RecordWriter []byte

// NewRecordWriter starts a record of the given version for socket id.
func NewRecordWriter(version uint8, id uint64) RecordWriter {
	return binary.BigEndian.AppendUint64(RecordWriter{version}, id)
}

// Addr appends an address (ops.Addr.Put).
func (w RecordWriter) Addr(a ops.Addr) RecordWriter {
	var b [ops.StoredSize]byte
	a.Put(b[:])
	return append(w, b[:]...)
}

// Uint32 appends v.
func (w RecordWriter) Uint32(v uint32) RecordWriter { return binary.BigEndian.AppendUint32(w, v) }

// RecordReader reads a record's fields in the order they were written. A
// field past the end reads as zero; Err says whether the record was whole.
type RecordReader struct {
	b       []byte
	version int // -1: none
	short   bool
}

// NewRecordReader starts reading the record b.
func NewRecordReader(b []byte) *RecordReader {
	r := &RecordReader{b: b, version: -1}
	if len(b) > 0 {
		r.version, r.b = int(b[0]), b[1:]
	}
	return r
}

func (r *RecordReader) take(n int) []byte {
	if len(r.b) < n {
		r.short, r.b = true, nil
		return make([]byte, n)
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

// ID reads the socket id.
func (r *RecordReader) ID() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

// Addr reads an address.
func (r *RecordReader) Addr() ops.Addr { return ops.Get(r.take(ops.StoredSize)) }

// Uint32 reads a uint32.
func (r *RecordReader) Uint32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }

// Err is nil if the record was of version and every byte was read: none
// missing, none left over; else an error wrapping bad.
func (r *RecordReader) Err(version uint8, bad error) error {
	if r.version != int(version) || r.short || len(r.b) > 0 {
		return fmt.Errorf("%w: version %d, %d bytes left, short %v", bad, r.version, len(r.b), r.short)
	}
	return nil
}
