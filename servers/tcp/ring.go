package tcp

// ring is a bounded byte FIFO, the send and receive buffers. It allocates
// lazily and grows by doubling up to limit, so that a half-open or idle
// connection costs little; it never holds more than limit bytes. With a
// budget (budget.go), its size beyond what it paid for is charged there
// and bounded by what the budget has left.
type ring struct {
	buf   []byte
	head  int // index of the first byte in buf
	n     int // bytes held
	limit int

	// m is where buf comes from (nil: the heap); off is where buf lies in
	// the kept memory (keep.go), -1 if it does not.
	m   bufMem
	off int

	b    *budget // nil: no budget (or released)
	paid int     // bytes charged to b: at least len(buf)
	// lingering: the last bytes of a closing application go in even past
	// the budget (Endpoint.WriteLingering).
	lingering bool
}

func (r *ring) Len() int { return r.n }

// Free is the room for more bytes: up to limit, and up to what the budget
// can still pay for.
func (r *ring) Free() int { return max(r.size()-r.n, 0) }

// size is how large the buffer may grow.
func (r *ring) size() int {
	if r.b == nil || r.lingering {
		return r.limit
	}
	return min(r.limit, r.paid+r.b.free())
}

// grow makes room for need more bytes (within size).
func (r *ring) grow(need int) {
	if r.n+need <= len(r.buf) {
		return
	}
	size := max(2*len(r.buf), r.n+need, ringFloor)
	size = min(size, max(r.size(), r.n+need))
	nb, off := r.mem().get(size)
	size = len(nb) // kept memory rounds up to a whole block
	if r.b != nil && size > r.paid {
		r.b.used += size - r.paid // within free() unless lingering (or rounded up)
		r.paid = size
	}
	r.Peek(0, nb[:r.n])
	r.drop()
	r.buf, r.off, r.head = nb, off, 0
}

func (r *ring) mem() bufMem {
	if r.m == nil {
		return heapMem{}
	}
	return r.m
}

// drop gives buf back to where it came from; the ring is empty of memory.
func (r *ring) drop() {
	if r.buf != nil {
		r.mem().put(r.buf, r.off)
	}
	r.buf, r.off = nil, -1
}

// shrink drops an empty buffer grown past its floor when the budget is
// pressed, giving back what it paid beyond the floor.
func (r *ring) shrink() {
	if r.b == nil || r.n > 0 || r.paid <= ringFloor || !r.b.pressed() {
		return
	}
	r.b.give(r.paid - ringFloor)
	r.drop()
	r.paid = ringFloor
}

// release gives back everything r charged; the bytes stay readable.
func (r *ring) release() {
	if r.b != nil {
		r.b.give(r.paid)
		r.b, r.paid = nil, 0
	}
}

// Write appends as much of p as fits and returns how much that was.
func (r *ring) Write(p []byte) int {
	n := min(len(p), r.Free())
	if n == 0 {
		return 0
	}
	r.grow(n)
	tail := (r.head + r.n) % len(r.buf)
	c := copy(r.buf[tail:], p[:n])
	copy(r.buf, p[c:n])
	r.n += n
	return n
}

// Peek copies the bytes from offset off into p without consuming them and
// returns how many it copied.
func (r *ring) Peek(off int, p []byte) int {
	if off >= r.n {
		return 0
	}
	n := min(len(p), r.n-off)
	start := (r.head + off) % max(len(r.buf), 1)
	c := copy(p[:n], r.buf[start:])
	copy(p[c:n], r.buf)
	return n
}

// Discard drops the first n bytes (n <= Len).
func (r *ring) Discard(n int) {
	r.n -= n
	if r.n == 0 {
		r.head = 0
		r.shrink()
		return
	}
	r.head = (r.head + n) % len(r.buf)
}

// Read moves bytes into p.
func (r *ring) Read(p []byte) int {
	n := r.Peek(0, p)
	r.Discard(n)
	return n
}
