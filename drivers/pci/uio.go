package pci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
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
	// fd and cfgFd are f's and cfg's descriptors, taken once: os.File.Fd
	// costs an fcntl each call on a descriptor Go had made nonblocking,
	// as it does /dev/uioN's, and the loop uses them on every sleep.
	fd, cfgFd int
	// masked: an interrupt has come (Wait read its count) since the last
	// Enable, so the kernel has set INTx Disable. Only then does Enable
	// touch configuration space. Under TCG a configuration cycle is
	// dear (a port I/O the emulator serves, ~100 µs of the guest's
	// time), and a driver that is interrupted for every frame, as under
	// a ping, pays it per frame; one that sleeps more often than it is
	// interrupted (a request from IP, a timeout) unmasks nothing.
	masked bool
	// command is what Enable writes to the command register: as the
	// first Enable read it, INTx Disable cleared. The kernel changes only
	// that bit (its handler sets it), so after the first Enable one write
	// unmasks, without reading the register first.
	command uint16
	known   bool // command was read
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
	return newUIO(f, cfg), nil
}

// newUIO is the UIO of the device file f and configuration space cfg.
func newUIO(f, cfg *os.File) *UIO {
	// Fd makes the descriptors blocking, which is how Wait and Enable
	// use them (they poll first).
	return &UIO{f: f, cfg: cfg, fd: int(f.Fd()), cfgFd: int(cfg.Fd()), masked: true}
}

// Fd is the file descriptor, for a poll loop.
func (u *UIO) Fd() int { return u.fd }

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
	if !u.known {
		cmd, err := readCommand(u.cfg)
		if err != nil {
			return fmt.Errorf("uio: %w", err)
		}
		u.command = cmd &^ cmdInterruptDisable
		u.known = true
	}
	if errno := pwrite16(u.cfgFd, u.command, cfgCommand); errno != 0 {
		return fmt.Errorf("uio: writing the command register: %w", errno)
	}
	runtime.KeepAlive(u.cfg)
	u.masked = false
	return nil
}

// ErrTimeout is returned by Wait when no interrupt came in time.
var ErrTimeout = errors.New("pci: no interrupt before the timeout")

// Wait blocks until an interrupt or the timeout, and returns the kernel's
// interrupt count. The interrupt stays masked until Enable.
func (u *UIO) Wait(timeout time.Duration) (uint32, error) {
	if err := awaitInterrupt(u.fd, timeout); err == ErrTimeout {
		return 0, err
	} else if err != nil {
		return 0, fmt.Errorf("uio: %w", err)
	}
	count, errno := read32(u.fd)
	if errno != 0 {
		return 0, fmt.Errorf("uio: %w", errno)
	}
	runtime.KeepAlive(u.f)
	u.masked = true
	return count, nil
}

// Close releases the device.
func (u *UIO) Close() error {
	u.cfg.Close()
	return u.f.Close()
}
