package pci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ProcIRQ is where the kernel lets root choose the processors each
// interrupt is delivered to (/proc/irq/N/smp_affinity_list).
var ProcIRQ = "/proc/irq"

// IRQs are the interrupts the kernel has given d: its INTx line (sysfs
// irq; none if 0) and the MSI vectors a driver has enabled (msi_irqs/), in
// increasing order.
func (d Device) IRQs() []int {
	var irqs []int
	if b, err := os.ReadFile(d.path("irq")); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			irqs = append(irqs, n)
		}
	}
	msi, _ := os.ReadDir(d.path("msi_irqs"))
	for _, e := range msi {
		if n, err := strconv.Atoi(e.Name()); err == nil && !slices.Contains(irqs, n) {
			irqs = append(irqs, n)
		}
	}
	slices.Sort(irqs)
	return irqs
}

// SteerIRQs has d's interrupts (IRQs) delivered to the processors cpus:
// those its driver runs on, so that the interrupt handler that wakes the
// driver runs where the driver does, with no interprocessor interrupt.
// The caller must be root. An interrupt the kernel will not move (one it
// manages itself) is reported, the others are steered all the same.
func (d Device) SteerIRQs(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	list := make([]string, len(cpus))
	for i, c := range cpus {
		list[i] = strconv.Itoa(c)
	}
	var errs []string
	for _, irq := range d.IRQs() {
		f := filepath.Join(ProcIRQ, strconv.Itoa(irq), "smp_affinity_list")
		if err := os.WriteFile(f, []byte(strings.Join(list, ",")+"\n"), 0); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pci %s: steering its interrupts to processors %v: %s", d.Addr, cpus, strings.Join(errs, "; "))
	}
	return nil
}

// awaitInterrupt waits until fd, a device's interrupt descriptor, is
// readable, at most timeout; ErrTimeout if it was not. A zero timeout is
// the loop's look before it sleeps, a raw system call as its sleep's are
// (kernel/channel, "How a process sleeps").
func awaitInterrupt(fd int, timeout time.Duration) error {
	if timeout == 0 {
		if !readable(fd) {
			return ErrTimeout
		}
		return nil
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			return ErrTimeout
		}
		return nil
	}
}
