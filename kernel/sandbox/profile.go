package sandbox

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// Profile is the seccomp allow-list of one kind of component: the system
// calls the Go runtime makes, those of the IPC every component shares
// (channels, pools, the wiring socket, the store's socket), and the
// component's own. Any other call kills the process (SECCOMP_RET_KILL_PROCESS),
// and the kernel logs the call's number (an audit line, syscall=N). Killing
// rather than failing the call (RET_ERRNO) is the multiserver answer: a
// component doing what it never does is faulty or subverted, and fail-stop
// plus a restart is what every component is built for, where an EPERM
// might be retried or ignored. A missing entry shows at once as a crash
// loop whose last exit is "signal: bad system call".
type Profile struct {
	Name  string
	Extra []uintptr // on top of base
	// Listens: may bind, listen and accept (the store's Unix socket, the
	// applications' listeners on the Linux stack).
	Listens bool
	// AnySocket: may open sockets of any family. Without it socket()
	// takes only AF_UNIX: the stack's servers never touch the kernel's
	// own network stack.
	AnySocket bool
}

// base is what every component needs: the Go runtime (memory, threads,
// signals, timers, the network poller, the CPU profiler's timers), files
// and sockets, and the shared memory and wake-ups of kernel/channel.
// Absent on purpose, among others: execve, ptrace, mount, the set*id
// calls, bpf, module loading, unshare/setns, reboot, process_vm_*.
var base = []uintptr{
	// Memory and threads.
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MADVISE, unix.SYS_MPROTECT, unix.SYS_MREMAP, unix.SYS_MINCORE,
	unix.SYS_BRK, unix.SYS_CLONE, unix.SYS_CLONE3, unix.SYS_EXIT, unix.SYS_EXIT_GROUP,
	unix.SYS_FUTEX, unix.SYS_SCHED_YIELD, unix.SYS_SCHED_GETAFFINITY, unix.SYS_GETTID, unix.SYS_GETPID,
	unix.SYS_GETPPID, unix.SYS_SET_ROBUST_LIST, unix.SYS_RSEQ, unix.SYS_PRLIMIT64, unix.SYS_GETRLIMIT,
	unix.SYS_ARCH_PRCTL, unix.SYS_PRCTL, unix.SYS_UNAME, unix.SYS_GETRANDOM,
	unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID, unix.SYS_SYSINFO,
	// Signals and time.
	unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
	unix.SYS_TGKILL, unix.SYS_KILL, unix.SYS_RESTART_SYSCALL,
	unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_CLOCK_GETTIME, unix.SYS_GETTIMEOFDAY,
	unix.SYS_SETITIMER, unix.SYS_TIMER_CREATE, unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_DELETE,
	// Files and descriptors.
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV, unix.SYS_PREAD64, unix.SYS_PWRITE64,
	unix.SYS_OPENAT, unix.SYS_CLOSE, unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_STATX, unix.SYS_LSEEK,
	unix.SYS_FCNTL, unix.SYS_DUP, unix.SYS_DUP3, unix.SYS_PIPE2, unix.SYS_GETDENTS64, unix.SYS_READLINKAT,
	unix.SYS_MKDIRAT, unix.SYS_RENAMEAT, unix.SYS_UNLINKAT, unix.SYS_FTRUNCATE, unix.SYS_FSYNC,
	unix.SYS_GETCWD, unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_IOCTL,
	// Polling and wake-ups.
	unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_WAIT,
	unix.SYS_PPOLL, unix.SYS_POLL, unix.SYS_PSELECT6, unix.SYS_EVENTFD2,
	// Sockets (Unix ones for wiring, the store and init; the Linux stack's
	// for the applications there). socket() itself: see Profile.AnySocket.
	unix.SYS_SOCKETPAIR, unix.SYS_CONNECT, unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME, unix.SYS_GETSOCKOPT, unix.SYS_SETSOCKOPT,
	unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDTO, unix.SYS_RECVFROM, unix.SYS_SHUTDOWN,
	unix.SYS_SENDMMSG, unix.SYS_RECVMMSG,
}

// The profiles, one per kind of component.
var (
	Store     = Profile{Name: "store", Listens: true}
	IP        = Profile{Name: "ip"}
	Transport = Profile{Name: "transport"} // udp, tcp
	Syscall   = Profile{Name: "syscall"}
	Filter    = Profile{Name: "pf"} // the packet filter
	App       = Profile{Name: "app", Listens: true, AnySocket: true}
	// Driver also pins its DMA memory.
	Driver = Profile{Name: "driver", Extra: []uintptr{unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MLOCK2}}
)

// listening are the calls of a server socket.
var listening = []uintptr{unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT4, unix.SYS_ACCEPT}

// Allowed lists the system calls p allows outright, sorted, without
// duplicates (socket() is allowed with its family checked unless
// AnySocket).
func (p Profile) Allowed() []uintptr {
	nrs := append(slices.Clone(base), p.Extra...)
	if p.Listens {
		nrs = append(nrs, listening...)
	}
	if p.AnySocket {
		nrs = append(nrs, unix.SYS_SOCKET)
	}
	slices.Sort(nrs)
	return slices.Compact(nrs)
}

// Offsets in struct seccomp_data (linux/seccomp.h).
const (
	dataNR   = 0
	dataArch = 4
	dataArg0 = 16 // the low 32 bits of args[0], little-endian
)

// Filter is p's classic BPF program: check the architecture (an x86-64
// process could make i386 or x32 calls, numbered differently), let
// socket() open only Unix sockets unless AnySocket, then allow the listed
// numbers and kill on anything else.
func (p Profile) Filter() ([]unix.SockFilter, error) {
	var pre []insn
	if !p.AnySocket {
		pre = []insn{
			{code: jeqK, k: unix.SYS_SOCKET, jf: skip(2)},
			{code: ldAbs, k: dataArg0},
			{code: jeqK, k: unix.AF_UNIX, jt: toAllow, jf: toDeny},
		}
	}
	return filter(pre, p.Allowed(), unix.SECCOMP_RET_KILL_PROCESS)
}

// Instructions of the programs.
const (
	ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	retK  = unix.BPF_RET | unix.BPF_K
)

// insn is an instruction whose jumps name their target: the next
// instruction (0), one further on (skip), or the final allow or deny.
type insn struct {
	code   uint16
	k      uint32
	jt, jf target
}

type target int

const (
	toAllow target = -1
	toDeny  target = -2
)

// skip jumps over n instructions.
func skip(n int) target { return target(n) }

// filter assembles: check the architecture, run pre (with the system
// call number loaded), allow nrs, deny the rest. A jump reaches at most
// 255 instructions ahead: about 250 calls.
func filter(pre []insn, nrs []uintptr, deny uint32) ([]unix.SockFilter, error) {
	prog := []insn{
		{code: ldAbs, k: dataArch},
		{code: jeqK, k: unix.AUDIT_ARCH_X86_64, jf: toDeny},
		{code: ldAbs, k: dataNR},
	}
	prog = append(prog, pre...)
	for _, nr := range nrs {
		prog = append(prog, insn{code: jeqK, k: uint32(nr), jt: toAllow})
	}
	prog = append(prog, insn{code: retK, k: deny}, insn{code: retK, k: unix.SECCOMP_RET_ALLOW})
	denyAt, allowAt := len(prog)-2, len(prog)-1

	out := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		out[i] = unix.SockFilter{Code: in.code, K: in.k}
		if in.code != jeqK {
			continue
		}
		for _, j := range []struct {
			t   target
			off *uint8
		}{{in.jt, &out[i].Jt}, {in.jf, &out[i].Jf}} {
			to := i + 1 + int(j.t)
			switch j.t {
			case toAllow:
				to = allowAt
			case toDeny:
				to = denyAt
			}
			d := to - i - 1
			if d < 0 || d > 255 {
				return nil, fmt.Errorf("sandbox: a jump of %d instructions in a %d-instruction filter (too many system calls)", d, len(prog))
			}
			*j.off = uint8(d)
		}
	}
	return out, nil
}

// install loads p's filter on every thread of the process (TSYNC: the Go
// runtime has several by now). no_new_privs must be set.
func (p Profile) install() error {
	prog, err := p.Filter()
	if err != nil {
		return err
	}
	return load(prog)
}
