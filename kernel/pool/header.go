package pool

import "encoding/binary"

// The pool header fills the start of slot 0. The creator writes it once,
// before the descriptor leaves the process, and nobody writes it again, so
// plain reads suffice.
//
//	0  u64 magic     "KNPOOL\x00\x01"
//	8  u32 version
//	12 u32 id
//	16 u32 nbufs
//	20 u32 bufSize
//	24 u32 pageSize  2 MiB when backed by huge pages, else 4 KiB
const (
	poolMagic   = 0x4b4e504f4f4c0001
	poolVersion = 1
	headerSize  = 28
)

type header struct {
	magic                                 uint64
	version, id, nbufs, bufSize, pageSize uint32
}

func writeHeader(b []byte, h header) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.magic)
	le.PutUint32(b[8:], h.version)
	le.PutUint32(b[12:], h.id)
	le.PutUint32(b[16:], h.nbufs)
	le.PutUint32(b[20:], h.bufSize)
	le.PutUint32(b[24:], h.pageSize)
}

func readHeader(b []byte) header {
	le := binary.LittleEndian
	return header{
		magic:    le.Uint64(b[0:]),
		version:  le.Uint32(b[8:]),
		id:       le.Uint32(b[12:]),
		nbufs:    le.Uint32(b[16:]),
		bufSize:  le.Uint32(b[20:]),
		pageSize: le.Uint32(b[24:]),
	}
}
