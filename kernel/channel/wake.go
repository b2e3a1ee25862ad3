package channel

import (
	"encoding/binary"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// signal is how a receiver sleeps and a sender wakes it: an eventfd between
// processes, a Go channel in process.
type signal interface {
	// wake wakes the side sleeping on the signal (or makes its next sleep
	// return at once).
	wake() error
	// sleep blocks until woken or timeout (negative: forever), consuming
	// the wake-up; it returns os.ErrDeadlineExceeded on timeout.
	sleep(timeout time.Duration) error
	// drain consumes a pending wake-up without blocking.
	drain()
	fd() int
	close() error
}

// eventfd is a signal between processes (eventfd(2)), nonblocking
// (dupEventfd). Its calls are raw system calls: a sleeping process's
// sysmon stays asleep ("How a process sleeps" in block_unsafe.go).
type eventfd int

var one = binary.NativeEndian.AppendUint64(nil, 1)

func (e eventfd) wake() error {
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(e), uintptr(unsafe.Pointer(&one[0])), 8)
		switch errno {
		case unix.EINTR:
			continue
		case 0, unix.EAGAIN: // EAGAIN: counter saturated, the sleeper will wake anyway
			return nil
		}
		return os.NewSyscallError("write", errno)
	}
}

func (e eventfd) sleep(timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(e), Events: unix.POLLIN}}
	n, err := block(fds, nil, timeout)
	if err != nil {
		return err
	}
	if n == 0 {
		return os.ErrDeadlineExceeded
	}
	e.read()
	return nil
}

// drain consumes a pending wake-up, if any.
func (e eventfd) drain() { e.read() }

// read consumes the counter, if it is not zero.
func (e eventfd) read() {
	var b [8]byte
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(e), uintptr(unsafe.Pointer(&b[0])), 8)
		if errno != unix.EINTR {
			return
		}
	}
}

func (e eventfd) fd() int      { return int(e) }
func (e eventfd) close() error { return unix.Close(int(e)) }

// chanSignal is a signal within one process.
type chanSignal chan struct{}

func (c chanSignal) wake() error {
	select {
	case c <- struct{}{}:
	default: // a wake-up is already pending
	}
	return nil
}

func (c chanSignal) sleep(timeout time.Duration) error {
	if timeout < 0 {
		<-c
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c:
		return nil
	case <-t.C:
		return os.ErrDeadlineExceeded
	}
}

func (c chanSignal) drain() {
	select {
	case <-c:
	default:
	}
}

func (c chanSignal) fd() int      { return -1 }
func (c chanSignal) close() error { return nil }

// Handing the processor on
//
// The stack's servers share one processor, and a message that wakes a
// sleeping neighbour makes it runnable there, but it runs only when the
// sender sleeps: SCHED_BATCH (boot/pid1) keeps the wake-up from
// preempting, so that a busy sender finishes its batch. A sender whose
// round woke a neighbour, with no batch to finish, would then make the
// message wait for its own remaining chores (the driver's: refilling the
// ring, unmasking its interrupt, two more polls; a millisecond of a ping's
// round trip under TCG). Such a sender yields once instead (Handoff): the
// neighbour runs now, and the sender's chores after it. Under load the
// neighbours rarely sleep, nothing is woken and nobody yields.

// handoff is whether Handoff yields: KEEPNET_HANDOFF=off (a kernel
// argument reaches every component as its environment) turns it off, for
// comparison.
var handoff = os.Getenv("KEEPNET_HANDOFF") != "off"

// Wakeups is how many times this side woke its peer: a loop compares it
// across a round to know whether the round woke anyone (Handoff).
func (e *Endpoint) Wakeups() uint64 { return e.wakeups.Load() }

// handoffs counts Handoff's yields in this process.
var handoffs atomic.Uint64

// Handoffs is how many times this process yielded to a neighbour it woke.
func Handoffs() uint64 { return handoffs.Load() }

// Handoff yields the processor once if woke: a round that woke a
// neighbour lets it run before the rest of the round's chores. A raw
// system call: it never blocks.
func Handoff(woke bool) {
	if woke && handoff {
		handoffs.Add(1)
		unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	}
}
