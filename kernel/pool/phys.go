package pool

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Physical addresses for DMA.
//
// The driver hands the device physical addresses. Linux reports them in
// /proc/self/pagemap (Documentation/admin-guide/mm/pagemap.rst): one 64-bit
// entry per 4 KiB virtual page, bit 63 "present", bits 0-54 the page frame
// number, which reads as zero without CAP_SYS_ADMIN.
//
// A huge page is physically contiguous, so one translation per 2 MiB page
// serves every buffer in it; the result is cached per page. The mapping is
// mlocked (which faults every page in) before the first translation so that
// no page is swapped out under the device.
//
// In the 4 KiB fallback, consecutive pages are generally not contiguous.
// Buffers that fit in a page never straddle one (see Layout), so they still
// translate; a larger buffer translates only if its pages happen to be
// contiguous, and Phys returns ErrNotContig otherwise rather than a wrong
// address. The kernel may also migrate ordinary pages (compaction moves even
// mlocked ones unless vm.compact_unevictable_allowed is 0), so a driver must
// insist on Huge pools for DMA; the fallback exists for hosts and tests
// without reserved huge pages.

const (
	pagemapPresent = 1 << 63
	pagemapPFNMask = 1<<55 - 1
)

// Phys is the physical address of the buffer r names. It needs root (for
// the page frame numbers) and locks the pool's pages in memory on first use.
func (p *Pool) Phys(r Ref) (uint64, error) {
	if _, err := p.slot(r); err != nil {
		return 0, &Error{Op: "phys", Pool: p.id, Ref: r, Err: err}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.lockLocked(); err != nil {
		return 0, &Error{Op: "phys", Pool: p.id, Ref: r, Err: err}
	}
	ps := p.geo.pageSize
	first, last := int(r.Off)/ps, (int(r.Off)+p.geo.bufSize-1)/ps
	base, err := p.pagePhysLocked(first)
	if err != nil {
		return 0, &Error{Op: "phys", Pool: p.id, Ref: r, Err: err}
	}
	for pg := first + 1; pg <= last; pg++ {
		a, err := p.pagePhysLocked(pg)
		if err != nil {
			return 0, &Error{Op: "phys", Pool: p.id, Ref: r, Err: err}
		}
		if a != base+uint64((pg-first)*ps) {
			return 0, &Error{Op: "phys", Pool: p.id, Ref: r, Err: ErrNotContig}
		}
	}
	return base + uint64(int(r.Off)%ps), nil
}

// lockLocked mlocks the whole mapping once. p.mu must be held.
func (p *Pool) lockLocked() error {
	if p.locked {
		return nil
	}
	for off := 0; off < len(p.mem); off += p.geo.pageSize {
		_ = p.mem[off] // fault the page in before pinning it
	}
	if err := unix.Mlock(p.mem); err != nil {
		return fmt.Errorf("mlock: %w", err)
	}
	p.locked = true
	return nil
}

// pagePhysLocked translates page pg of the region, through the cache.
// p.mu must be held.
func (p *Pool) pagePhysLocked(pg int) (uint64, error) {
	if a := p.phys[pg]; a != 0 {
		return a, nil
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoPhys, err)
	}
	defer f.Close()
	va := addrOf(p.mem) + uintptr(pg*p.geo.pageSize)
	var e [8]byte
	if _, err := f.ReadAt(e[:], int64(va/smallPageSize*8)); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoPhys, err)
	}
	entry := binary.LittleEndian.Uint64(e[:])
	pfn := entry & pagemapPFNMask
	if entry&pagemapPresent == 0 || pfn == 0 {
		return 0, fmt.Errorf("%w: pagemap entry %#x for page %d", ErrNoPhys, entry, pg)
	}
	a := pfn * smallPageSize
	p.phys[pg] = a
	return a, nil
}
