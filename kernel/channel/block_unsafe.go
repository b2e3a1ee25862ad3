package channel

import (
	"errors"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a process sleeps
//
// A server sleeps until a message or its timeout, and under TCG what that
// costs is context switches: each empties the emulator's TLB, a hundred
// microseconds and more of the guest's time. So a sleep is parked in Go's
// own network poller: the goroutine waits for an epoll set of its
// descriptors (a poller) to become readable, its thread blocks in the
// runtime's epoll_wait, and the wake-up is that one thread's switch.
//
// Told to Go's scheduler the usual way instead (a blocking system call),
// a sleep cost four to five switches per wake-up (strace and per-thread
// counts, Go 1.26): every system call entered while all of the process's
// Ps are idle wakes sysmon out of its deep sleep, which then looks every
// 20 µs for a while; and the scheduler hands the P to another thread.
// Sleeping without telling the scheduler (RawSyscall) avoided that but
// kept the P busy in the runtime's eyes, so sysmon looked every 10 ms for
// as long as the process slept: a hundred switches a second in every
// component, most of the idle appliance's CPU (keepnet trace).
//
// In the poller sysmon sleeps deeply while the process sleeps, so nothing
// on a sleeping process's path may be an ordinary system call, which
// would wake it: the eventfd writes and reads, the epoll calls and the
// drivers' interrupt calls are raw (they never block).
//
// Each poller watches its descriptors one-shot: a descriptor closed while
// watched (a neighbour's old generation) can then report at most once
// more, and a new file that reuses its number is added afresh. A sleep
// arms only what is not armed already: an Endpoint's descriptor stays
// armed until it reports, so a poller remembers which it armed (by the
// Endpoint's key, which, unlike a descriptor's number, is never reused)
// and re-arms those that reported since. Under load most of a server's
// neighbours are quiet in a given sleep, and each epoll_ctl saved is a
// system call (a third of ip's and syscall's, measured with keepnet trace
// --syscalls under wrk). So is a descriptor its owner declared Steady (the
// wiring watcher's eventfd, open as long as the process); others (a
// driver's interrupt) are armed on every sleep, as their owners may close
// and reopen them.

// GODEBUG is the setting of a process whose event loop is its work: init
// starts the servers with it. Go's asynchronous preemption signals a
// goroutine that has run for 10 ms; a loop that moves messages for longer
// is not helped by it, and under TCG the signals were 9–23% of some
// servers' profiles.
const GODEBUG = "asyncpreemptoff=1"

// poller is an epoll set the netpoller watches, for one sleep at a time.
type poller struct {
	epfd int
	file *os.File // epfd, registered with Go's netpoller
	rc   syscall.RawConn
	ev   [16]unix.EpollEvent
	// look is rc.Read's function: it takes the ready events into ev and
	// their number into n. Made once, so that a sleep allocates nothing.
	look func(uintptr) bool
	n    int
	// armed is the Endpoints' descriptors armed and not reported since.
	armed []armedFd
}

// armedFd is a descriptor a poller armed for the Endpoint with key.
type armedFd struct {
	fd  int32
	key uint64
}

// maxArmed bounds a poller's record; beyond it the record starts afresh
// (re-arming an armed descriptor does no harm).
const maxArmed = 64

// pollers are the process's idle pollers: one per goroutine that sleeps
// at a time, made on first need.
var pollers struct {
	sync.Mutex
	free []*poller
}

func getPoller() (*poller, error) {
	pollers.Lock()
	if n := len(pollers.free); n > 0 {
		p := pollers.free[n-1]
		pollers.free = pollers.free[:n-1]
		pollers.Unlock()
		return p, nil
	}
	pollers.Unlock()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Nonblocking, or os.NewFile would not give it to the netpoller; an
	// epoll descriptor's own flags change nothing else.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(epfd), "keepnet-sleep")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &poller{epfd: epfd, file: f, rc: rc}
	p.look = func(uintptr) bool {
		p.n = epollWait(p.epfd, p.ev[:])
		return p.n != 0
	}
	return p, nil
}

func putPoller(p *poller) {
	pollers.Lock()
	pollers.free = append(pollers.free, p)
	pollers.Unlock()
}

// block waits until one of fds is readable or timeout has passed
// (negative: forever), sets the Revents of those it found readable and
// returns how many are. A timeout or a signal is 0, nil. keys, nil or as
// long as fds, names the Endpoint each descriptor belongs to (0: none).
func block(fds []unix.PollFd, keys []uint64, timeout time.Duration) (int, error) {
	for i := range fds {
		fds[i].Revents = 0
	}
	p, err := getPoller()
	if err != nil {
		return ppoll(fds, timeout) // no descriptor to spare: the scheduler's way
	}
	defer putPoller(p)
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		for i, f := range fds {
			var key uint64
			if keys != nil {
				key = keys[i]
			}
			if err := p.arm(f.Fd, key); err != nil {
				return 0, err
			}
		}
		n, err := p.wait(timeout)
		p.reported(p.ev[:n])
		if err != nil || n == 0 {
			return 0, err
		}
		ready := 0
		for _, e := range p.ev[:n] {
			for i := range fds {
				if fds[i].Fd == e.Fd && fds[i].Revents == 0 {
					fds[i].Revents = unix.POLLIN
					ready++
				}
			}
		}
		if ready > 0 || timeout == 0 {
			return ready, nil
		}
		// Only a descriptor an earlier sleep on this poller left armed:
		// sleep on for what is left of the timeout.
		if timeout > 0 {
			if timeout = time.Until(deadline); timeout <= 0 {
				return 0, nil
			}
		}
	}
}

// arm watches fd for one readiness: re-armed if it is in the set, added
// if not. An Endpoint's descriptor (key not 0) that this poller armed
// and that has not reported since is armed already: no system call.
func (p *poller) arm(fd int32, key uint64) error {
	i := slices.IndexFunc(p.armed, func(a armedFd) bool { return a.fd == fd })
	if i >= 0 && key != 0 && p.armed[i].key == key {
		return nil
	}
	if armHook != nil {
		armHook(fd)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: fd}
	errno := epollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	if errno == unix.ENOENT {
		errno = epollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}
	if errno != 0 {
		return os.NewSyscallError("epoll_ctl", errno)
	}
	switch {
	case key == 0 && i >= 0:
		p.armed = slices.Delete(p.armed, i, i+1)
	case key == 0:
	case i >= 0:
		p.armed[i].key = key // the number's new file
	case len(p.armed) == maxArmed:
		p.armed = append(p.armed[:0], armedFd{fd, key})
	default:
		p.armed = append(p.armed, armedFd{fd, key})
	}
	return nil
}

// armHook, set by tests, sees each descriptor arm arms.
var armHook func(fd int32)

// reported forgets the descriptors of events: one-shot, they are disarmed
// now.
func (p *poller) reported(events []unix.EpollEvent) {
	for _, e := range events {
		p.armed = slices.DeleteFunc(p.armed, func(a armedFd) bool { return a.fd == e.Fd })
	}
}

// wait waits for the set's events, at most timeout (negative: no limit),
// and returns how many it put in p.ev. The netpoller's read calls look
// before it parks, so events already there cost one epoll_wait either way.
func (p *poller) wait(timeout time.Duration) (int, error) {
	if timeout == 0 {
		return max(epollWait(p.epfd, p.ev[:]), 0), nil
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := p.file.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	err := p.rc.Read(p.look)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	return max(p.n, 0), err
}

// epollWait takes the set's ready events without blocking; -1 for EINTR.
//
// Each system call is called directly, with its pointers converted in the
// call: only then does the compiler keep the buffers where the kernel
// reads and writes them (unsafe.Pointer's rule 4).
func epollWait(epfd int, ev []unix.EpollEvent) int {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(ev))), uintptr(len(ev)), 0, 0, 0)
	if errno != 0 {
		return -1
	}
	return int(n)
}

func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) unix.Errno {
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errno
}

// ppoll is ppoll(2) for at most d (negative: no limit), told to the
// scheduler: the way to sleep when no poller can be made. EINTR counts as
// a timeout.
func ppoll(fds []unix.PollFd, d time.Duration) (int, error) {
	var tsp *unix.Timespec
	if d >= 0 {
		ts := unix.NsecToTimespec(int64(d))
		tsp = &ts
	}
	n, _, errno := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(unsafe.SliceData(fds))), uintptr(len(fds)),
		uintptr(unsafe.Pointer(tsp)), 0, 0, 0)
	switch errno {
	case 0:
		return int(n), nil
	case unix.EINTR:
		return 0, nil
	}
	return 0, os.NewSyscallError("ppoll", errno)
}
