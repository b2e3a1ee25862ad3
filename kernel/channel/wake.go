package channel

import (
	"encoding/binary"
	"os"
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
	n, err := block(fds, timeout)
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
