package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// UIO delivers a device's INTx interrupts to userspace (uio_pci_generic).
// Reading the device blocks until the next interrupt and returns the total
// interrupt count. When the interrupt fires, the kernel masks it (INTx
// Disable in the PCI command register) and wakes the reader; Enable
// unmasks it. uio_pci_generic has no irqcontrol hook — writing 1 to
// /dev/uioN fails with ENOSYS, the kernel's UIO HOWTO says to clear the
// bit in configuration space, and that is what Enable does.
type UIO struct {
	f   *os.File
	cfg *os.File // the function's configuration space (sysfs "config")
	// masked: an interrupt has come (Wait read its count) since the last
	// Enable, so the kernel has set INTx Disable. Only then does Enable
	// touch configuration space, a read and a write of the command
	// register: two system calls, each a configuration cycle (port I/O)
	// the hypervisor emulates. A driver that sleeps more often than it is
	// interrupted (a request from IP, a timeout) unmasks nothing.
	masked bool
}

// OpenUIO opens /dev/<name>, the UIO device of d.
func (d Device) OpenUIO(name string) (*UIO, error) {
	f, err := os.OpenFile(filepath.Join(DevDir, name), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("uio: %w", err)
	}
	cfg, err := os.OpenFile(d.path("config"), os.O_RDWR, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uio: %w", err)
	}
	// What a previous driver left is not known: the first Enable looks.
	return &UIO{f: f, cfg: cfg, masked: true}, nil
}

// Fd is the file descriptor, for a poll loop.
func (u *UIO) Fd() int { return int(u.f.Fd()) }

// Enable unmasks the interrupt: INTx Disable cleared in the command
// register, the other bits (memory decoding, bus mastering) as they are.
// It does nothing unless an interrupt came since the last Enable: the
// kernel masks the line only in its handler, which counts the interrupt
// and makes the device readable, so an interrupt not yet read ends the
// next sleep at once and its Wait makes the Enable after it unmask.
func (u *UIO) Enable() error {
	if !u.masked {
		return nil
	}
	if err := updateCommand(u.cfg, 0, cmdInterruptDisable); err != nil {
		return fmt.Errorf("uio: %w", err)
	}
	u.masked = false
	return nil
}

// ErrTimeout is returned by Wait when no interrupt came in time.
var ErrTimeout = errors.New("uio: no interrupt before the timeout")

// Wait blocks until an interrupt or the timeout, and returns the kernel's
// interrupt count. The interrupt stays masked until Enable.
func (u *UIO) Wait(timeout time.Duration) (uint32, error) {
	fds := []unix.PollFd{{Fd: int32(u.f.Fd()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("uio: poll: %w", err)
		}
		if n == 0 {
			return 0, ErrTimeout
		}
		break
	}
	var b [4]byte
	if _, err := u.f.Read(b[:]); err != nil {
		return 0, fmt.Errorf("uio: %w", err)
	}
	u.masked = true
	return binary.NativeEndian.Uint32(b[:]), nil
}

// Close releases the device.
func (u *UIO) Close() error {
	u.cfg.Close()
	return u.f.Close()
}
