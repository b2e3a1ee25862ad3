package wiring

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// HookProbePools makes a component try to write every pool it was given
// read-only, as a fault or an attacker in it would: map the descriptor
// writable, and open it again read-write through /proc. It logs one line
// per pool ("probe: pool NAME ..."), so a test can check from the console
// that the kernel refused both (issue 11: tcp cannot map ip's pools
// writable).
const HookProbePools = "probe-pools"

// ProbePools runs HookProbePools and returns its lines.
func ProbePools() []string {
	dir := "/proc/self/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []string{fmt.Sprintf("probe: %v", err)}
	}
	var lines []string
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "/memfd:") {
			continue // pools are memfds
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil || flags&unix.O_ACCMODE != unix.O_RDONLY {
			continue // a pool this component writes
		}
		name := strings.TrimSuffix(strings.TrimPrefix(target, "/memfd:"), " (deleted)")
		lines = append(lines, fmt.Sprintf("probe: pool %s (fd %d, read-only): map writable: %s; reopen read-write: %s",
			name, fd, refused(mapWritable(fd)), refused(reopenWritable(fd))))
	}
	if len(lines) == 0 {
		lines = append(lines, "probe: no read-only pools")
	}
	return lines
}

// refused says how an attempt to write ended: "refused (why)" or
// "ALLOWED".
func refused(err error) string {
	if err == nil {
		return "ALLOWED"
	}
	return fmt.Sprintf("refused (%v)", err)
}

func mapWritable(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	size := int(min(st.Size, 2<<20))
	if size == 0 {
		return errors.New("empty")
	}
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	unix.Munmap(b)
	return nil
}

func reopenWritable(fd int) error {
	nfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	unix.Close(nfd)
	return nil
}

func probePools() {
	for _, l := range ProbePools() {
		log.Print(l)
	}
}
