package channel

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Region layout. The header is written once by New, before the descriptors
// leave the supervisor, and never again, so it is read with plain loads.
//
//	0    header    u64 magic "KNCHAN\x00\x01", u32 version, u32 slots, u64 region size
//	64   ring 0    control block, then slots × 64 B   (A → B)
//	...  ring 1    control block, then slots × 64 B   (B → A)
//
// A ring's control block is three cache lines, so that the two sides never
// write the same line:
//
//	+0    u32 producer index   written by the producer only
//	+64   u32 consumer index   written by the consumer only
//	+128  u32 sleeping         set by the consumer, taken (swapped to 0) by the producer
const (
	regionMagic   = 0x4b4e4348414e0001
	regionVersion = 1
	cacheLine     = 64
	headerBytes   = cacheLine
	ctlBytes      = 3 * cacheLine
	offProd       = 0
	offCons       = cacheLine
	offSleep      = 2 * cacheLine
	pageSize      = 4096

	// MinSlots and MaxSlots bound a ring's capacity (a power of two).
	MinSlots = 2
	MaxSlots = 1 << 20
)

func ringBytes(slots int) int { return ctlBytes + slots*MsgSize }

// ringOffset is where ring i (0 or 1) starts.
func ringOffset(i, slots int) int { return headerBytes + i*ringBytes(slots) }

func regionSize(slots int) int {
	n := headerBytes + 2*ringBytes(slots)
	return (n + pageSize - 1) / pageSize * pageSize
}

func validSlots(slots int) bool {
	return slots >= MinSlots && slots <= MaxSlots && slots&(slots-1) == 0
}

func writeRegionHeader(b []byte, slots int) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], regionMagic)
	le.PutUint32(b[8:], regionVersion)
	le.PutUint32(b[12:], uint32(slots))
	le.PutUint64(b[16:], uint64(len(b)))
}

// checkRegionHeader validates b's header and returns the ring capacity.
func checkRegionHeader(b []byte) (int, error) {
	le := binary.LittleEndian
	if len(b) < headerBytes {
		return 0, fmt.Errorf("%w: %d bytes", ErrBadRegion, len(b))
	}
	if m, v := le.Uint64(b[0:]), le.Uint32(b[8:]); m != regionMagic || v != regionVersion {
		return 0, fmt.Errorf("%w: magic %#x version %d, want %#x version %d", ErrBadRegion, m, v, uint64(regionMagic), regionVersion)
	}
	slots := int(le.Uint32(b[12:]))
	if !validSlots(slots) || regionSize(slots) != len(b) || le.Uint64(b[16:]) != uint64(len(b)) {
		return 0, fmt.Errorf("%w: %d slots in a %d-byte region", ErrBadRegion, slots, len(b))
	}
	return slots, nil
}

// Pair is a channel as the supervisor holds it: the shared region and the
// two eventfds, to be passed to the components (exec.Cmd.ExtraFiles or
// SCM_RIGHTS). The supervisor may Close its Pair once both sides have their
// descriptors; the channel lives as long as any mapping or descriptor does.
type Pair struct {
	Mem   *os.File // the memfd holding both rings
	WakeA *os.File // eventfd side A sleeps on; B writes it
	WakeB *os.File // eventfd side B sleeps on; A writes it
	Slots int      // capacity of each ring
}

// New creates a channel whose rings hold slots messages each (a power of two
// in [MinSlots, MaxSlots]).
func New(slots int) (*Pair, error) {
	if !validSlots(slots) {
		return nil, fmt.Errorf("channel: new: %d slots, want a power of two in [%d, %d]", slots, MinSlots, MaxSlots)
	}
	size := regionSize(slots)
	mfd, err := unix.MemfdCreate("keepnet-chan", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("channel: new: memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(mfd), "keepnet-chan")
	if err := unix.Ftruncate(mfd, int64(size)); err != nil {
		mem.Close()
		return nil, fmt.Errorf("channel: new: ftruncate: %w", err)
	}
	// A peer that shrank the file would make the other side fault
	// (SIGBUS) on the lost pages, so the size is sealed.
	if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		mem.Close()
		return nil, fmt.Errorf("channel: new: seal: %w", err)
	}
	b, err := unix.Mmap(mfd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		mem.Close()
		return nil, fmt.Errorf("channel: new: mmap: %w", err)
	}
	writeRegionHeader(b, slots) // the rings start zeroed: empty, nobody sleeping
	unix.Munmap(b)
	p := &Pair{Mem: mem, Slots: slots}
	for _, w := range []**os.File{&p.WakeA, &p.WakeB} {
		// Blocking eventfds: os/exec's Fd() would clear O_NONBLOCK
		// anyway, and the Endpoint reads only after poll says readable.
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("channel: new: eventfd: %w", err)
		}
		*w = os.NewFile(uintptr(efd), "keepnet-chan-wake")
	}
	return p, nil
}

// Files are the descriptors side s needs, in the order Open takes them:
// the region, the eventfd s sleeps on, the eventfd that wakes its peer.
func (p *Pair) Files(s Side) []*os.File {
	if s == A {
		return []*os.File{p.Mem, p.WakeA, p.WakeB}
	}
	return []*os.File{p.Mem, p.WakeB, p.WakeA}
}

// Open opens side s of the channel in this process.
func (p *Pair) Open(s Side) (*Endpoint, error) {
	f := p.Files(s)
	return Open(f[0], f[1], f[2], s)
}

// Close closes the supervisor's descriptors; open Endpoints are unaffected.
func (p *Pair) Close() error {
	var first error
	for _, f := range []*os.File{p.Mem, p.WakeA, p.WakeB} {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Open maps side s of the channel whose region is mem; it sleeps on the
// eventfd wait and wakes its peer through the eventfd wake. It checks that
// mem is a sealed channel region with a valid header and that wait and wake
// are eventfds, so a wrong descriptor fails here, cleanly. Open duplicates
// the eventfds and needs mem only while mapping; the caller keeps its files.
func Open(mem, wait, wake *os.File, s Side) (*Endpoint, error) {
	fail := func(err error) (*Endpoint, error) {
		return nil, fmt.Errorf("channel: open side %v: %w", s, err)
	}
	if s != A && s != B {
		return fail(fmt.Errorf("bad side %d", s))
	}
	mfd := int(mem.Fd())
	seals, err := unix.FcntlInt(uintptr(mfd), unix.F_GET_SEALS, 0)
	if err != nil || seals&(unix.F_SEAL_SHRINK|unix.F_SEAL_GROW) != unix.F_SEAL_SHRINK|unix.F_SEAL_GROW {
		return fail(fmt.Errorf("%w: %s is not a sealed memfd (seals %#x, %v)", ErrBadRegion, mem.Name(), seals, err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(mfd, &st); err != nil {
		return fail(err)
	}
	if st.Size < headerBytes || st.Size > int64(regionSize(MaxSlots)) {
		return fail(fmt.Errorf("%w: region of %d bytes", ErrBadRegion, st.Size))
	}
	b, err := unix.Mmap(mfd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	slots, err := checkRegionHeader(b)
	if err != nil {
		unix.Munmap(b)
		return fail(err)
	}
	var efds [2]eventfd
	for i, f := range []*os.File{wait, wake} {
		fd, err := dupEventfd(f)
		if err != nil {
			if i == 1 {
				efds[0].close()
			}
			unix.Munmap(b)
			return fail(err)
		}
		efds[i] = fd
	}
	tx, rx := 0, 1
	if s == B {
		tx, rx = 1, 0
	}
	e := newEndpoint(mapRing(b, ringOffset(tx, slots), slots), mapRing(b, ringOffset(rx, slots), slots), efds[0], efds[1])
	e.unmap = func() error { return unix.Munmap(b) }
	return e, nil
}

// dupEventfd checks that f is an eventfd and duplicates it.
func dupEventfd(f *os.File) (eventfd, error) {
	fd := int(f.Fd())
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return -1, fmt.Errorf("%w: %s: %v", ErrBadRegion, f.Name(), err)
	}
	if link != "anon_inode:[eventfd]" {
		return -1, fmt.Errorf("%w: %s is %s, not an eventfd", ErrBadRegion, f.Name(), link)
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	// Nonblocking (for every holder of the eventfd: a flag of the file,
	// not of the descriptor): each reads only after a poll said it was
	// signalled, and a poll may be wrong once ("How a process sleeps").
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return eventfd(nfd), nil
}
