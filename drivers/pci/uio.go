package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// UIO delivers a device's INTx interrupts to userspace (uio_pci_generic).
// Reading the device blocks until the next interrupt and returns the total
// interrupt count; writing 1 re-enables the interrupt, which the kernel
// masked (PCI command register, INTx disable) when it fired.
type UIO struct {
	f *os.File
}

// OpenUIO opens /dev/<name>.
func OpenUIO(name string) (*UIO, error) {
	f, err := os.OpenFile("/dev/"+name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("uio: %w", err)
	}
	return &UIO{f: f}, nil
}

// Fd is the file descriptor, for a poll loop.
func (u *UIO) Fd() int { return int(u.f.Fd()) }

// Enable unmasks the interrupt.
func (u *UIO) Enable() error {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], 1)
	_, err := u.f.Write(b[:])
	return err
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
	return binary.NativeEndian.Uint32(b[:]), nil
}

// Close releases the device.
func (u *UIO) Close() error { return u.f.Close() }
