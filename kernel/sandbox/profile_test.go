package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets the subset of classic BPF the filters use on one
// seccomp_data, as the kernel would, and returns the action.
func run(t *testing.T, prog []unix.SockFilter, arch, nr uint32) uint32 {
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
		{"futex", unix.AUDIT_ARCH_X86_64, unix.SYS_FUTEX, unix.SECCOMP_RET_ALLOW},
		{"clone3", unix.AUDIT_ARCH_X86_64, unix.SYS_CLONE3, unix.SECCOMP_RET_ALLOW}, // the last
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
	dprog, _ := Driver.Filter()
	if got := run(t, dprog, unix.AUDIT_ARCH_X86_64, unix.SYS_MLOCK); got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("driver's mlock: action %#x, want allow", got)
	}
	if _, err := filter(make([]uintptr, 255), kill); err == nil {
		t.Error("filter of 255 calls: no error, want too many")
	}
}

// envChild makes the test binary a child that enters the sandbox and then
// makes the call named by the variable's value.
const envChild = "SANDBOX_TEST_CHILD"

func TestMain(m *testing.M) {
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
