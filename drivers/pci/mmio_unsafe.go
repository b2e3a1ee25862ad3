package pci

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BAR is a memory BAR mapped into this process. Registers are accessed only
// through Read32 and Write32: single, aligned 32-bit accesses, which is what
// device registers require (a compiler may not split or merge them).
type BAR struct {
	mem []byte
}

// MapBAR maps memory BAR n of d through sysfs (resourceN).
func (d Device) MapBAR(n int) (*BAR, error) {
	path := d.path("resource" + strconv.Itoa(n))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return nil, fmt.Errorf("pci %s: BAR%d: %w", d.Addr, n, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("pci %s: BAR%d: %w", d.Addr, n, ErrNoBAR)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("pci %s: mapping BAR%d: %w", d.Addr, n, err)
	}
	return &BAR{mem: mem}, nil
}

// Len is the BAR's size in bytes.
func (b *BAR) Len() int { return len(b.mem) }

func (b *BAR) reg(off uint32) *uint32 {
	if off%4 != 0 || int(off)+4 > len(b.mem) {
		panic(fmt.Sprintf("pci: register offset %#x outside the %d-byte BAR or unaligned", off, len(b.mem)))
	}
	return (*uint32)(unsafe.Pointer(&b.mem[off]))
}

// Read32 reads the 32-bit register at byte offset off.
func (b *BAR) Read32(off uint32) uint32 { return atomic.LoadUint32(b.reg(off)) }

// Write32 writes the 32-bit register at byte offset off.
func (b *BAR) Write32(off uint32, v uint32) { atomic.StoreUint32(b.reg(off), v) }

// Close unmaps the BAR.
func (b *BAR) Close() error { return unix.Munmap(b.mem) }
