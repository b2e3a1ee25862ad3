package channel

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// WaitAny is a server loop's sleep: it blocks until a message is waiting on
// one of ports, one of fds is readable, or d has passed, and reports in
// readable, which must be as long as fds, which fds are readable. The
// caller's array to report in makes a sleep allocate nothing: a server
// sleeps once per idle round. It arms each port first (Arm) and returns at once if a
// message slipped in meanwhile. An in-process port (NewLocal) has no
// descriptor to poll: then it naps at most a millisecond.
//
// A port that is broken or closed makes WaitAny return its error at once
// (no message will ever come on it): the loop must end, not call again.
//
// System calls and context switches are what a wake-up costs (under TCG
// each is dear): the sleep is parked in Go's netpoller ("How a process
// sleeps" in block_unsafe.go), and only the eventfds it found signalled
// are read — by the next sleep's Arm, not on waking, so that the loop
// moves the messages that woke it one system call sooner. A port armed and then
// abandoned because another had a message is only disarmed, not drained:
// if its peer signalled it meanwhile, the next WaitAny returns at once,
// consuming that wake-up.
func WaitAny(readable []bool, ports []*Endpoint, fds []int, d time.Duration) error {
	clear(readable)
	var pfdBuf [8]unix.PollFd
	var keyBuf [8]uint64
	var armedBuf [8]*Endpoint
	pfds, keys := pfdBuf[:0], keyBuf[:0] // grow past 8 by append
	for _, fd := range fds {
		pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		keys = append(keys, steadyKey(fd)) // 0 unless Steady: armed on every sleep
	}
	armed := armedBuf[:0]
	for _, p := range ports {
		if ready, err := p.Arm(); ready || err != nil {
			for _, a := range armed {
				a.rx.clearSleeping()
			}
			return err
		}
		armed = append(armed, p)
		if fd := p.Fd(); fd >= 0 {
			pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
			keys = append(keys, p.key)
		} else {
			d = min(d, time.Millisecond)
		}
	}
	block(pfds, keys, max(d, time.Millisecond))
	for i := range fds {
		readable[i] = pfds[i].Revents&unix.POLLIN != 0
	}
	next := len(fds)
	for _, p := range armed {
		p.rx.clearSleeping()
		if p.Fd() < 0 {
			p.sleep.drain() // in process: no system call
			continue
		}
		if pfds[next].Revents&unix.POLLIN != 0 {
			p.unread = true // read by the next Arm: the messages first
		}
		next++
	}
	return nil
}

// Steady tells the process's sleeps that fd, a descriptor they watch
// besides their Endpoints (the wiring watcher's eventfd), stays the same
// open file until Unsteady: WaitAny then arms it once, and again only after
// it reports, as it does an Endpoint's ("How a process sleeps" in
// block_unsafe.go). Call Unsteady before closing it: a number closed and
// reused under its old key would never be armed.
func Steady(fd int) { setSteady(fd, endpointKeys.Add(1)) }

// Unsteady undoes Steady; call it before closing fd.
func Unsteady(fd int) { setSteady(fd, 0) }

// setSteady gives fd key in the list of Steady descriptors, or takes it
// off the list (key 0).
func setSteady(fd int, key uint64) {
	steady.Lock()
	defer steady.Unlock()
	next := slices.DeleteFunc(slices.Clone(steadyList()), func(s steadyFd) bool { return s.fd == fd })
	if key != 0 {
		next = append(next, steadyFd{fd, key})
	}
	steady.list.Store(&next)
}

// steady is the process's Steady descriptors, copied on each change so
// that a sleep reads them without a lock or an allocation.
var steady struct {
	sync.Mutex
	list atomic.Pointer[[]steadyFd]
}

type steadyFd struct {
	fd  int
	key uint64
}

func steadyList() []steadyFd {
	if l := steady.list.Load(); l != nil {
		return *l
	}
	return nil
}

// steadyKey is fd's key if it is Steady, else 0.
func steadyKey(fd int) uint64 {
	for _, s := range steadyList() {
		if s.fd == fd {
			return s.key
		}
	}
	return 0
}
