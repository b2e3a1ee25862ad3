package pci

import (
	"encoding/binary"
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

// The interrupt path's system calls, raw: they never block (each follows
// a poll that found the descriptor ready, or writes configuration space),
// and an ordinary call would wake the Go runtime's sysmon thread out of
// its deep sleep each time (kernel/channel, "How a process sleeps").
//
// Each is called directly, with its pointers converted in the call
// (unsafe.Pointer's rule 4).

// readable reports whether fd is readable now.
func readable(fd int) bool {
	var ts unix.Timespec
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n == 1 && fds[0].Revents&unix.POLLIN != 0
}

// read32 reads a 32-bit count from fd (uio's).
func read32(fd int) (uint32, unix.Errno) {
	var b [4]byte
	if errno := readFull(fd, b[:]); errno != 0 {
		return 0, errno
	}
	return binary.NativeEndian.Uint32(b[:]), 0
}

// read64 reads a 64-bit count from fd (an eventfd's).
func read64(fd int) (uint64, unix.Errno) {
	var b [8]byte
	if errno := readFull(fd, b[:]); errno != 0 {
		return 0, errno
	}
	return binary.NativeEndian.Uint64(b[:]), 0
}

// readFull is one read(2) that must fill b.
func readFull(fd int, b []byte) unix.Errno {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		if int(n) != len(b) {
			return unix.EIO
		}
		return 0
	}
}

// pwrite16 writes v at off of fd, little-endian (configuration space's
// order).
func pwrite16(fd int, v uint16, off int64) unix.Errno {
	b := [2]byte{byte(v), byte(v >> 8)}
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_PWRITE64, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 2, uintptr(off), 0, 0)
		if errno != unix.EINTR {
			return errno
		}
	}
}
