package pci

import (
	"errors"
	"fmt"
	"sort"
)

// IOVAs hands out I/O virtual addresses for DMA mappings: ranges of
// [Base, Limit), each a multiple of Align long and aligned to it (a huge
// page, so that the IOMMU may map it with one large page entry), first
// fit, freed ranges merged with their neighbours.
//
// The range starts above the guest's physical memory on purpose: an IOVA
// is then never also the physical address of something, so a descriptor
// that holds a physical address by mistake points at nothing mapped.
type IOVAs struct {
	Base, Limit, Align uint64
	free               []span // sorted, never adjacent; nil until first use
	started            bool
}

type span struct{ start, end uint64 }

// Default IOVA space: from 4 GiB to 256 GiB (the emulated VT-d has 39
// address bits), in 2 MiB steps.
const (
	DefaultIOVABase  = 1 << 32
	DefaultIOVALimit = 1 << 38
	DefaultIOVAAlign = 2 << 20
)

// NewIOVAs is the default IOVA space.
func NewIOVAs() *IOVAs {
	return &IOVAs{Base: DefaultIOVABase, Limit: DefaultIOVALimit, Align: DefaultIOVAAlign}
}

// ErrIOVASpace: no free range is long enough.
var ErrIOVASpace = errors.New("IOVA space exhausted")

func (a *IOVAs) start() {
	if !a.started {
		a.free = []span{{a.Base, a.Limit}}
		a.started = true
	}
}

// Size is n rounded up to the alignment: what Alloc takes for n bytes.
func (a *IOVAs) Size(n uint64) uint64 {
	return (n + a.Align - 1) / a.Align * a.Align
}

// Alloc returns the IOVA of a free range of at least n bytes (Size(n)).
func (a *IOVAs) Alloc(n uint64) (uint64, error) {
	a.start()
	size := a.Size(n)
	if n == 0 {
		return 0, fmt.Errorf("pci: IOVA range of 0 bytes")
	}
	for i, s := range a.free {
		if s.end-s.start < size {
			continue
		}
		iova := s.start
		if s.start+size == s.end {
			a.free = append(a.free[:i], a.free[i+1:]...)
		} else {
			a.free[i].start += size
		}
		return iova, nil
	}
	return 0, fmt.Errorf("pci: %d bytes: %w", n, ErrIOVASpace)
}

// Free gives back the range Alloc(n) returned at iova. Freeing what is
// not allocated is an error, and changes nothing.
func (a *IOVAs) Free(iova, n uint64) error {
	a.start()
	size := a.Size(n)
	end := iova + size
	if n == 0 || iova < a.Base || end > a.Limit || end < iova || iova%a.Align != 0 {
		return fmt.Errorf("pci: freeing IOVA %#x+%d: outside the space", iova, n)
	}
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].start >= iova })
	if i > 0 && a.free[i-1].end > iova || i < len(a.free) && a.free[i].start < end {
		return fmt.Errorf("pci: freeing IOVA %#x+%d: not allocated", iova, n)
	}
	a.free = append(a.free, span{})
	copy(a.free[i+1:], a.free[i:])
	a.free[i] = span{iova, end}
	if i+1 < len(a.free) && a.free[i+1].start == end {
		a.free[i].end = a.free[i+1].end
		a.free = append(a.free[:i+1], a.free[i+2:]...)
	}
	if i > 0 && a.free[i-1].end == iova {
		a.free[i-1].end = a.free[i].end
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
	return nil
}
