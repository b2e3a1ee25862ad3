package wiring

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A pool handed over read-only cannot be mapped writable, and the probe
// says so; a pool this process writes is not probed.
func TestProbePools(t *testing.T) {
	rw, err := unix.MemfdCreate("probe.rw", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rw)
	if err := unix.Ftruncate(rw, 1<<16); err != nil {
		t.Fatal(err)
	}
	ro, err := unix.Open("/proc/self/fd/"+strconv.Itoa(rw), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ro)

	var mine string
	for _, l := range ProbePools() {
		if strings.Contains(l, "pool probe.rw ") {
			if mine != "" {
				t.Errorf("two lines for one read-only pool: %q and %q", mine, l)
			}
			mine = l
		}
	}
	if !strings.Contains(mine, "(fd "+strconv.Itoa(ro)+", read-only)") || !strings.Contains(mine, "map writable: refused (permission denied)") {
		t.Errorf("probe line %q: want fd %d, read-only, map writable refused", mine, ro)
	}
	// Root may reopen its own memfd read-write (it bypasses the file's
	// mode); a component's uid may not, which the QEMU test checks.
	if os.Geteuid() != 0 && !strings.Contains(mine, "reopen read-write: refused") {
		t.Errorf("probe line %q: want reopen refused", mine)
	}
}
