package supervisor

import (
	"fmt"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// startOn starts cmd confined to cpus (none: wherever the supervisor may
// run). A child inherits the affinity of the thread that forks it, and
// exec.Cmd forks on the calling goroutine's thread: so that thread is
// locked, confined to cpus for the fork, and given its own set back. The
// child's threads, all made after the fork, inherit it: nothing in the
// child has to set it, and no thread of it escapes.
func startOn(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var own, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &own); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("confining %s to processors %v: %w", cmd.Path, cpus, err)
	}
	// Setting back a set the thread had cannot fail.
	defer unix.SchedSetaffinity(0, &own)
	return cmd.Start()
}
