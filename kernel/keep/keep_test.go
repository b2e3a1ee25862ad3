package keep

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

const size = 4 << 20

func create(t *testing.T) *os.File {
	t.Helper()
	f, err := Create("keep-test", size)
	if err != nil {
		t.Fatalf("Create(keep-test, %d) = %v", size, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mapped(t *testing.T, f *os.File) []byte {
	t.Helper()
	b, err := Map(f)
	if err != nil {
		t.Fatalf("Map = %v", err)
	}
	return b
}

// Two mappings of the same kept memory are the same memory: each sees what
// the other writes, at the far end as well as the near one.
func TestTwoMappingsShare(t *testing.T) {
	f := create(t)
	a, b := mapped(t, f), mapped(t, f)
	defer Unmap(a)
	defer Unmap(b)
	if len(a) != size || len(b) != size {
		t.Fatalf("Map = %d and %d bytes, want %d", len(a), len(b), size)
	}
	if a[0] != 0 || a[size-1] != 0 {
		t.Errorf("new kept memory reads %d...%d, want zeroes", a[0], a[size-1])
	}
	copy(a, "written through a")
	copy(b[size-len("by b"):], "by b")
	if got := string(b[:17]); got != "written through a" {
		t.Errorf("b reads %q, want what a wrote", got)
	}
	if got := string(a[size-len("by b"):]); got != "by b" {
		t.Errorf("a reads %q at its end, want what b wrote", got)
	}
}

// Its size is sealed: no holder can shrink or grow it, nor lift the seals.
func TestSizeIsSealed(t *testing.T) {
	f := create(t)
	fd := int(f.Fd())
	for _, n := range []int64{0, size / 2, size * 2} {
		if err := unix.Ftruncate(fd, n); !errors.Is(err, unix.EPERM) {
			t.Errorf("ftruncate(%d) = %v, want EPERM", n, err)
		}
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE); !errors.Is(err, unix.EPERM) {
		t.Errorf("F_ADD_SEALS after F_SEAL_SEAL = %v, want EPERM", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Size != size {
		t.Errorf("fstat = size %d, %v; want %d", st.Size, err, size)
	}
}

func TestCreateRefusesBadSizes(t *testing.T) {
	page := os.Getpagesize()
	for _, n := range []int{0, -page, 1, page - 1, page + 1, 160<<20 + 100} {
		if f, err := Create("bad", n); !errors.Is(err, ErrBadSize) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Create(bad, %d) = %v, want ErrBadSize", n, err)
		}
	}
	f, err := Create("large", 160<<20) // pages come only as they are touched
	if err != nil {
		t.Fatalf("Create(large, 160 MiB) = %v", err)
	}
	f.Close()
}

// Map takes only memory whose size is sealed: another holder could shrink
// an unsealed memfd under the mapping.
func TestMapRefusesUnsealed(t *testing.T) {
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "unsealed")
	defer f.Close()
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	if b, err := Map(f); !errors.Is(err, ErrNotSealed) {
		if err == nil {
			Unmap(b)
		}
		t.Errorf("Map(unsealed memfd) = %v, want ErrNotSealed", err)
	}
}

// What a restart does: the process that mapped the memory goes (its
// mapping and its descriptor with it), init's descriptor stays, and the
// next generation maps it again and finds what was written.
func TestContentsOutliveTheMapping(t *testing.T) {
	held := create(t) // init's descriptor
	gen1, err := passed(held)
	if err != nil {
		t.Fatal(err)
	}
	b := mapped(t, gen1)
	gen1.Close()
	copy(b[size/2:], "state of generation 1")
	if err := Unmap(b); err != nil {
		t.Fatalf("Unmap = %v", err)
	}

	gen2, err := passed(held)
	if err != nil {
		t.Fatal(err)
	}
	defer gen2.Close()
	b = mapped(t, gen2)
	defer Unmap(b)
	if got := string(b[size/2 : size/2+21]); got != "state of generation 1" {
		t.Errorf("generation 2 reads %q, want what generation 1 left", got)
	}
}

// passed is a descriptor of the same memory, as one received over the
// wiring socket is.
func passed(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
