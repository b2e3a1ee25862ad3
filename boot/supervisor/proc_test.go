package supervisor

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// starved is true for a runnable process that got little processor time
// (this one, running this test, over an hour of "silence"), and false for a
// sleeping one and a stopped one.
func TestStarved(t *testing.T) {
	if !starved(os.Getpid(), time.Hour, cpuTime(os.Getpid())) {
		t.Errorf("starved(self, an hour) = false; this process runs, with little processor time for an hour")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	awaitStates(t, cmd.Process.Pid, "S")
	if starved(cmd.Process.Pid, time.Hour, cpuTime(cmd.Process.Pid)) {
		t.Errorf("starved(a sleeping process) = true, want false")
	}
	cmd.Process.Signal(syscall.SIGSTOP)
	awaitStates(t, cmd.Process.Pid, "T")
	if starved(cmd.Process.Pid, time.Hour, cpuTime(cmd.Process.Pid)) {
		t.Errorf("starved(a stopped process) = true, want false")
	}
}

// awaitStates waits until pid's threads are in the given states.
func awaitStates(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(hangWait)
	for string(threadStates(pid)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: thread states %q, want %q", pid, threadStates(pid), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
