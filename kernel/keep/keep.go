// Package keep is memory that outlives a component's process ("kept
// memory"): plain shared memory, one sealed memfd, which init creates for a
// component and hands to every generation of it, so that a restarted
// component finds what its predecessor left there (the tcp server: its
// connections' state).
//
// Lifetime: init creates a component's kept memory once, at the first hello
// of its first generation, and holds the descriptor for as long as init
// runs (boot/hub, "Lifetimes"); each generation maps it (Map, in
// kernel/wiring's Join) and its mapping goes with the process. The memory
// is never superseded and never freed while the appliance runs, so its
// contents survive any number of crashes; nothing survives a reboot.
//
// Unlike a pool (kernel/pool) kept memory has no header and no free list:
// its layout is its component's business, and a component must check what
// it finds there as it would any input, since its predecessor may have died
// in the middle of a write. It is never backed by huge pages (those are
// reserved for packet pools), and it may be of any size: pages are
// allocated only as they are first touched, so a large region costs only
// what is used.
//
// The size is sealed (F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL): no holder
// can shrink the file under another's mapping, which would make every other
// mapper fault (SIGBUS) on the lost pages.
package keep

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrBadSize is the error of Create for a size that is not a positive
// multiple of the page size.
var ErrBadSize = errors.New("keep: size must be a positive multiple of the page size")

// ErrNotSealed is the error of Map for a descriptor whose size is not
// sealed: another holder could shrink it under the mapping.
var ErrNotSealed = errors.New("keep: not a memfd with its size sealed")

// sizeSeals are the seals Map requires; Create adds F_SEAL_SEAL as well.
const sizeSeals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW

// Create makes kept memory of size bytes, zeroed, named name (as
// /proc/PID/fd shows it: "/memfd:NAME"), with its size sealed. size must be
// a positive multiple of the page size. The caller holds the descriptor for
// as long as the memory is to be kept.
func Create(name string, size int) (*os.File, error) {
	if size <= 0 || size%os.Getpagesize() != 0 {
		return nil, fmt.Errorf("%w: %s of %d bytes (page size %d)", ErrBadSize, name, size, os.Getpagesize())
	}
	fail := func(op string, err error) (*os.File, error) {
		return nil, fmt.Errorf("keep: creating %s: %s: %w", name, op, err)
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fail("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		f.Close()
		return fail("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, sizeSeals|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return fail("seal", err)
	}
	return f, nil
}

// Map maps the kept memory f names, all of it, readable and writable and
// shared with every other mapping of it. f must have its size sealed
// (Create). The mapping stays valid after f is closed; Unmap releases it.
func Map(f *os.File) ([]byte, error) {
	fd := int(f.Fd())
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || seals&sizeSeals != sizeSeals {
		return nil, fmt.Errorf("%w: %s (seals %#x, %v)", ErrNotSealed, f.Name(), seals, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("keep: mapping %s: fstat: %w", f.Name(), err)
	}
	if st.Size <= 0 {
		return nil, fmt.Errorf("keep: mapping %s: it is empty", f.Name())
	}
	b, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("keep: mapping %s: mmap: %w", f.Name(), err)
	}
	return b, nil
}

// Unmap releases a mapping Map returned; b must not be used afterwards.
// The memory itself stays as long as a descriptor of it is open.
func Unmap(b []byte) error {
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("keep: unmap: %w", err)
	}
	return nil
}
