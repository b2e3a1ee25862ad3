// Package pool holds packet buffers in shared memory so that components pass
// packets to each other by reference, never by copy (DESIGN.md, "Packet
// pools").
//
// A pool is one memfd of fixed-size buffers, mapped MAP_SHARED by every
// component that must see the bytes. It is backed by 2 MiB huge pages
// (MFD_HUGETLB) when the kernel has some reserved, and by ordinary shared
// memory otherwise; Huge reports which. A packet travels as a Ref: (pool,
// offset, length).
//
// # Ownership rule
//
// The process that calls Create owns the pool. Only the owner allocates and
// frees, and the free list lives in the owner's memory, not in the shared
// region, so a crashing peer can never corrupt it. A buffer's ownership moves
// with the request that carries its Ref and comes back with the reply; the
// owner frees it only then. A peer that Opens the pool may read (and, if it
// is one of the pool's writers, write) the bytes of a Ref it was handed until
// it replies, and must not touch them afterwards. Free reports a double free
// and a Ref that is not one of this pool's buffers.
//
// # Readers and writers
//
// Most neighbours only read a pool (tcp reads what ip delivered; ip reads
// what tcp sends). They get a descriptor opened read-only (ReopenReadOnly),
// which the kernel refuses to map writable (EACCES), and Open maps it
// PROT_READ: a stray write is then a fault in the reader, not corruption in
// the owner. Only the owner and the components that fill buffers for it (a
// driver filling receive buffers, a transport filling syscall's receive
// buffers) map a pool writable. The region's mode is 0600, so a reader
// running under another uid without CAP_DAC_OVERRIDE cannot reopen its
// read-only descriptor writable through /proc/self/fd either.
//
// # Recovery
//
// The supervisor creates every pool and keeps its descriptor, so no memory a
// device may DMA into is freed by a crash. A component that restarts gets the
// descriptors again and Opens its pools; an owner that restarts starts with a
// fresh pool, and its neighbours keep the old one mapped until every buffer of
// it has come back or been discarded. Refs name their pool by id, so a late
// reply for the old pool is recognised (ErrForeign) rather than freeing a
// buffer of the new one.
//
// # Layout
//
// The region is a sequence of slots of BufSize bytes. Slot 0 holds the pool
// header (magic, version, geometry), which an opener validates; the zero Ref
// is therefore never a buffer and can mean "no packet". Slots never straddle a
// page (a 2 MiB huge page, or a 4 KiB page in the fallback) when BufSize fits
// in one: a page holds PageSize/BufSize slots and the tail of each page is
// left unused. That keeps every buffer physically contiguous, which DMA needs
// (see Phys).
package pool

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Ref names a packet in a pool: Len bytes at byte offset Off of pool Pool.
// It is what crosses a channel; the bytes never do. It is 12 bytes, no
// padding: kernel/channel's 64-byte Msg uses the 4 bytes after it.
type Ref struct {
	Pool uint32
	Off  uint32
	Len  uint32
}

// IsZero reports whether r names no packet.
func (r Ref) IsZero() bool { return r == Ref{} }

// Sizes and limits.
const (
	DefaultBufSize = 2048
	HugePageSize   = 2 << 20
	smallPageSize  = 4096
	minBufSize     = 64      // holds the header; buffers are cache-line multiples
	maxRegion      = 1 << 32 // Ref.Off is 32 bits
)

// Errors. Each is returned wrapped with the operation and pool id.
var (
	ErrForeign    = errors.New("ref is not a buffer of this pool")
	ErrDoubleFree = errors.New("buffer is already free")
	ErrNotOwner   = errors.New("only the pool's owner allocates and frees")
	ErrBadPool    = errors.New("not a keepnet pool, or wrong geometry")
	ErrNoPhys     = errors.New("no physical address (needs root and /proc/self/pagemap)")
	ErrNotContig  = errors.New("buffer spans physically discontiguous pages")
)

// Error carries the operation and pool of a failure; errors.Is sees the
// sentinel in Err.
type Error struct {
	Op   string
	Pool uint32
	Ref  Ref
	Err  error
}

func (e *Error) Error() string {
	if e.Ref.IsZero() {
		return fmt.Sprintf("pool %d: %s: %v", e.Pool, e.Op, e.Err)
	}
	return fmt.Sprintf("pool %d: %s %+v: %v", e.Pool, e.Op, e.Ref, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Pool is one mapping of a pool region. Alloc and Free work only on the
// owner's Pool (the one Create returned); any Pool may Bytes and Phys.
// All methods are safe for concurrent use.
type Pool struct {
	id   uint32
	geo  geometry
	huge bool
	fd   *os.File
	mem  []byte // the whole region, MAP_SHARED
	// writable: mapped PROT_WRITE (false: the descriptor was read-only).
	writable bool

	// mu guards the owner's free list and the physical-address cache.
	mu     sync.Mutex
	owner  bool
	free   []uint32 // slot numbers of free buffers; a stack
	inUse  []bool   // by slot; only the owner's
	locked bool     // mapping mlocked (for Phys)
	phys   []uint64 // physical address of each page, 0 = not yet translated
}

// tryHuge is false only in tests of the small-page fallback.
var tryHuge = true

// fallocate is unix.Fallocate but in tests of reserveHuge.
var fallocate = unix.Fallocate

// reserveHuge takes size bytes of huge pages for the memfd fd. Hugetlbfs
// stops reserving with EINTR whenever a signal is pending, and the Go
// runtime signals its own threads to preempt goroutines (SIGURG), more
// often the slower the machine: an interrupted reservation is asked
// again, keeping the pages it already took, rather than taken for a
// shortage (which would leave the pool in ordinary pages, which a driver
// refuses to DMA into).
func reserveHuge(fd int, size int64) error {
	for {
		err := fallocate(fd, 0, 0, size)
		if err != unix.EINTR {
			return err
		}
	}
}

var errNoHugeTried = errors.New("huge pages not tried")

// Create makes a pool of nbufs buffers of bufSize bytes each (0 means
// DefaultBufSize); CreateNamed with the name "keepnet-pool-ID".
func Create(id uint32, nbufs, bufSize int) (*Pool, error) {
	return CreateNamed(fmt.Sprintf("keepnet-pool-%d", id), id, nbufs, bufSize)
}

// CreateNamed makes a pool of nbufs buffers of bufSize bytes (0 means
// DefaultBufSize) and returns its owner's Pool. It tries huge pages first and
// falls back to ordinary shared memory; Huge tells which it got.
//
// name is the memfd's name, which /proc/PID/fd shows ("/memfd:NAME").
func CreateNamed(name string, id uint32, nbufs, bufSize int) (*Pool, error) {
	if bufSize == 0 {
		bufSize = DefaultBufSize
	}
	if nbufs <= 0 || bufSize < minBufSize || bufSize%64 != 0 || bufSize > HugePageSize {
		return nil, &Error{Op: "create", Pool: id, Err: fmt.Errorf("%w: %d buffers of %d bytes (want >0 buffers, size a multiple of 64 in [64, 2 MiB])", ErrBadPool, nbufs, bufSize)}
	}
	huge := true
	geo := newGeometry(nbufs, bufSize, HugePageSize)
	fd, err := -1, errNoHugeTried
	if tryHuge {
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_HUGETLB|unix.MFD_HUGE_2MB)
	}
	if err == nil {
		// ftruncate succeeds without reserved huge pages; the shortage shows
		// only when a page is touched (SIGBUS), so reserve them all now.
		err = reserveHuge(fd, int64(geo.size))
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		huge = false
		geo = newGeometry(nbufs, bufSize, smallPageSize)
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			return nil, &Error{Op: "create", Pool: id, Err: err}
		}
		if err := unix.Ftruncate(fd, int64(geo.size)); err != nil {
			unix.Close(fd)
			return nil, &Error{Op: "create", Pool: id, Err: err}
		}
	}
	if geo.size > maxRegion {
		unix.Close(fd)
		return nil, &Error{Op: "create", Pool: id, Err: fmt.Errorf("%w: region of %d bytes exceeds 4 GiB", ErrBadPool, geo.size)}
	}
	// The size is fixed for good: a peer that could shrink the file would
	// make every other mapper fault (SIGBUS) on the lost pages.
	// Hugetlbfs accepts seals since Linux 4.16.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return nil, &Error{Op: "create", Pool: id, Err: fmt.Errorf("seal: %w", err)}
	}
	// Only the creator's uid may open the region again (ReopenReadOnly).
	if err := unix.Fchmod(fd, 0o600); err != nil {
		unix.Close(fd)
		return nil, &Error{Op: "create", Pool: id, Err: fmt.Errorf("chmod: %w", err)}
	}
	mem, err := unix.Mmap(fd, 0, geo.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, &Error{Op: "create", Pool: id, Err: fmt.Errorf("mmap: %w", err)}
	}
	writeHeader(mem, header{magic: poolMagic, version: poolVersion, id: id, nbufs: uint32(nbufs), bufSize: uint32(bufSize), pageSize: uint32(geo.pageSize)})
	p := &Pool{id: id, geo: geo, huge: huge, fd: os.NewFile(uintptr(fd), name), mem: mem, writable: true}
	p.becomeOwner()
	p.phys = make([]uint64, geo.size/geo.pageSize)
	return p, nil
}

// becomeOwner gives p the free list: every buffer free.
func (p *Pool) becomeOwner() {
	n := p.geo.nbufs
	p.owner = true
	p.free = make([]uint32, 0, n)
	for s := n; s >= 1; s-- { // so that Alloc hands out slot 1 first
		p.free = append(p.free, uint32(s))
	}
	p.inUse = make([]bool, n+1)
}

// OpenOwned maps, for its owner, a pool that another process (init, which
// holds every pool across crashes) created: the owner allocates from it, and
// every buffer starts free. A restarted owner gets a new pool, never its
// predecessor's, so no buffer can still be in a neighbour's hands.
func OpenOwned(id uint32, fd *os.File, nbufs, bufSize int) (*Pool, error) {
	p, err := Open(id, fd, nbufs, bufSize)
	if err != nil {
		return nil, err
	}
	if !p.writable {
		p.Close()
		return nil, &Error{Op: "open", Pool: id, Err: fmt.Errorf("%w: the owner was handed a read-only descriptor", ErrBadPool)}
	}
	p.becomeOwner()
	return p, nil
}

// Open maps the pool whose memfd another process created and passed on. It
// checks that fd is a sealed pool region whose header names id and the
// geometry nbufs × bufSize (0 means DefaultBufSize). A read-only fd
// (ReopenReadOnly) is mapped read-only: writing its Bytes faults. Open
// duplicates fd; the caller keeps its own.
func Open(id uint32, fd *os.File, nbufs, bufSize int) (*Pool, error) {
	if bufSize == 0 {
		bufSize = DefaultBufSize
	}
	bad := func(format string, a ...any) error {
		return &Error{Op: "open", Pool: id, Err: fmt.Errorf("%w: "+format, append([]any{ErrBadPool}, a...)...)}
	}
	seals, err := unix.FcntlInt(fd.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals&(unix.F_SEAL_SHRINK|unix.F_SEAL_GROW) != unix.F_SEAL_SHRINK|unix.F_SEAL_GROW {
		return nil, bad("fd %d is not a sealed memfd (seals %#x, %v)", fd.Fd(), seals, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(fd.Fd()), &st); err != nil {
		return nil, &Error{Op: "open", Pool: id, Err: err}
	}
	var pageSize int
	switch int(st.Blksize) {
	case HugePageSize:
		pageSize = HugePageSize
	default:
		pageSize = smallPageSize
	}
	if nbufs <= 0 || bufSize < minBufSize || bufSize%64 != 0 || bufSize > HugePageSize {
		return nil, bad("%d buffers of %d bytes", nbufs, bufSize)
	}
	geo := newGeometry(nbufs, bufSize, pageSize)
	if st.Size != int64(geo.size) {
		return nil, bad("region is %d bytes, want %d", st.Size, geo.size)
	}
	nfd, err := unix.FcntlInt(fd.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Op: "open", Pool: id, Err: err}
	}
	flags, err := unix.FcntlInt(uintptr(nfd), unix.F_GETFL, 0)
	if err != nil {
		unix.Close(nfd)
		return nil, &Error{Op: "open", Pool: id, Err: err}
	}
	writable := flags&unix.O_ACCMODE != unix.O_RDONLY
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	mem, err := unix.Mmap(nfd, 0, geo.size, prot, unix.MAP_SHARED)
	if err != nil {
		unix.Close(nfd)
		return nil, &Error{Op: "open", Pool: id, Err: fmt.Errorf("mmap: %w", err)}
	}
	want := header{magic: poolMagic, version: poolVersion, id: id, nbufs: uint32(nbufs), bufSize: uint32(bufSize), pageSize: uint32(pageSize)}
	if h := readHeader(mem); h != want {
		unix.Munmap(mem)
		unix.Close(nfd)
		return nil, bad("header %+v, want %+v", h, want)
	}
	return &Pool{
		id: id, geo: geo, huge: pageSize == HugePageSize,
		fd: os.NewFile(uintptr(nfd), fd.Name()), mem: mem, writable: writable,
		phys: make([]uint64, geo.size/geo.pageSize),
	}, nil
}

// ReopenReadOnly opens the pool region fd names again, read-only: the
// descriptor to hand a component that only reads the pool. The kernel
// refuses to map it writable (mmap with PROT_WRITE and MAP_SHARED fails with
// EACCES, and so does mprotect of a read-only mapping).
func ReopenReadOnly(fd *os.File) (*os.File, error) {
	path := fmt.Sprintf("/proc/self/fd/%d", fd.Fd())
	nfd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pool: reopening %s read-only: %w", fd.Name(), err)
	}
	return os.NewFile(uintptr(nfd), fd.Name()+" (read-only)"), nil
}

// ID is the pool's id, as Refs carry it.
func (p *Pool) ID() uint32 { return p.id }

// Huge reports whether the pool is backed by 2 MiB huge pages (true) or fell
// back to ordinary 4 KiB shared memory (false).
func (p *Pool) Huge() bool { return p.huge }

// Writable reports whether this mapping may be written: false for a pool
// opened from a read-only descriptor, whose Bytes fault when written.
func (p *Pool) Writable() bool { return p.writable }

// Fd is the pool's memfd, to pass to the components that Open it.
func (p *Pool) Fd() *os.File { return p.fd }

// BufSize is the size of every buffer.
func (p *Pool) BufSize() int { return p.geo.bufSize }

// Len is the number of buffers.
func (p *Pool) Len() int { return p.geo.nbufs }

// Available reports how many buffers the owner has not handed out.
func (p *Pool) Available() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Plenty reports whether at least a quarter of the buffers are free: an
// owner with fewer asks its neighbours for the ones they hold back
// (kernel/channel, lazy replies).
func (p *Pool) Plenty() bool { return p.Available() >= p.Len()/4 }

// Alloc takes a free buffer; its Ref has Len = BufSize, which the caller
// shortens to the packet it writes. It reports false when the pool is
// exhausted. Only the owner allocates; on an opened Pool Alloc reports false.
func (p *Pool) Alloc() (Ref, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.owner || len(p.free) == 0 {
		return Ref{}, false
	}
	s := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.inUse[s] = true
	return Ref{Pool: p.id, Off: uint32(p.geo.offset(int(s))), Len: uint32(p.geo.bufSize)}, true
}

// Free returns the buffer r names to the free list. It fails, freeing
// nothing, for a Ref of another pool or not at a buffer's start (ErrForeign)
// and for a buffer that is already free (ErrDoubleFree).
func (p *Pool) Free(r Ref) error {
	s, err := p.slot(r)
	if err != nil {
		return &Error{Op: "free", Pool: p.id, Ref: r, Err: err}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.owner {
		return &Error{Op: "free", Pool: p.id, Ref: r, Err: ErrNotOwner}
	}
	if !p.inUse[s] {
		return &Error{Op: "free", Pool: p.id, Ref: r, Err: ErrDoubleFree}
	}
	p.inUse[s] = false
	p.free = append(p.free, uint32(s))
	return nil
}

// MustFree is Free for an owner whose references are its own records: a
// failure means those records are corrupt (a buffer freed twice, or a
// reference the pool never handed out), and carrying on could hand one
// buffer to two users, or leak them all. It panics, so that the process
// stops and its supervisor restarts it with fresh records, as a fail-stop
// component would (issue 13: a wrong buffer freed in syscall leaked
// syscall.io until every connection failed).
func (p *Pool) MustFree(r Ref) {
	if err := p.Free(r); err != nil {
		panic(err.Error())
	}
}

// Bytes is the packet r names: Len bytes of its buffer, with the capacity
// capped so that no append or reslice reaches past them. A Ref comes from
// another process, so it is checked here, where it enters: pool id, a
// buffer's start, Len at most BufSize.
func (p *Pool) Bytes(r Ref) ([]byte, error) {
	if _, err := p.slot(r); err != nil {
		return nil, &Error{Op: "bytes", Pool: p.id, Ref: r, Err: err}
	}
	end := int(r.Off) + int(r.Len)
	return p.mem[r.Off:end:end], nil
}

// slot validates r and returns its slot number.
func (p *Pool) slot(r Ref) (int, error) {
	if r.Pool != p.id || r.Len > uint32(p.geo.bufSize) {
		return 0, ErrForeign
	}
	s, ok := p.geo.slot(int(r.Off))
	if !ok || s == 0 {
		return 0, ErrForeign
	}
	return s, nil
}

// Mapping is the pool's whole shared mapping. It exists for device models
// in tests, which stand the pool in for physical memory (a buffer's device
// address is then its offset); code that moves packets uses Bytes.
func (p *Pool) Mapping() []byte { return p.mem }

// Close unmaps the pool and closes its descriptor. No Bytes slice may be used
// afterwards.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mem == nil {
		return nil
	}
	err := unix.Munmap(p.mem)
	p.mem = nil
	p.free, p.inUse = nil, nil
	if cerr := p.fd.Close(); err == nil {
		err = cerr
	}
	return err
}

// geometry places slots in the region: perPage slots of bufSize bytes at the
// start of each page (or, when a buffer is larger than a page, slots end to
// end).
type geometry struct {
	nbufs, bufSize, pageSize int
	stride, perStride        int // bytes per group of slots, slots per group
	size                     int // region bytes, a multiple of pageSize
}

func newGeometry(nbufs, bufSize, pageSize int) geometry {
	g := geometry{nbufs: nbufs, bufSize: bufSize, pageSize: pageSize}
	if bufSize <= pageSize {
		g.stride, g.perStride = pageSize, pageSize/bufSize
	} else {
		g.stride, g.perStride = bufSize, 1
	}
	slots := nbufs + 1 // slot 0 is the header
	groups := (slots + g.perStride - 1) / g.perStride
	end := (groups-1)*g.stride + (slots-(groups-1)*g.perStride)*bufSize
	g.size = (end + pageSize - 1) / pageSize * pageSize
	return g
}

// offset is the byte offset of slot s.
func (g geometry) offset(s int) int {
	return s/g.perStride*g.stride + s%g.perStride*g.bufSize
}

// slot is the slot starting at byte offset off, if any.
func (g geometry) slot(off int) (int, bool) {
	in := off % g.stride
	if in%g.bufSize != 0 || in/g.bufSize >= g.perStride {
		return 0, false
	}
	s := off/g.stride*g.perStride + in/g.bufSize
	return s, s <= g.nbufs
}
