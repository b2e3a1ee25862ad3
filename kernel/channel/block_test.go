package channel

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// idle makes this process idle for block: no message for long.
func idle() { lastMessage.Store(int64(-2 * busyWindow)) }

// TestBlockAcrossSlices: a busy process sleeps in slices of rawSlice, and
// neither a timeout longer than a slice nor a wake-up after one is cut
// short or missed; an idle one sleeps the same.
func TestBlockAcrossSlices(t *testing.T) {
	defer idle()
	for _, busy := range []bool{true, false} {
		var p [2]int
		if err := unix.Pipe(p[:]); err != nil {
			t.Fatal(err)
		}
		fds := []unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}
		mark := idle
		if busy {
			mark = messaged
		}

		mark()
		start := time.Now()
		if n, err := block(fds, 3*rawSlice); n != 0 || err != nil {
			t.Errorf("busy %v: block on a silent pipe = %d, %v", busy, n, err)
		}
		if d := time.Since(start); d < 3*rawSlice-5*time.Millisecond {
			t.Errorf("busy %v: block(%v) on a silent pipe returned after %v", busy, 3*rawSlice, d)
		}

		mark()
		go func() {
			time.Sleep(2 * rawSlice)
			unix.Write(p[1], []byte{1})
		}()
		start = time.Now()
		if n, err := block(fds, -1); n != 1 || err != nil {
			t.Errorf("busy %v: block(forever) on a pipe written after %v = %d, %v", busy, 2*rawSlice, n, err)
		}
		if d := time.Since(start); d < 2*rawSlice-5*time.Millisecond {
			t.Errorf("busy %v: block returned after %v, before the write", busy, d)
		}
		unix.Close(p[0])
		unix.Close(p[1])
	}
}

// TestBusySleepSwitches: a busy process's wake-up costs one context
// switch and a few of Go's sysmon, an idle one's those of the scheduler's
// hand-off too ("How a process sleeps"). Two helper processes, one busy
// and one idle, are woken 150 times through a pipe; each counts its
// voluntary context switches (all threads).
func TestBusySleepSwitches(t *testing.T) {
	perWake := map[string]float64{}
	for _, role := range []string{"sleep-busy", "sleep-idle"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+role, "GODEBUG="+GODEBUG)
		cmd.ExtraFiles = []*os.File{r}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		const wakes = 150
		for range wakes {
			time.Sleep(5 * time.Millisecond)
			w.Write([]byte{1})
		}
		w.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v: %s", role, err, out.Bytes())
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatalf("%s: still running after a minute: %s", role, out.Bytes())
		}
		var n, sw int
		if _, err := fmt.Sscanf(out.String(), "%d %d", &n, &sw); err != nil || n == 0 {
			t.Fatalf("%s said %q", role, out.Bytes())
		}
		perWake[role] = float64(sw) / float64(n)
	}
	t.Logf("voluntary context switches per wake-up: busy %.2f, idle %.2f", perWake["sleep-busy"], perWake["sleep-idle"])
	if b, i := perWake["sleep-busy"], perWake["sleep-idle"]; b >= 3.5 || b >= i-1 {
		t.Errorf("a busy process's wake-up cost %.2f context switches (an idle one's %.2f); want fewer than 3.5, and at least one fewer than idle", b, i)
	}
}

// sleeper is the helper of TestBusySleepSwitches: it sleeps on the pipe
// at fd 3 until its writer closes it, busy (as if every wake-up were a
// message) or idle, and prints how many bytes woke it and its voluntary
// context switches.
func sleeper(busy bool) error {
	idle()
	fds := []unix.PollFd{{Fd: 3, Events: unix.POLLIN}}
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	n := 0
	buf := make([]byte, 64)
	for {
		if _, err := block(fds, 10*time.Second); err != nil {
			return err
		}
		k, err := unix.Read(3, buf)
		if err != nil {
			return err
		}
		if k == 0 {
			break
		}
		n += k
		if busy {
			messaged()
		}
	}
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	fmt.Printf("%d %d\n", n, after.Nvcsw-before.Nvcsw)
	return nil
}
