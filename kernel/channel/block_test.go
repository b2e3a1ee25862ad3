package channel

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// TestBlock: a sleep on a silent descriptor lasts its timeout, one on a
// descriptor written meanwhile ends with the write and reports it, and a
// zero timeout only looks.
func TestBlock(t *testing.T) {
	r, w := pipe(t)
	fds := []unix.PollFd{{Fd: int32(r), Events: unix.POLLIN}}
	start := time.Now()
	if n, err := block(fds, nil, 100*time.Millisecond); n != 0 || err != nil {
		t.Errorf("block on a silent pipe = %d, %v", n, err)
	}
	if d := time.Since(start); d < 95*time.Millisecond {
		t.Errorf("block(100ms) on a silent pipe returned after %v", d)
	}
	if n, err := block(fds, nil, 0); n != 0 || err != nil {
		t.Errorf("block(0) on a silent pipe = %d, %v", n, err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		unix.Write(w, []byte{1})
	}()
	start = time.Now()
	if n, err := block(fds, nil, -1); n != 1 || err != nil || fds[0].Revents&unix.POLLIN == 0 {
		t.Errorf("block(forever) on a pipe written after 100ms = %d, %v, revents %#x", n, err, fds[0].Revents)
	}
	if d := time.Since(start); d < 95*time.Millisecond {
		t.Errorf("block returned after %v, before the write", d)
	}
	// Still readable: reported at once, however often one looks.
	for range 3 {
		if n, err := block(fds, nil, 10*time.Second); n != 1 || err != nil {
			t.Fatalf("block on a readable pipe = %d, %v", n, err)
		}
	}
}

// TestBlockOnlyItsOwn: a sleep is not ended by a descriptor an earlier
// sleep on the same poller watched (the one-shot registration it left),
// nor does it report one; two descriptors, only the written one reported.
func TestBlockOnlyItsOwn(t *testing.T) {
	r1, w1 := pipe(t)
	r2, w2 := pipe(t)
	r3, _ := pipe(t)
	// One sleep watches r1 and r2 and is ended by r2; r1 stays armed.
	unix.Write(w2, []byte{1})
	both := []unix.PollFd{{Fd: int32(r1), Events: unix.POLLIN}, {Fd: int32(r2), Events: unix.POLLIN}}
	if n, err := block(both, nil, time.Second); n != 1 || err != nil || both[0].Revents != 0 || both[1].Revents == 0 {
		t.Fatalf("block(r1, r2) with r2 written = %d, %v, revents %#x %#x; want r2 alone", n, err, both[0].Revents, both[1].Revents)
	}
	// The next sleep on that poller watches r3; r1 fires meanwhile.
	go func() {
		time.Sleep(30 * time.Millisecond)
		unix.Write(w1, []byte{1})
	}()
	only3 := []unix.PollFd{{Fd: int32(r3), Events: unix.POLLIN}}
	start := time.Now()
	if n, err := block(only3, nil, 200*time.Millisecond); n != 0 || err != nil || only3[0].Revents != 0 {
		t.Errorf("block(r3) while r1 fired = %d, %v, revents %#x; want a timeout", n, err, only3[0].Revents)
	}
	if d := time.Since(start); d < 195*time.Millisecond {
		t.Errorf("block(r3, 200ms) returned after %v: ended by another descriptor", d)
	}
}

// TestBlockArmsWhatReported: a sleep arms an Endpoint's descriptor only if
// it reported since this poller armed it; one armed and quiet still ends
// the next sleep when written, and a new file under a reused number (a new
// key) is armed afresh.
func TestBlockArmsWhatReported(t *testing.T) {
	r1, w1 := pipe(t)
	r2, w2 := pipe(t)
	fds := func() []unix.PollFd {
		return []unix.PollFd{{Fd: int32(r1), Events: unix.POLLIN}, {Fd: int32(r2), Events: unix.POLLIN}}
	}
	keys := []uint64{101, 102}
	var calls []string
	armHook = func(fd int32) { calls = append(calls, fmt.Sprint(fd)) }
	defer func() { armHook = nil }()

	unix.Write(w2, []byte{1})
	if n, err := block(fds(), keys, time.Second); n != 1 || err != nil {
		t.Fatalf("block(r1, r2) with r2 written = %d, %v", n, err)
	}
	drainPipe(r2)
	if want := []string{fmt.Sprint(r1), fmt.Sprint(r2)}; !slices.Equal(calls, want) {
		t.Errorf("first sleep armed %v, want %v", calls, want)
	}
	calls = nil
	go func() {
		time.Sleep(30 * time.Millisecond)
		unix.Write(w1, []byte{1})
	}()
	got := fds()
	if n, err := block(got, keys, 10*time.Second); n != 1 || err != nil || got[0].Revents == 0 {
		t.Fatalf("block(r1, r2) with r1 written later = %d, %v, revents %#x %#x; want r1", n, err, got[0].Revents, got[1].Revents)
	}
	drainPipe(r1)
	if want := []string{fmt.Sprint(r2)}; !slices.Equal(calls, want) {
		t.Errorf("second sleep armed %v, want only r2's %v (r1 was armed and quiet)", calls, want)
	}

	// r1's number, closed, goes to a new pipe: under a new key it is armed.
	unix.Close(r1)
	fresh, w3 := pipe(t)
	if fresh != r1 { // the lowest number free is usually r1's already
		if err := unix.Dup3(fresh, r1, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
	}
	r3 := r1
	calls = nil
	go func() {
		time.Sleep(30 * time.Millisecond)
		unix.Write(w3, []byte{1})
	}()
	got = fds()
	if n, err := block(got, []uint64{103, 102}, 10*time.Second); n != 1 || err != nil || got[0].Revents == 0 {
		t.Fatalf("block on the reused number, written later = %d, %v; want it reported", n, err)
	}
	if !slices.Contains(calls, fmt.Sprint(r3)) {
		t.Errorf("sleep with a new key for descriptor %d armed %v: not it", r3, calls)
	}
}

// TestWaitAnySteady: a Steady descriptor is armed once and again only
// after it reports; once Unsteady, on every sleep.
func TestWaitAnySteady(t *testing.T) {
	r, w := pipe(t)
	var armed int
	armHook = func(fd int32) {
		if int(fd) == r {
			armed++
		}
	}
	defer func() { armHook = nil }()
	readable := make([]bool, 1)
	sleep := func() {
		t.Helper()
		if err := WaitAny(readable, nil, []int{r}, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}

	Steady(r)
	sleep()
	sleep()
	if armed != 1 || readable[0] {
		t.Errorf("two quiet sleeps on a Steady descriptor armed it %d times (readable %v), want once", armed, readable[0])
	}
	unix.Write(w, []byte{1})
	sleep()
	if !readable[0] {
		t.Fatal("a written Steady descriptor armed earlier did not end the sleep")
	}
	drainPipe(r)
	sleep()
	if armed != 2 {
		t.Errorf("after it reported, armed %d times in all, want 2", armed)
	}

	Unsteady(r)
	armed = 0
	sleep()
	sleep()
	if armed != 2 {
		t.Errorf("two sleeps after Unsteady armed it %d times, want 2", armed)
	}
}

func drainPipe(fd int) {
	var b [16]byte
	unix.Read(fd, b[:])
}

// TestSleepSwitches: a sleeping process costs no context switch while
// nothing comes, and a wake-up costs about one ("How a process sleeps").
// A helper process sleeps on a pipe, first for a second with nothing
// written (sysmon looking every 10 ms would be some 100 switches; the
// runtime's own start-up work, a scavenger returning memory, makes a few
// dozen at most), then
// through 150 wake-ups (a sleep told to the scheduler cost 4–5 each); it
// counts the voluntary context switches of all its threads.
func TestSleepSwitches(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=sleeper", "GODEBUG="+GODEBUG)
	cmd.ExtraFiles = []*os.File{r}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	time.Sleep(1500 * time.Millisecond) // its start, then the silent second
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
			t.Fatalf("sleeper: %v: %s", err, out.Bytes())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("sleeper: still running after a minute: %s", out.Bytes())
	}
	var silent, n, sw int
	if _, err := fmt.Sscanf(out.String(), "%d %d %d", &silent, &n, &sw); err != nil || n == 0 {
		t.Fatalf("sleeper said %q", out.Bytes())
	}
	perWake := float64(sw) / float64(n)
	t.Logf("voluntary context switches: %d in a second of silence, %.2f per wake-up (%d bytes woke it)", silent, perWake, n)
	if silent > 60 {
		t.Errorf("a sleeping process switched %d times in a second with nothing to wake it; want at most 60", silent)
	}
	if perWake >= 2.5 {
		t.Errorf("a wake-up cost %.2f context switches; want fewer than 2.5", perWake)
	}
}

// sleeper is the helper of TestSleepSwitches: it sleeps on the pipe at
// fd 3, first a second with nothing written, then until its writer
// closes it, and prints the voluntary context switches of the silence,
// how many bytes woke it and the switches of those wake-ups. Its reads
// are raw, as the servers' are.
func sleeper() error {
	fds := []unix.PollFd{{Fd: 3, Events: unix.POLLIN}}
	var before, after unix.Rusage
	time.Sleep(300 * time.Millisecond) // the runtime's start settles
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	if n, err := block(fds, nil, time.Second); n != 0 || err != nil {
		return fmt.Errorf("the silent sleep: %d, %v", n, err)
	}
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	silent := after.Nvcsw - before.Nvcsw
	before = after
	n := 0
	var buf [64]byte
	for {
		if _, err := block(fds, nil, 10*time.Second); err != nil {
			return err
		}
		k, _, errno := unix.RawSyscall(unix.SYS_READ, 3, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		if errno != 0 {
			return errno
		}
		if k == 0 {
			break
		}
		n += int(k)
	}
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	fmt.Printf("%d %d %d\n", silent, n, after.Nvcsw-before.Nvcsw)
	return nil
}
