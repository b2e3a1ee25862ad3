package tcp

// ring is a bounded byte FIFO, the send and receive buffers. It allocates
// lazily and grows by doubling up to limit, so that a half-open or idle
// connection costs little; it never holds more than limit bytes.
type ring struct {
	buf   []byte
	head  int // index of the first byte in buf
	n     int // bytes held
	limit int
}

func (r *ring) Len() int  { return r.n }
func (r *ring) Free() int { return r.limit - r.n }

// grow makes room for need more bytes (within limit).
func (r *ring) grow(need int) {
	if r.n+need <= len(r.buf) {
		return
	}
	size := max(2*len(r.buf), r.n+need, 4096)
	size = min(size, r.limit)
	nb := make([]byte, size)
	r.Peek(0, nb[:r.n])
	r.buf, r.head = nb, 0
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
