package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"keepnet/boot/ctl"
)

// Preflight checks what would make QEMU fail in a confusing way, and reports
// it plainly: a missing kernel or initramfs, a forwarded host port in use, a
// control socket another appliance is answering on.
func (m Machine) Preflight(ctx context.Context) error {
	files := []struct{ what, path, hint string }{
		{"kernel", m.Kernel, "run 'make kernel' or pass --kernel"},
		{"initramfs", m.Initrd, "run 'make image' or pass --initrd"},
	}
	switch {
	case m.Disk != "":
		files = []struct{ what, path, hint string }{{"disk image", m.Disk, "run 'make images'"}}
	case m.ISO != "":
		files = []struct{ what, path, hint string }{{"ISO image", m.ISO, "run 'make images'"}}
	case m.PXE:
		files = nil
	}
	if m.BootsImage() && m.Firmware == FirmwareUEFI {
		files = append(files, struct{ what, path, hint string }{"UEFI firmware", OVMFCode, "apt-get install ovmf"})
	}
	for _, f := range files {
		if fi, err := os.Stat(f.path); err != nil || fi.IsDir() {
			return fmt.Errorf("%s %s not found (%s)", f.what, f.path, f.hint)
		}
	}
	if m.BootsImage() && m.Firmware == FirmwareUEFI {
		vars, err := os.ReadFile(OVMFVars)
		if err != nil {
			return fmt.Errorf("UEFI variable store: %w (apt-get install ovmf)", err)
		}
		if err := os.MkdirAll(filepath.Dir(m.VarsFile), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(m.VarsFile, vars, 0o600); err != nil {
			return err
		}
	}
	if m.Net.Kind == "user" {
		for _, f := range m.Forwards {
			addr := "127.0.0.1:" + strconv.Itoa(f.HostPort)
			var err error
			if f.Proto == "tcp" {
				var l net.Listener
				if l, err = net.Listen("tcp", addr); err == nil {
					l.Close()
				}
			} else {
				var c net.PacketConn
				if c, err = net.ListenPacket("udp", addr); err == nil {
					c.Close()
				}
			}
			if err != nil {
				return fmt.Errorf("host port %s/%d is in use; choose another with --fwd %s:PORT:%d", f.Proto, f.HostPort, f.Proto, f.GuestPort)
			}
		}
	}
	for _, n := range append([]Net{m.Net}, m.MoreNets...) {
		if n.Kind != "stream" {
			continue
		}
		// QEMU creates the socket; one left by a QEMU that died is in the way.
		if c, err := net.DialTimeout("unix", n.Path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("network socket %s is in use by another QEMU", n.Path)
		}
		os.Remove(n.Path)
	}
	if _, err := os.Stat(m.Ctl); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := ctl.Do(cctx, m.Ctl, ctl.Request{Verb: ctl.VerbStatus}); err == nil {
			return fmt.Errorf("an appliance is already running with control channel %s; stop it with 'keepnet down --ctl %s'", m.Ctl, m.Ctl)
		}
		os.Remove(m.Ctl) // stale, from an appliance that is gone
	}
	if err := os.MkdirAll(filepath.Dir(m.Ctl), 0o700); err != nil {
		return err
	}
	if len(m.Ctl) > 100 {
		return fmt.Errorf("control socket path %q is too long for a Unix socket", m.Ctl)
	}
	return nil
}

// Command returns the exec.Cmd that boots m.
func (m Machine) Command() *exec.Cmd {
	return exec.Command(m.QEMU, m.Args()...)
}

// Run boots m in the foreground, console on the terminal, until the guest
// powers off or QEMU is quit.
func (m Machine) Run(ctx context.Context) error {
	if err := m.Preflight(ctx); err != nil {
		return err
	}
	cmd := m.Command()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}

// Started is a detached appliance.
type Started struct {
	PID     int
	Status  ctl.Status
	Elapsed time.Duration // from QEMU start to ready
}

// statusWait bounds one status request while Start waits for ready.
const statusWait = 10 * time.Second

// stallWait is how long a booting kernel's console may stay silent, before
// the control channel first answers, until Start calls the boot stalled.
// A kernel prints line after line until init serves the control channel;
// under TCG a guest kernel has been seen to stop there for good (its last
// line "IP idents hash table entries", nothing for five minutes).
const stallWait = 2 * time.Minute

// errStalled marks a boot whose kernel stopped printing before init
// served the control channel.
var errStalled = errors.New("the guest kernel stalled while booting")

// Start boots m detached and returns once the guest reports ready, or fails
// within timeout, in which case QEMU is stopped and the error carries the
// tail of the console and of QEMU's own output. A boot whose kernel stalls
// (errStalled) is tried once more in the time left, with a message on
// progress; a second stall is an error.
func (m Machine) Start(ctx context.Context, timeout time.Duration, progress io.Writer) (*Started, error) {
	if m.Console == "" {
		return nil, errors.New("a detached appliance needs a console file")
	}
	if m.stallWait == 0 {
		m.stallWait = stallWait
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for attempt := 1; ; attempt++ {
		if err := m.Preflight(ctx); err != nil {
			return nil, err
		}
		s, err := m.boot(ctx, start, deadline, timeout, progress)
		if !errors.Is(err, errStalled) || attempt == 2 {
			return s, err
		}
		if progress != nil {
			fmt.Fprintf(progress, "keepnet: %v; starting QEMU again\n", strings.SplitN(err.Error(), "\n", 2)[0])
		}
	}
}

// boot is one attempt of Start: it starts QEMU and waits until deadline.
func (m Machine) boot(ctx context.Context, start, deadline time.Time, timeout time.Duration, progress io.Writer) (*Started, error) {
	os.Remove(m.Console)
	qlog := m.Ctl + ".qemu.log"
	logf, err := os.Create(qlog)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := m.Command()
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this command
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", m.QEMU, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(why error) (*Started, error) {
		cmd.Process.Kill()
		<-exited
		os.Remove(m.Ctl)
		os.Remove(m.PIDFile)
		return nil, fmt.Errorf("%w\n%s", why, m.tails(qlog))
	}

	lastNote := time.Now()
	var last *ctl.Status // the last status the guest answered with
	var console consoleWatch
	for {
		select {
		case err := <-exited:
			os.Remove(m.Ctl)
			return nil, fmt.Errorf("qemu exited before the appliance was ready (%v)\n%s", err, m.tails(qlog))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(notReady(timeout, last))
		}
		if silent := console.silence(m.Console); last == nil && silent > m.stallWait {
			return fail(fmt.Errorf("%w: its console has been silent for %v and the control channel never answered",
				errStalled, silent.Round(time.Second)))
		}
		if progress != nil && time.Since(lastNote) > 5*time.Second {
			fmt.Fprintf(progress, "keepnet: still booting (%v)...\n", time.Since(start).Round(time.Second))
			lastNote = time.Now()
		}
		if _, err := os.Stat(m.Ctl); err != nil {
			continue
		}
		// A busy guest may take seconds to answer; a shorter bound would
		// abandon every request just before its answer came.
		rctx, cancel := context.WithTimeout(ctx, min(time.Until(deadline), statusWait))
		resp, err := ctl.Do(rctx, m.Ctl, ctl.Request{Verb: ctl.VerbStatus})
		cancel()
		if err != nil || resp.Status == nil {
			continue
		}
		if last = resp.Status; last.Ready {
			s := &Started{PID: cmd.Process.Pid, Status: *last, Elapsed: time.Since(start)}
			cmd.Process.Release()
			return s, nil
		}
	}
}

// kernelBanner is the first line a Linux kernel prints on its console.
const kernelBanner = "Linux version"

// consoleWatch follows a booting guest's console file: how long it has
// been silent since the kernel's banner. Firmware and boot loaders may
// print nothing for long under TCG, so silence counts only once the kernel
// runs.
type consoleWatch struct {
	kernel bool      // the banner has been seen
	size   int64     // the file's size when it last grew
	grew   time.Time // when that was
}

// silence reads the console at path and says how long it has not grown
// since the kernel started; zero before the kernel's banner.
func (w *consoleWatch) silence(path string) time.Duration {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if fi.Size() != w.size {
		w.size, w.grew = fi.Size(), time.Now()
		if !w.kernel {
			data, _ := os.ReadFile(path)
			w.kernel = bytes.Contains(data, []byte(kernelBanner))
		}
	}
	if !w.kernel {
		return 0
	}
	return time.Since(w.grew)
}

// notReady is the error of a boot that was not ready in time: it names what
// the guest still waited for, as its last status said (ctl.Status.Waiting).
func notReady(timeout time.Duration, last *ctl.Status) error {
	switch {
	case last == nil:
		return fmt.Errorf("the appliance did not become ready within %v (its control channel never answered)", timeout)
	case len(last.Waiting) == 0:
		return fmt.Errorf("the appliance did not become ready within %v", timeout)
	}
	return fmt.Errorf("the appliance did not become ready within %v; still waiting for:\n  %s",
		timeout, strings.Join(last.Waiting, "\n  "))
}

// tails is the end of the console and of QEMU's own output, for errors.
func (m Machine) tails(qlog string) string {
	var b strings.Builder
	for _, f := range []struct{ name, path string }{{"console", m.Console}, {"qemu", qlog}} {
		data, _ := os.ReadFile(f.path)
		data = bytes.TrimSpace(data)
		if len(data) == 0 {
			fmt.Fprintf(&b, "--- %s: (empty)\n", f.name)
			continue
		}
		lines := strings.Split(string(data), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(&b, "--- last lines of the %s (%s):\n%s\n", f.name, f.path, strings.Join(lines, "\n"))
	}
	return strings.TrimRight(b.String(), "\n")
}

// VarsFileFor is where an appliance with control channel ctl keeps its
// UEFI variables (Machine.VarsFile); Down removes them.
func VarsFileFor(ctl string) string { return ctl + ".uefi-vars.fd" }

// Down asks the appliance behind ctlPath to power off and waits (bounded)
// for QEMU to exit. When the guest does not answer or does not go down in
// time, the QEMU named by pidFile is killed and the error says so.
func Down(ctx context.Context, ctlPath, pidFile string, timeout time.Duration) error {
	pid := readPID(pidFile)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, askErr := ctl.Do(cctx, ctlPath, ctl.Request{Verb: ctl.VerbPoweroff})
	cancel()
	if askErr != nil && pid == 0 {
		return askErr
	}
	deadline := time.Now().Add(timeout)
	for pid != 0 && alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	defer os.Remove(pidFile)
	defer os.Remove(ctlPath)
	defer os.Remove(VarsFileFor(ctlPath))
	if pid != 0 && alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		if askErr != nil {
			return fmt.Errorf("the appliance did not answer (%v); killed qemu (pid %d)", askErr, pid)
		}
		return fmt.Errorf("the appliance did not power off within %v; killed qemu (pid %d)", timeout, pid)
	}
	return nil
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || !bytes.HasPrefix(bytes.TrimSpace(b[i+1:]), []byte("Z"))
}
