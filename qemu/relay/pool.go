package relay

// bufPool recycles the buffers frames wait in while an Impairer holds them,
// so a steady stream of delayed frames allocates nothing. It belongs to one
// direction's goroutine and has no lock.
type bufPool struct {
	free [][]byte
}

const (
	poolBufSize = 2048 // a 1500-byte-MTU Ethernet frame with room to spare
	poolKeep    = 4096 // free buffers kept after a burst; the rest go to the GC
)

// get returns a buffer of n bytes.
func (p *bufPool) get(n int) []byte {
	if n > poolBufSize {
		return make([]byte, n)
	}
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		return b[:n]
	}
	return make([]byte, n, poolBufSize)
}

// put gives b back; b must not be used afterwards.
func (p *bufPool) put(b []byte) {
	if cap(b) == poolBufSize && len(p.free) < poolKeep {
		p.free = append(p.free, b)
	}
}
