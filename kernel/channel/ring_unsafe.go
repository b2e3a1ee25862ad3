package channel

import (
	"sync/atomic"
	"unsafe"
)

// This file is the only one that touches shared memory through pointers:
// it turns region bytes into a ring view, and it holds the few atomic
// accessors of the control words. Everything else goes through them.

// Msg is exactly one 64-byte slot.
var (
	_ [unsafe.Sizeof(Msg{}) - MsgSize]byte
	_ [MsgSize - unsafe.Sizeof(Msg{})]byte
)

// ring is a view of one ring in a region. The slots are plain data written
// and read with ordinary stores and loads; the ordering comes from the index
// accessors below (see the package doc).
type ring struct {
	prod, cons, sleep *uint32
	slots             []Msg
	mask              uint32
}

// mapRing views the ring of capacity slots at byte offset off of region b.
// The region is mmap'ed (page aligned) or from alignedBytes, and off is a
// multiple of 64, so every word is naturally aligned.
func mapRing(b []byte, off, slots int) ring {
	_ = b[off+ringBytes(slots)-1] // bounds: the whole ring is inside b
	base := unsafe.Pointer(&b[off])
	return ring{
		prod:  (*uint32)(unsafe.Add(base, offProd)),
		cons:  (*uint32)(unsafe.Add(base, offCons)),
		sleep: (*uint32)(unsafe.Add(base, offSleep)),
		slots: unsafe.Slice((*Msg)(unsafe.Add(base, ctlBytes)), slots),
		mask:  uint32(slots - 1),
	}
}

// alignedBytes is n zeroed bytes aligned to 8, for in-process channels.
func alignedBytes(n int) []byte {
	w := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), n)
}

func (r *ring) loadProd() uint32   { return atomic.LoadUint32(r.prod) }
func (r *ring) storeProd(v uint32) { atomic.StoreUint32(r.prod, v) }
func (r *ring) loadCons() uint32   { return atomic.LoadUint32(r.cons) }
func (r *ring) storeCons(v uint32) { atomic.StoreUint32(r.cons, v) }

// The sleeping word: what a consumer about to block announces.
const (
	awake         = 0
	asleep        = 1 // wake me for any message
	asleepPatient = 2 // wake me for any but a lazy one (Endpoint.SendLazy)
)

// setSleeping announces that the consumer is about to block; patient: a
// lazy message may wait until it wakes for another.
func (r *ring) setSleeping(patient bool) {
	w := uint32(asleep)
	if patient {
		w = asleepPatient
	}
	atomic.StoreUint32(r.sleep, w)
}

// clearSleeping withdraws the announcement.
func (r *ring) clearSleeping() { atomic.StoreUint32(r.sleep, awake) }

// takeSleeping reports whether the consumer announced sleep, clearing the
// announcement so that only one sender wakes it. The plain load keeps the
// common case (nobody sleeps) free of a locked instruction.
func (r *ring) takeSleeping() bool {
	return atomic.LoadUint32(r.sleep) != awake && atomic.SwapUint32(r.sleep, awake) != awake
}

// takeImpatient is takeSleeping for a lazy message: only a consumer that
// asked to be woken for any message is.
func (r *ring) takeImpatient() bool {
	return atomic.LoadUint32(r.sleep) == asleep && atomic.CompareAndSwapUint32(r.sleep, asleep, awake)
}
