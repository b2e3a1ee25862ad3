package transport

import (
	"errors"
	"net/netip"

	"keepnet/kernel/pool"
	"keepnet/servers/ops"
)

// The Output of every core: segments go to IP with OpOutput in a buffer of
// the out pool, which comes back with IP's reply; without an IP they wait
// in toIP for the next generation.

// ErrNoBuffer: a segment was dropped for want of a buffer of the out pool
// (or of room in the queue of held segments).
var ErrNoBuffer = errors.New("transport: no buffer for the segment")

// Buffer is the Output's: room in a buffer of the out pool. None while
// segments are held for want of one: the core builds its segment aside and
// Send holds it behind them, so that segments reach IP in order.
func (s *Server) Buffer(n int) []byte {
	if n > s.out.BufSize() || len(s.overflow) > 0 {
		return nil
	}
	if !s.lent.IsZero() {
		s.out.MustFree(s.lent) // lent and never sent
	}
	ref, ok := s.out.Alloc()
	if !ok {
		return nil
	}
	b, _ := s.out.Bytes(pool.Ref{Pool: ref.Pool, Off: ref.Off, Len: uint32(n)})
	s.lent, s.lentBuf = ref, b
	return b
}

// Send is the Output's: a segment built in the lent buffer goes as it is;
// any other is copied into a buffer, or held in order until one is free.
func (s *Server) Send(seg []byte, src, dst netip.Addr, o Offload) error {
	if ref := s.lent; !ref.IsZero() && len(seg) > 0 && s.isLent(seg) {
		s.lent, s.lentBuf = pool.Ref{}, nil
		ref.Len = uint32(len(seg))
		if s.output(ref, src, dst, o) {
			return nil
		}
		// No room towards IP: the segment is held as any other, its
		// buffer freed once it is copied aside.
		defer s.out.MustFree(ref)
	} else if len(s.overflow) == 0 && s.copyOut(seg, src, dst, o) {
		return nil
	}
	if len(s.overflow) >= maxOverflow || s.overflowBytes+len(seg) > maxOverflowBytes {
		s.outDrops++
		return ErrNoBuffer
	}
	var b []byte
	if n := len(s.spare); n > 0 {
		b, s.spare = s.spare[n-1][:0], s.spare[:n-1]
	}
	s.overflow = append(s.overflow, heldSegment{append(b, seg...), src, dst, o})
	s.overflowBytes += len(seg)
	return nil
}

// isLent reports whether seg starts the buffer Buffer lent.
func (s *Server) isLent(seg []byte) bool {
	return len(s.lentBuf) > 0 && &s.lentBuf[0] == &seg[0]
}

func offloadArg(o Offload) uint64 {
	switch {
	case o.MSS > 0:
		return ops.TSOArg(o.MSS)
	case o.Checksum:
		return ops.OffloadChecksum
	}
	return 0
}

// copyOut sends seg to IP in a buffer of the out pool; false if there is
// none.
func (s *Server) copyOut(seg []byte, src, dst netip.Addr, o Offload) bool {
	if len(seg) > s.out.BufSize() {
		s.outDrops++ // cannot happen with 64 KiB buffers
		return true
	}
	ref, ok := s.out.Alloc()
	if !ok {
		return false
	}
	b, _ := s.out.Bytes(ref)
	ref.Len = uint32(copy(b, seg))
	if !s.output(ref, src, dst, o) {
		s.out.MustFree(ref)
		return false
	}
	s.outCopied += uint64(ref.Len)
	return true
}

// output asks IP to send the segment in ref.
func (s *Server) output(ref pool.Ref, src, dst netip.Addr, o Offload) bool {
	m := ops.Output(ref, src, dst, s.c.Protocol, offloadArg(o))
	ops.SetOutputECN(&m, o.ECN)
	m, err := s.toIP.Add(m)
	if err != nil {
		return false
	}
	if s.ip != nil {
		s.ip.queue = append(s.ip.queue, m)
	}
	return true
}

// flushOverflow hands held segments to IP as buffers come back.
func (s *Server) flushOverflow() {
	n := 0
	for n < len(s.overflow) && s.copyOut(s.overflow[n].b, s.overflow[n].src, s.overflow[n].dst, s.overflow[n].o) {
		s.overflowBytes -= len(s.overflow[n].b)
		s.spare = append(s.spare, s.overflow[n].b)
		s.overflow[n] = heldSegment{}
		n++
	}
	if n > 0 {
		s.overflow = append(s.overflow[:0], s.overflow[n:]...)
	}
}
