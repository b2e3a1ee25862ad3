package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets the subset of classic BPF the filters use on one
// seccomp_data, as the kernel would, and returns the action.
func run(t *testing.T, prog []unix.SockFilter, arch, nr uint32, arg0 ...uint32) uint32 {
	t.Helper()
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			switch in.K {
			case dataNR:
				acc = nr
			case dataArch:
				acc = arch
			case dataArg0:
				acc = arg0[0]
			default:
				t.Fatalf("pc %d: load of offset %d", pc, in.K)
			}
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("pc %d: opcode %#x", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

func TestFilter(t *testing.T) {
	const kill = unix.SECCOMP_RET_KILL_PROCESS
	prog, err := Transport.Filter()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		arch, nr uint32
		want     uint32
	}{
		{"read", unix.AUDIT_ARCH_X86_64, unix.SYS_READ, unix.SECCOMP_RET_ALLOW}, // the first entry
		{"listen", unix.AUDIT_ARCH_X86_64, unix.SYS_LISTEN, kill},
		{"futex", unix.AUDIT_ARCH_X86_64, unix.SYS_FUTEX, unix.SECCOMP_RET_ALLOW},
		{"clone3", unix.AUDIT_ARCH_X86_64, unix.SYS_CLONE3, unix.SECCOMP_RET_ALLOW},
		{"execve", unix.AUDIT_ARCH_X86_64, unix.SYS_EXECVE, kill},
		{"ptrace", unix.AUDIT_ARCH_X86_64, unix.SYS_PTRACE, kill},
		{"mlock (the driver's)", unix.AUDIT_ARCH_X86_64, unix.SYS_MLOCK, kill},
		{"x32 read", unix.AUDIT_ARCH_X86_64, 0x40000000 | unix.SYS_READ, kill},
		{"i386 read", 0x40000003, 3, kill},
	} {
		if got := run(t, prog, tc.arch, tc.nr); got != tc.want {
			t.Errorf("%s: action %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// socket() by family: Unix only for the stack, any for applications.
	for _, tc := range []struct {
		p      Profile
		family uint32
		want   uint32
	}{
		{Transport, unix.AF_UNIX, unix.SECCOMP_RET_ALLOW},
		{Transport, unix.AF_INET, kill},
		{Transport, unix.AF_PACKET, kill},
		{App, unix.AF_INET, unix.SECCOMP_RET_ALLOW},
	} {
		prog, _ := tc.p.Filter()
		if got := run(t, prog, unix.AUDIT_ARCH_X86_64, unix.SYS_SOCKET, tc.family); got != tc.want {
			t.Errorf("%s: socket(%d): action %#x, want %#x", tc.p.Name, tc.family, got, tc.want)
		}
	}
	for _, tc := range []struct {
		p    Profile
		nr   uint32
		want uint32
	}{
		{Driver, unix.SYS_MLOCK, unix.SECCOMP_RET_ALLOW},
		{Store, unix.SYS_LISTEN, unix.SECCOMP_RET_ALLOW},
		{App, unix.SYS_ACCEPT4, unix.SECCOMP_RET_ALLOW},
		{IP, unix.SYS_BIND, kill},
	} {
		prog, _ := tc.p.Filter()
		if got := run(t, prog, unix.AUDIT_ARCH_X86_64, tc.nr); got != tc.want {
			t.Errorf("%s: call %d: action %#x, want %#x", tc.p.Name, tc.nr, got, tc.want)
		}
	}
	if _, err := filter(nil, make([]uintptr, 255), kill); err == nil {
		t.Error("filter of 255 calls: no error, want too many")
	}
}

// envChild makes the test binary a child that enters the sandbox and then
// makes the call named by the variable's value.
const envChild = "SANDBOX_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "nnp" {
		os.Exit(threadsWithoutNNP())
	}
	if call := os.Getenv(envChild); call != "" {
		os.Setenv(EnvSeccomp, "1")
		if err := Enter(Transport); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(3)
		}
		if call == "ptrace" {
			unix.Syscall(unix.SYS_PTRACE, 0, 0, 0) // killed here
		}
		os.Stdout.WriteString("alive")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A process in the sandbox lives on (the Go runtime needs nothing
// unlisted) until it makes a call its profile does not allow: then the
// kernel kills it with SIGSYS.
func TestEnterKills(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=none")
	cmd.Env = append(os.Environ(), envChild+"=none")
	if out, err := cmd.Output(); err != nil || string(out) != "alive" {
		t.Fatalf("child in the sandbox making allowed calls: %q, %v; want alive", out, err)
	}
	cmd = exec.Command(exe, "-test.run=none")
	cmd.Env = append(os.Environ(), envChild+"=ptrace")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGSYS {
		t.Errorf("child calling ptrace in the sandbox: %q, %v; want killed by SIGSYS", out, err)
	}
}

// threadsWithoutNNP enters the sandbox without seccomp and counts the
// threads of the process that lack no_new_privs (its exit status), or
// returns 100 when it cannot tell.
func threadsWithoutNNP() int {
	if err := Enter(Transport); err != nil {
		return 100
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil || len(tasks) < 2 {
		return 100 // one thread would prove nothing
	}
	without := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			return 100
		}
		if !strings.Contains(string(b), "NoNewPrivs:\t1") {
			without++
		}
	}
	return without
}

// Every thread of the Go runtime gets no_new_privs, not just the one that
// happened to run Enter: a thread without it could be the one making the
// seccomp call (refused) or an execve (which would gain privileges).
func TestNoNewPrivsEveryThread(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=none")
	cmd.Env = append(os.Environ(), envChild+"=nnp", EnvSeccomp+"=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("threads of a child without no_new_privs after Enter: %v (%s), want none", err, out)
	}
}
