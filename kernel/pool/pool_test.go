package pool

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func create(t *testing.T, id uint32, nbufs, bufSize int) *Pool {
	t.Helper()
	p, err := Create(id, nbufs, bufSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestAllocFreeAll(t *testing.T) {
	for _, size := range []int{0, 64, 1536, 4096, 9216} {
		p := create(t, 1, 100, size)
		t.Logf("bufSize %d: huge pages %v", p.BufSize(), p.Huge())
		seen := map[uint32]bool{}
		var refs []Ref
		for {
			r, ok := p.Alloc()
			if !ok {
				break
			}
			if r.Pool != 1 || r.Len != uint32(p.BufSize()) || r.IsZero() || seen[r.Off] {
				t.Fatalf("Alloc = %+v: wrong pool, length, zero or repeated", r)
			}
			// Buffers that fit in a page never straddle one.
			ps := uint32(p.geo.pageSize)
			if p.BufSize() <= int(ps) && r.Off/ps != (r.Off+r.Len-1)/ps {
				t.Errorf("buffer %+v straddles a %d-byte page", r, ps)
			}
			b, err := p.Bytes(r)
			if err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] = byte(len(refs))
			}
			seen[r.Off] = true
			refs = append(refs, r)
		}
		if len(refs) != 100 || p.Available() != 0 {
			t.Fatalf("allocated %d buffers, %d left, want 100 and 0", len(refs), p.Available())
		}
		for i, r := range refs { // no two buffers overlap
			b, _ := p.Bytes(r)
			for _, c := range b {
				if c != byte(i) {
					t.Fatalf("buffer %d was overwritten by another", i)
				}
			}
		}
		for _, r := range refs {
			if err := p.Free(r); err != nil {
				t.Fatal(err)
			}
		}
		if p.Available() != 100 {
			t.Errorf("Available after freeing all = %d, want 100", p.Available())
		}
	}
}

func TestFreeRejects(t *testing.T) {
	p := create(t, 3, 8, 0)
	r, _ := p.Alloc()
	if err := p.Free(r); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ref  Ref
		want error
	}{
		{"double free", r, ErrDoubleFree},
		{"other pool", Ref{Pool: 4, Off: r.Off, Len: 1}, ErrForeign},
		{"mid-buffer", Ref{Pool: 3, Off: r.Off + 1, Len: 1}, ErrForeign},
		{"header slot", Ref{Pool: 3, Off: 0, Len: 1}, ErrForeign},
		{"past the last buffer", Ref{Pool: 3, Off: 9 * 2048, Len: 1}, ErrForeign},
		{"too long", Ref{Pool: 3, Off: r.Off, Len: 2049}, ErrForeign},
		{"far away", Ref{Pool: 3, Off: 1 << 31, Len: 1}, ErrForeign},
	}
	for _, tc := range tests {
		if err := p.Free(tc.ref); !errors.Is(err, tc.want) {
			t.Errorf("%s: Free(%+v) = %v, want %v", tc.name, tc.ref, err, tc.want)
		}
		if tc.want == ErrForeign {
			if _, err := p.Bytes(tc.ref); !errors.Is(err, ErrForeign) {
				t.Errorf("%s: Bytes(%+v) = %v, want %v", tc.name, tc.ref, err, ErrForeign)
			}
		}
	}
	if p.Available() != 8 {
		t.Errorf("Available = %d after rejected frees, want 8", p.Available())
	}
}

func TestBytesBounds(t *testing.T) {
	p := create(t, 1, 4, 0)
	r, _ := p.Alloc()
	r.Len = 100
	b, err := p.Bytes(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 100 || cap(b) != 100 {
		t.Errorf("Bytes(Len 100) has len %d cap %d, want 100 100", len(b), cap(b))
	}
	r.Len = 0
	if b, err := p.Bytes(r); err != nil || len(b) != 0 {
		t.Errorf("Bytes(Len 0) = %d bytes, %v; want 0, nil", len(b), err)
	}
}

func TestOpen(t *testing.T) {
	p := create(t, 5, 10, 1024)
	q, err := Open(5, p.Fd(), 10, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	r, _ := p.Alloc()
	b, _ := p.Bytes(r)
	copy(b, "through the other mapping")
	qb, err := q.Bytes(r)
	if err != nil || string(qb[:25]) != "through the other mapping" {
		t.Errorf("opened pool reads %q, %v", qb[:25], err)
	}
	if _, ok := q.Alloc(); ok {
		t.Error("Alloc on an opened pool succeeded; only the owner allocates")
	}
	if err := q.Free(r); !errors.Is(err, ErrNotOwner) {
		t.Errorf("Free on an opened pool = %v, want %v", err, ErrNotOwner)
	}
	tmp, err := os.Create(t.TempDir() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	bad := []struct {
		name         string
		id           uint32
		fd           *os.File
		nbufs, bsize int
	}{
		{"wrong id", 6, p.Fd(), 10, 1024},
		{"wrong count", 5, p.Fd(), 11, 1024},
		{"wrong size", 5, p.Fd(), 10, 2048},
		{"regular file", 5, tmp, 10, 1024},
	}
	for _, tc := range bad {
		if q, err := Open(tc.id, tc.fd, tc.nbufs, tc.bsize); !errors.Is(err, ErrBadPool) {
			t.Errorf("%s: Open = %v, want %v", tc.name, err, ErrBadPool)
			if q != nil {
				q.Close()
			}
		}
	}
}

func TestCreateRejects(t *testing.T) {
	for _, tc := range []struct{ nbufs, size int }{{0, 2048}, {10, 100}, {10, 32}, {10, 4 << 20}} {
		if p, err := Create(1, tc.nbufs, tc.size); !errors.Is(err, ErrBadPool) {
			t.Errorf("Create(%d, %d) = %v, want %v", tc.nbufs, tc.size, err, ErrBadPool)
			if p != nil {
				p.Close()
			}
		}
	}
}

// canReadPFNs skips a Phys test where page frame numbers are hidden, except
// under `make test` (KEEPNET_ITEST=1), which runs as root and reserves huge
// pages so that these tests run.
func canReadPFNs(t *testing.T) {
	t.Helper()
	if os.Getenv("KEEPNET_ITEST") == "1" {
		if os.Geteuid() != 0 {
			t.Fatal("Phys needs root (make test runs as root)")
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("Phys needs root: /proc/self/pagemap hides page frame numbers from others")
	}
	if _, err := os.Stat("/proc/self/pagemap"); err != nil {
		t.Skipf("no /proc/self/pagemap: %v", err)
	}
}

// TestPhysHuge checks translations on a huge-page pool: nonzero, and
// contiguous within each 2 MiB page.
func TestPhysHuge(t *testing.T) {
	canReadPFNs(t)
	p := create(t, 1, 2000, 0) // two huge pages
	if !p.Huge() {
		if os.Getenv("KEEPNET_ITEST") == "1" {
			t.Fatal("no huge pages: make test reserves them (vm.nr_hugepages) before running")
		}
		t.Skip("no huge pages reserved (vm.nr_hugepages = 0); the pool fell back to 4 KiB pages")
	}
	first := map[uint32]uint64{} // physical address of each huge page's first buffer
	for {
		r, ok := p.Alloc()
		if !ok {
			break
		}
		a, err := p.Phys(r)
		if err != nil {
			t.Fatal(err)
		}
		if a == 0 || a%64 != 0 {
			t.Fatalf("Phys(%+v) = %#x, want nonzero and aligned", r, a)
		}
		page, in := r.Off/HugePageSize, uint64(r.Off%HugePageSize)
		if _, ok := first[page]; !ok {
			first[page] = a - in
			if (a-in)%HugePageSize != 0 {
				t.Errorf("huge page %d at %#x, not 2 MiB aligned", page, a-in)
			}
		}
		if a != first[page]+in {
			t.Fatalf("Phys(%+v) = %#x, want %#x: not contiguous within the huge page", r, a, first[page]+in)
		}
	}
	t.Logf("huge pages at %#x", first)
}

// TestPhysSmallPages: in the 4 KiB fallback, a buffer that fits in a page
// translates; a larger one translates only where its pages are contiguous.
func TestPhysSmallPages(t *testing.T) {
	canReadPFNs(t)
	tryHuge = false
	defer func() { tryHuge = true }()
	p := create(t, 1, 16, 0)
	if p.Huge() {
		t.Fatal("Create gave huge pages with huge pages disabled")
	}
	for {
		r, ok := p.Alloc()
		if !ok {
			break
		}
		a, err := p.Phys(r)
		if err != nil || a == 0 || a%4096 != uint64(r.Off%4096) {
			t.Fatalf("Phys(%+v) = %#x, %v; want nonzero, same page offset", r, a, err)
		}
	}
	big := create(t, 2, 16, 16384)
	for {
		r, ok := big.Alloc()
		if !ok {
			break
		}
		if a, err := big.Phys(r); err != nil && !errors.Is(err, ErrNotContig) {
			t.Fatalf("Phys(%+v) = %#x, %v; want an address or %v", r, a, err, ErrNotContig)
		}
	}
}

// A pool init created is allocated from by the component that owns it.
func TestOpenOwned(t *testing.T) {
	initPool := create(t, 9, 4, 0)
	owner, err := OpenOwned(9, initPool.Fd(), 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	for i := 0; i < 4; i++ {
		if _, ok := owner.Alloc(); !ok {
			t.Fatalf("OpenOwned pool: Alloc %d failed, want 4 free buffers", i)
		}
	}
	if _, ok := owner.Alloc(); ok {
		t.Error("Alloc past the pool's 4 buffers succeeded")
	}
	peer, err := Open(9, initPool.Fd(), 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, ok := peer.Alloc(); ok {
		t.Error("a peer that merely maps the pool could Alloc")
	}
}

// A reader's descriptor cannot be mapped writable: Open maps it read-only,
// and neither a fresh writable mapping nor mprotect gets write access back.
func TestReadOnlyDescriptor(t *testing.T) {
	owner := create(t, 7, 4, 2048)
	ro, err := ReopenReadOnly(owner.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	p, err := Open(7, ro, 4, 2048)
	if err != nil {
		t.Fatalf("Open(read-only fd) = %v", err)
	}
	defer p.Close()
	if p.Writable() || !owner.Writable() {
		t.Errorf("Writable() = %v for the reader, %v for the owner; want false, true", p.Writable(), owner.Writable())
	}
	ref, _ := owner.Alloc()
	b, _ := owner.Bytes(ref)
	copy(b, "from the owner")
	if got, _ := p.Bytes(ref); string(got[:14]) != "from the owner" {
		t.Errorf("the reader reads %q, want the owner's bytes", got[:14])
	}
	size := len(p.Mapping())
	if m, err := unix.Mmap(int(p.Fd().Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		if err == nil {
			unix.Munmap(m)
		}
		t.Errorf("mmap(PROT_WRITE, MAP_SHARED) of the reader's fd = %v, want EACCES or EPERM", err)
	}
	if err := unix.Mprotect(p.Mapping(), unix.PROT_READ|unix.PROT_WRITE); !errors.Is(err, unix.EACCES) {
		t.Errorf("mprotect(PROT_WRITE) of the reader's mapping = %v, want EACCES", err)
	}
	if q, err := OpenOwned(7, ro, 4, 2048); !errors.Is(err, ErrBadPool) {
		if q != nil {
			q.Close()
		}
		t.Errorf("OpenOwned(read-only fd) = %v, want ErrBadPool", err)
	}
}

// TestMustFreePanicsOnOwnMistake: the owner's free of a buffer it does not
// hold stops it (MustFree), the plain Free only reports it.
func TestMustFreePanicsOnOwnMistake(t *testing.T) {
	p, err := Create(7, 4, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r, _ := p.Alloc()
	p.MustFree(r)
	if err := p.Free(r); !errors.Is(err, ErrDoubleFree) {
		t.Fatalf("Free twice = %v, want ErrDoubleFree", err)
	}
	defer func() {
		if msg, _ := recover().(string); !strings.Contains(msg, "free") {
			t.Errorf("MustFree twice panicked with %q, want the free's error", msg)
		}
	}()
	p.MustFree(r)
	t.Errorf("MustFree of a free buffer returned")
}

// TestHugeReservationInterrupted: hugetlbfs gives up reserving with EINTR
// when a signal is pending (the runtime's preemption signals are enough);
// the pool asks again and still gets huge pages.
func TestHugeReservationInterrupted(t *testing.T) {
	calls := 0
	fallocate = func(fd int, mode uint32, off, size int64) error {
		calls++
		if calls <= 2 {
			return unix.EINTR
		}
		return unix.Fallocate(fd, mode, off, size)
	}
	defer func() { fallocate = unix.Fallocate }()
	p := create(t, 1, 16, 0)
	if calls == 0 {
		t.Skip("no huge pages tried (memfd_create with MFD_HUGETLB refused)")
	}
	if !p.Huge() {
		if os.Getenv("KEEPNET_ITEST") == "1" {
			t.Fatalf("pool in ordinary pages after %d reservations, two of them interrupted", calls)
		}
		t.Skip("no huge pages reserved (vm.nr_hugepages = 0); the pool fell back to 4 KiB pages")
	}
	if calls != 3 {
		t.Errorf("fallocate called %d times, want 3 (two interrupted, one done)", calls)
	}
}
