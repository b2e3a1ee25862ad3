package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// EnvSeccomp is the environment variable init sets for every component:
// "1" makes Enter install the component's seccomp filter, "0" (the kernel
// parameter keepnet.seccomp=0, for debugging) does not. Unset, as when a
// component runs outside the appliance in a test, means 0.
const EnvSeccomp = "KEEPNET_SECCOMP"

// Enter confines the calling process for good: no_new_privs, then the
// seccomp filter of profile p when EnvSeccomp says so. A component calls
// it first thing in main and exits if it fails: it must not run with less
// confinement than it was given.
//
// Both apply to every thread. no_new_privs is a flag of each thread, and
// the Go runtime has started several by now: AllThreadsSyscall sets it on
// all of them, and threads made later inherit it. The filter is installed
// with TSYNC, which puts it, and the flag, on every thread; the calling
// thread is locked meanwhile, since the kernel refuses the filter (EACCES)
// to a thread without the flag.
func Enter(p Profile) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := noNewPrivs(); err != nil {
		return fmt.Errorf("sandbox: no_new_privs: %w", err)
	}
	if os.Getenv(EnvSeccomp) != "1" {
		return nil
	}
	return p.install()
}

// noNewPrivs sets no_new_privs on every thread, or, in a binary linked
// with cgo (where AllThreadsSyscall cannot work: tests on a host), on the
// calling thread, whose seccomp TSYNC then spreads it.
func noNewPrivs() error {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0)
	if errno == syscall.ENOTSUP {
		return unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
	}
	if errno != 0 {
		return errno
	}
	return nil
}
