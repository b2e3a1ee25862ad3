package tcp

import "math/bits"

// bufMem is where connection buffers come from: the Go heap, or the kept
// memory (keep.go) that outlives the process. get returns a buffer of at
// least size bytes and where it lies (off < 0: not in kept memory); put
// gives one back.
type bufMem interface {
	get(size int) (b []byte, off int)
	put(b []byte, off int)
}

// heapMem is the Go heap: buffers die with the process.
type heapMem struct{}

func (heapMem) get(size int) ([]byte, int) { return make([]byte, size), -1 }
func (heapMem) put([]byte, int)            {}

// buddy is a binary buddy allocator over the data area of the kept memory:
// blocks of pageSize << order bytes, aligned to their size. Its free lists
// live in the process, never in the shared memory: a restarted tcp rebuilds
// them from the buffers its valid records name (claim), so that nothing a
// crash left half-written can mislead it.
type buddy struct {
	mem      []byte         // the data area
	maxOrder int            // largest block: pageSize << maxOrder
	free     []map[int]bool // per order, the free blocks by offset
	pending  []buddyBlock   // freed since the last commit (settle)
}

type buddyBlock struct{ off, order int }

const pageSize = 4096

// newBuddy manages mem (a multiple of the largest block, pageSize <<
// maxOrder), all free.
func newBuddy(mem []byte, maxOrder int) *buddy {
	b := &buddy{mem: mem, maxOrder: maxOrder, free: make([]map[int]bool, maxOrder+1)}
	for i := range b.free {
		b.free[i] = map[int]bool{}
	}
	top := pageSize << maxOrder
	for off := 0; off+top <= len(mem); off += top {
		b.free[maxOrder][off] = true
	}
	return b
}

// orderOf is the order of the smallest block holding size bytes, or -1 if
// none is large enough.
func (b *buddy) orderOf(size int) int {
	if size <= pageSize {
		return 0
	}
	o := bits.Len(uint((size - 1) / pageSize))
	if o > b.maxOrder {
		return -1
	}
	return o
}

// get is bufMem's: a block from the kept memory, or the heap's when none is
// free (that buffer, and so its connection, is not kept: keep.go).
func (b *buddy) get(size int) ([]byte, int) {
	o := b.orderOf(size)
	if o < 0 {
		return heapMem{}.get(size)
	}
	k := o
	for k <= b.maxOrder && len(b.free[k]) == 0 {
		k++
	}
	if k > b.maxOrder {
		return heapMem{}.get(size)
	}
	var off int
	for off = range b.free[k] {
		break
	}
	delete(b.free[k], off)
	for ; k > o; k-- { // split, keeping the upper halves free
		b.free[k-1][off+pageSize<<(k-1)] = true
	}
	n := pageSize << o
	return b.mem[off : off+n : off+n], off
}

// put is bufMem's. The block becomes free only at the next settle, after
// the commit that stops naming it: until then a record written before may
// still name it, and the bytes must stay as they were.
func (b *buddy) put(buf []byte, off int) {
	if off < 0 {
		return
	}
	b.pending = append(b.pending, buddyBlock{off, b.orderOf(cap(buf))})
}

// settle frees the blocks put since the last commit.
func (b *buddy) settle() {
	for _, blk := range b.pending {
		b.release(blk.off, blk.order)
	}
	b.pending = b.pending[:0]
}

// release frees a block, merging it with its buddy while that is free too.
func (b *buddy) release(off, o int) {
	for o < b.maxOrder {
		buddyOff := off ^ pageSize<<o
		if !b.free[o][buddyOff] {
			break
		}
		delete(b.free[o], buddyOff)
		off = min(off, buddyOff)
		o++
	}
	b.free[o][off] = true
}

// claim marks the block at off of size bytes used, as a restored record
// names it. It reports false if the block is not a valid block or overlaps
// one claimed before.
func (b *buddy) claim(off, size int) bool {
	o := b.orderOf(size)
	if o < 0 || size != pageSize<<o || off < 0 || off%size != 0 || off+size > len(b.mem) {
		return false
	}
	for k := o; k <= b.maxOrder; k++ {
		top := off &^ (pageSize<<k - 1)
		if !b.free[k][top] {
			continue
		}
		delete(b.free[k], top)
		for ; k > o; k-- { // split down to the block, freeing the halves beside it
			half := pageSize << (k - 1)
			if off&half != 0 {
				b.free[k-1][top] = true
				top += half
			} else {
				b.free[k-1][top+half] = true
			}
		}
		return true
	}
	return false
}

// freeBytes is what is free now (for tests and stats).
func (b *buddy) freeBytes() int {
	n := 0
	for o, m := range b.free {
		n += len(m) * pageSize << o
	}
	return n
}
