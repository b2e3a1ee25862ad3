package channel

import (
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a process sleeps
//
// A server sleeps in ppoll(2) until a message or its timeout. Told to Go's
// scheduler the usual way (a blocking system call), such a sleep costs
// four to five context switches per wake-up instead of one (measured with
// strace and per-thread counts, Go 1.26): one of the sleeping thread; two
// of sysmon, which the return from the system call wakes out of its deep
// sleep (every P was idle) and which looks again 20 µs later before it
// sleeps again; and one of another thread the scheduler starts. In the
// appliance the driver's sysmon switched 650 times a second while the
// driver was idle. Under TCG a switch costs tens of microseconds.
//
// So while a process is busy (a message woke one of its sleeps less than
// busyWindow ago) it sleeps without telling the scheduler: the thread
// keeps its P, sysmon settles at one look every 10 ms, and a wake-up is
// one switch. An idle process sleeps the usual way and costs nothing
// while it sleeps (sysmon sleeps deeply too): a hundred looks a second in
// every idle component would cost the idle appliance a tenth of a CPU
// under TCG.
//
// A stop-the-world garbage collection waits for a quiet sleep to end: the
// scheduler believes the sleeper runs. Go's asynchronous preemption
// signals it, which ends the sleep at once; but sysmon also signals a
// goroutine it believes has run for 10 ms, so that a quiet sleeper is
// woken a hundred times a second. The servers that are one event loop,
// in which the collections start (they allocate in the loop), run with
// asynchronous preemption off (GODEBUG, set by init); a quiet sleep is at
// most rawSlice long, which bounds the wait of a collection another of
// their goroutines starts. The applications keep it on: their other
// goroutines allocate all the time.

// GODEBUG is the setting of a process whose garbage collections start in
// the goroutine that sleeps here: init starts the servers with it.
const GODEBUG = "asyncpreemptoff=1"

const (
	busyWindow = time.Second
	rawSlice   = 50 * time.Millisecond
)

var (
	epoch       = time.Now()
	lastMessage atomic.Int64 // since epoch: when a message last ended a sleep
)

// messaged notes that a message ended (or averted) a sleep.
func messaged() { lastMessage.Store(int64(time.Since(epoch))) }

// block waits until one of fds is ready or timeout has passed (negative:
// forever) and returns how many are ready.
func block(fds []unix.PollFd, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Duration(-1)
		if timeout >= 0 {
			left = max(time.Until(deadline), 0)
		}
		n, err := sleepOnce(fds, left)
		if n > 0 || err != nil {
			return n, err
		}
		if timeout >= 0 && time.Until(deadline) <= 0 {
			return 0, nil
		}
	}
}

// sleepOnce is one ppoll, quiet while the process is busy; 0 means it
// timed out or a signal ended it.
func sleepOnce(fds []unix.PollFd, left time.Duration) (int, error) {
	busy := time.Duration(lastMessage.Load()) + busyWindow - time.Since(epoch)
	if busy <= 0 {
		return ppoll(fds, left, false)
	}
	d := min(rawSlice, busy)
	if left >= 0 {
		d = min(d, left)
	}
	return ppoll(fds, d, true)
}

// ppoll is ppoll(2) for at most d (negative: no limit); quiet: without
// telling the scheduler. EINTR counts as a timeout.
//
// Each system call is called directly, with its pointers converted in the
// call: only then does the compiler keep fds and the timeout where the
// kernel reads and writes them (unsafe.Pointer's rule 4). WaitAny's fds
// live on its stack; through a function value, a stack growth before the
// call could move them away from the addresses the kernel writes to.
func ppoll(fds []unix.PollFd, d time.Duration, quiet bool) (int, error) {
	var tsp *unix.Timespec
	if d >= 0 {
		ts := unix.NsecToTimespec(int64(d))
		tsp = &ts
	}
	var n uintptr
	var errno unix.Errno
	if quiet {
		n, _, errno = unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(unsafe.SliceData(fds))), uintptr(len(fds)),
			uintptr(unsafe.Pointer(tsp)), 0, 0, 0)
	} else {
		n, _, errno = unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(unsafe.SliceData(fds))), uintptr(len(fds)),
			uintptr(unsafe.Pointer(tsp)), 0, 0, 0)
	}
	switch errno {
	case 0:
		return int(n), nil
	case unix.EINTR:
		return 0, nil
	}
	return 0, os.NewSyscallError("ppoll", errno)
}
