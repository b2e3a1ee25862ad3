package channel

import (
	"encoding/binary"
	"os"
	"time"

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

// eventfd is a signal between processes (eventfd(2)). Its O_NONBLOCK flag
// is not relied on: it is read only after poll reports it readable, and this
// side is its only reader.
type eventfd int

var one = binary.NativeEndian.AppendUint64(nil, 1)

func (e eventfd) wake() error {
	for {
		_, err := unix.Write(int(e), one)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN { // counter saturated: the sleeper will wake anyway
			return nil
		}
		return err
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

func (e eventfd) drain() {
	fds := []unix.PollFd{{Fd: int32(e), Events: unix.POLLIN}}
	if n, _ := unix.Poll(fds, 0); n > 0 {
		e.read()
	}
}

// read consumes the counter; poll has said it is nonzero.
func (e eventfd) read() {
	var b [8]byte
	for {
		if _, err := unix.Read(int(e), b[:]); err != unix.EINTR {
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
