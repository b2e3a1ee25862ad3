package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// load installs prog as the seccomp filter of every thread.
func load(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("sandbox: installing the %d-instruction seccomp filter: %w", len(prog), errno)
	}
	return nil
}
