package pf

import (
	"encoding/binary"
	"hash/crc32"
)

// # The state table in kept memory
//
// The states live in a []byte given to New: in the pf server, memory init
// keeps for pf across its restarts (kernel/keep), as tcp keeps its
// connections (servers/tcp/keep.go). The layout is
//
//	header (64 bytes): magic, version, slot count, nonce, CRC-32C of these
//	slot 0 .. slot MaxStates-1 (320 bytes each): two copies of a record
//
// A copy is a CRC-32C over the set-up's nonce and the rest of the copy,
// the record's kind (a state, or free) and version, a stamp (a counter
// that only grows, across the whole table), and the record: the flow's
// key, both sides' TCP tracking, times, the creating rule and the packet
// and byte counts. Every change to a state is written at once, before the
// verdict that made it is returned ("write-through"), to the slot's older
// copy, which is then sealed; the newer copy is left alone. A crash in the
// middle of a write tears at most the copy being written, and a restarted
// pf adopts the newest copy whose checksum holds — one packet behind at
// worst, which the tracking's slack absorbs. A slot whose copies both fail
// (memory scribbled on), or whose record breaks the invariants (check),
// is dropped and counted (Counters.Discarded): its flow's next packet is
// judged by the rules again, never by a state that may be wrong. The
// nonce, drawn when the memory is first set up, makes records of another
// set-up (another layout, stale bytes) fail their checksums.
//
// Version 2 of the layout holds 16-byte addresses (IPv4 ones mapped, and
// a family flag); a pf of version 2 set up over version 1's memory
// (which only an upgrade of pf without a reboot could give it: the
// memory's size came from the same binary's init) finds a header it does
// not take and starts with an empty table, as on a first start. Version
// 1's slots were smaller, so its records are not read: converting them
// would save the flows of an upgrade, not of a crash, and cost a second
// decoder kept for one restart.
//
// The Go side keeps its own copy of each state (Filter.states) and the
// index; both are rebuilt from the records by New. Rules are not here:
// they come from a file or the store.

// Kept memory layout.
const (
	memMagic   = "keepnet pf\x00\x00"
	memVersion = 2

	headerBytes = 64
	slotBytes   = 320
	copyBytes   = slotBytes / 2
	copyHeader  = 16

	hdrVersion = 12
	hdrSlots   = 16
	hdrNonce   = 24
	hdrCRC     = 32 // over the bytes before it

	// A copy's header: the checksum first, so that it covers the rest
	// of the copy in one piece.
	cpSum     = 0
	cpKind    = 4
	cpVersion = 5
	cpStamp   = 8

	recordVersion = 2
	kindFree      = 0
	kindState     = 1
)

// MemBytes is the size of kept memory for maxStates states.
func MemBytes(maxStates int) int { return headerBytes + maxStates*slotBytes }

// keptAlign is what kept memory's size must be a multiple of (a page,
// kernel/keep; 64 KiB covers every page size Linux has).
const keptAlign = 64 << 10

// KeptBytes is MemBytes(maxStates) rounded up to what kernel/keep can
// make: the size of the state table's kept memory.
func KeptBytes(maxStates int) int {
	return (MemBytes(maxStates) + keptAlign - 1) / keptAlign * keptAlign
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keeper writes states into kept memory and reads them back.
type keeper struct {
	mem   []byte
	slots int
	// nonceSum is the CRC-32C of the nonce, where every record's
	// checksum starts.
	nonceSum uint32
	stamp    uint64  // the last stamp written
	next     []uint8 // per slot, the copy the next write goes to
}

func (k *keeper) copyOf(slot, c int) []byte {
	off := headerBytes + slot*slotBytes + c*copyBytes
	return k.mem[off : off+copyBytes : off+copyBytes]
}

// validHeader reports whether mem holds a set-up header for slots slots.
func (k *keeper) validHeader() bool {
	h := k.mem
	le := binary.LittleEndian
	return string(h[:hdrVersion]) == memMagic && le.Uint32(h[hdrCRC:]) == crc32.Checksum(h[:hdrCRC], castagnoli) &&
		le.Uint32(h[hdrVersion:]) == memVersion && int(le.Uint32(h[hdrSlots:])) == k.slots
}

// setUp writes a fresh header with nonce and clears the slots: no states.
func (k *keeper) setUp(nonce uint64) {
	h := k.mem
	le := binary.LittleEndian
	clear(h[:MemBytes(k.slots)])
	copy(h, memMagic)
	le.PutUint32(h[hdrVersion:], memVersion)
	le.PutUint32(h[hdrSlots:], uint32(k.slots))
	le.PutUint64(h[hdrNonce:], nonce)
	le.PutUint32(h[hdrCRC:], crc32.Checksum(h[:hdrCRC], castagnoli))
	k.loadNonce()
}

func (k *keeper) loadNonce() {
	k.nonceSum = crc32.Update(0, castagnoli, k.mem[hdrNonce:hdrNonce+8])
}

// save writes st as slot's record.
func (k *keeper) save(slot int, st *state) {
	c := k.copyOf(slot, int(k.next[slot]))
	encodeState(c[copyHeader:], st)
	k.seal(slot, c, kindState)
}

// free writes slot's record free.
func (k *keeper) free(slot int) {
	c := k.copyOf(slot, int(k.next[slot]))
	clear(c[copyHeader:])
	k.seal(slot, c, kindFree)
}

// seal stamps and checksums copy c of slot, and makes the other copy the
// next to be written.
func (k *keeper) seal(slot int, c []byte, kind uint8) {
	k.stamp++
	binary.LittleEndian.PutUint64(c[cpStamp:], k.stamp)
	c[cpKind], c[cpVersion] = kind, recordVersion
	binary.LittleEndian.PutUint32(c[cpSum:], k.sum(c))
	k.next[slot] ^= 1
}

// sum is the CRC-32C of the nonce and copy c past its checksum field.
func (k *keeper) sum(c []byte) uint32 {
	return crc32.Update(k.nonceSum, castagnoli, c[cpSum+4:])
}

// read returns copy c's stamp and kind if its checksum holds.
func (k *keeper) read(c []byte) (stamp uint64, kind uint8, ok bool) {
	stamp = binary.LittleEndian.Uint64(c[cpStamp:])
	if stamp == 0 || c[cpVersion] != recordVersion || binary.LittleEndian.Uint32(c[cpSum:]) != k.sum(c) {
		return 0, 0, false
	}
	return stamp, c[cpKind], true
}

// slotRecord is what adoption found in a slot.
type slotRecord uint8

const (
	slotEmpty   slotRecord = iota // never written, or written free
	slotState                     // a valid state, decoded
	slotCorrupt                   // written, but no copy is valid
)

// adopt reads slot: the newest valid copy, decoded into st. It points the
// slot's next write at the other copy and raises k.stamp to every valid
// stamp it saw, so that new writes are newer than any valid copy.
func (k *keeper) adopt(slot int, st *state) (slotRecord, uint64) {
	best, bestStamp, written := -1, uint64(0), false
	for c := range 2 {
		cp := k.copyOf(slot, c)
		written = written || binary.LittleEndian.Uint64(cp[cpStamp:]) != 0
		stamp, _, ok := k.read(cp)
		if !ok {
			continue
		}
		k.stamp = max(k.stamp, stamp)
		if stamp > bestStamp {
			best, bestStamp = c, stamp
		}
	}
	switch {
	case best < 0 && written:
		return slotCorrupt, 0
	case best < 0:
		return slotEmpty, 0
	}
	k.next[slot] = uint8(best ^ 1)
	cp := k.copyOf(slot, best)
	if cp[cpKind] != kindState {
		return slotEmpty, 0
	}
	if !decodeState(cp[copyHeader:], st) {
		return slotCorrupt, 0
	}
	return slotState, bestStamp
}

// Record layout (little-endian), after the copy header.
const (
	recLo      = 0  // 16 bytes, big-endian as on the wire
	recHi      = 16 // 16 bytes
	recLoPort  = 32
	recHiPort  = 34
	recProto   = 36
	recLoDir   = 37
	recFlags   = 38
	recPeers   = 40 // two of peerBytes
	peerBytes  = 16
	recCreated = 72
	recLast    = 80
	recRule    = 88
	recPackets = 96  // two uint64
	recBytes   = 112 // two uint64
	recEnd     = 128

	flagInitLo    = 1 << 0
	flagICMPError = 1 << 1
	flagIPv6      = 1 << 2
)

// The record must fit its copy.
var _ = [copyBytes - copyHeader - recEnd]struct{}{}

func encodeState(b []byte, st *state) {
	le := binary.LittleEndian
	k := &st.key
	putAddr(b[recLo:], k.lo)
	putAddr(b[recHi:], k.hi)
	le.PutUint16(b[recLoPort:], k.loPort)
	le.PutUint16(b[recHiPort:], k.hiPort)
	b[recProto], b[recLoDir] = k.proto, uint8(k.loDir)
	var flags uint8
	if st.initLo {
		flags |= flagInitLo
	}
	if st.icmpError {
		flags |= flagICMPError
	}
	if k.v6 {
		flags |= flagIPv6
	}
	b[recFlags] = flags
	for i := range st.peers {
		encodePeer(b[recPeers+i*peerBytes:], &st.peers[i])
		le.PutUint64(b[recPackets+8*i:], st.packets[i])
		le.PutUint64(b[recBytes+8*i:], st.bytes[i])
	}
	le.PutUint64(b[recCreated:], uint64(st.created))
	le.PutUint64(b[recLast:], uint64(st.last))
	le.PutUint32(b[recRule:], uint32(st.rule))
}

func putAddr(b []byte, a addr) {
	binary.BigEndian.PutUint64(b, a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
}

func encodePeer(b []byte, pe *peer) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], pe.end)
	le.PutUint32(b[4:], pe.limit)
	le.PutUint32(b[8:], pe.maxWin)
	b[12], b[13], b[14] = uint8(pe.state), pe.scale, uint8(pe.offered)
}

// decodeState reads a record into st and reports whether it makes sense:
// a checksum protects against torn and scribbled bytes, this against a
// record that was written wrong.
func decodeState(b []byte, st *state) bool {
	le := binary.LittleEndian
	*st = state{key: flowKey{
		lo: addr16(b[recLo:]), hi: addr16(b[recHi:]),
		loPort: le.Uint16(b[recLoPort:]), hiPort: le.Uint16(b[recHiPort:]),
		proto: b[recProto], loDir: Dir(b[recLoDir]), v6: b[recFlags]&flagIPv6 != 0,
	}}
	st.initLo = b[recFlags]&flagInitLo != 0
	st.icmpError = b[recFlags]&flagICMPError != 0
	for i := range st.peers {
		pe := &st.peers[i]
		p := b[recPeers+i*peerBytes:]
		pe.end, pe.limit, pe.maxWin = le.Uint32(p[0:]), le.Uint32(p[4:]), le.Uint32(p[8:])
		pe.state, pe.scale, pe.offered = peerState(p[12]), p[13], int8(p[14])
		st.packets[i] = le.Uint64(b[recPackets+8*i:])
		st.bytes[i] = le.Uint64(b[recBytes+8*i:])
	}
	st.created, st.last = int64(le.Uint64(b[recCreated:])), int64(le.Uint64(b[recLast:]))
	st.rule = int32(le.Uint32(b[recRule:]))
	return st.check()
}

// check reports whether st keeps the invariants every state has.
func (st *state) check() bool {
	k := &st.key
	if k.loDir != In && k.loDir != Out || k.hi.less(k.lo) || st.created > st.last || st.rule < 0 {
		return false
	}
	if !k.v6 && (!k.lo.is4() || !k.hi.is4()) {
		return false // an IPv4 flow's addresses are mapped ones
	}
	for _, pe := range st.peers {
		if pe.state >= peerStateEnd || pe.scale > maxWindowScale || pe.offered < -1 || pe.offered > maxWindowScale {
			return false
		}
	}
	return st.peers[initiator].state != peerNone
}
