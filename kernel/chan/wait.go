package channel

import (
	"time"

	"golang.org/x/sys/unix"
)

// WaitAny is a server loop's sleep: it blocks until a message is waiting on
// one of ports, one of fds is readable, or d has passed, and reports which
// fds are readable. It arms each port first (Arm) and returns at once if a
// message slipped in meanwhile. An in-process port (NewLocal) has no
// descriptor to poll: then it naps at most a millisecond.
func WaitAny(ports []*Endpoint, fds []int, d time.Duration) (readable []bool) {
	readable = make([]bool, len(fds))
	pfds := make([]unix.PollFd, 0, len(fds)+len(ports))
	for _, fd := range fds {
		pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	armed := ports[:0:0]
	defer func() {
		for _, p := range armed {
			p.Disarm()
		}
	}()
	for _, p := range ports {
		if p.Arm() {
			return readable
		}
		armed = append(armed, p)
		if fd := p.Fd(); fd >= 0 {
			pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		} else {
			d = min(d, time.Millisecond)
		}
	}
	for {
		_, err := unix.Poll(pfds, max(int(d.Milliseconds()), 1))
		if err != unix.EINTR {
			break
		}
	}
	for i := range fds {
		readable[i] = pfds[i].Revents&unix.POLLIN != 0
	}
	return readable
}
