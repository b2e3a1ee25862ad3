// Package pci gives a userspace driver its PCI function through sysfs: it
// lists functions and finds them by vendor and device ID, takes the function away from any
// kernel driver and hands it to uio_pci_generic (so interrupts reach
// userspace through /dev/uioN), enables memory decoding and bus mastering in
// the command register, and maps BAR0.
//
// On a machine with an IOMMU it hands the function to vfio-pci instead
// (vfio.go): the driver then reaches BAR0, configuration space and the
// interrupt through a VFIO device, and the device reaches only the memory
// the driver maps for it, at I/O virtual addresses it picks (IOVAs).
//
// Everything goes through sysfs files under Root, so tests can point it at a
// fake tree.
package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Root is the sysfs PCI tree.
var Root = "/sys/bus/pci"

// PCI configuration space (PCI Local Bus Specification 3.0, 6.2.2).
const (
	cfgCommand          = 0x04
	cmdMemorySpace      = 1 << 1
	cmdBusMaster        = 1 << 2
	cmdInterruptDisable = 1 << 10
)

// Device is one PCI function, by its sysfs address (e.g. 0000:00:03.0).
type Device struct {
	Addr     string
	Vendor   uint16
	DeviceID uint16
}

func (d Device) path(elem ...string) string {
	return filepath.Join(append([]string{Root, "devices", d.Addr}, elem...)...)
}

func (d Device) String() string {
	return fmt.Sprintf("%s [%04x:%04x]", d.Addr, d.Vendor, d.DeviceID)
}

// List lists every PCI function, in address order.
func List() ([]Device, error) {
	entries, err := os.ReadDir(filepath.Join(Root, "devices"))
	if err != nil {
		return nil, fmt.Errorf("pci: %w", err)
	}
	var found []Device
	for _, e := range entries {
		d := Device{Addr: e.Name()}
		v, err1 := readHex(d.path("vendor"))
		id, err2 := readHex(d.path("device"))
		if err1 != nil || err2 != nil {
			continue
		}
		d.Vendor, d.DeviceID = uint16(v), uint16(id)
		found = append(found, d)
	}
	return found, nil
}

// Find lists the PCI functions with the given vendor and device ID, in
// address order.
func Find(vendor, device uint16) ([]Device, error) {
	all, err := List()
	if err != nil {
		return nil, err
	}
	var found []Device
	for _, d := range all {
		if d.Vendor == vendor && d.DeviceID == device {
			found = append(found, d)
		}
	}
	return found, nil
}

func readHex(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 32)
}

// Driver names the kernel driver bound to d, or "" when none is.
func (d Device) Driver() string {
	target, err := os.Readlink(d.path("driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

// BindUIO gives d to uio_pci_generic (the module must be loaded), unbinding
// whatever kernel driver holds it, and returns the uio device's name (uioN).
// It uses driver_override, so no other device with the same IDs is taken.
func (d Device) BindUIO(timeout time.Duration) (string, error) {
	const uio = "uio_pci_generic"
	if err := d.bind(uio); err != nil {
		return "", err
	}
	deadline := time.Now().Add(timeout)
	for {
		names, _ := filepath.Glob(d.path("uio", "uio*"))
		if len(names) > 0 {
			return filepath.Base(names[0]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pci %s: no uio device within %v (driver is %q)", d.Addr, timeout, d.Driver())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bind gives d to the kernel driver drv, unbinding whatever driver holds
// it, through driver_override, so that no other device with the same IDs
// is taken. Nothing is done if drv holds d already.
func (d Device) bind(drv string) error {
	cur := d.Driver()
	if cur == drv {
		return nil
	}
	if cur != "" {
		if err := os.WriteFile(d.path("driver", "unbind"), []byte(d.Addr), 0o200); err != nil {
			return fmt.Errorf("pci %s: unbinding %s: %w", d.Addr, cur, err)
		}
	}
	if err := os.WriteFile(d.path("driver_override"), []byte(drv), 0o200); err != nil {
		return fmt.Errorf("pci %s: driver_override: %w", d.Addr, err)
	}
	if err := os.WriteFile(filepath.Join(Root, "drivers_probe"), []byte(d.Addr), 0o200); err != nil {
		return fmt.Errorf("pci %s: binding %s: %w (is the module loaded?)", d.Addr, drv, err)
	}
	return nil
}

// EnableBusMaster sets memory space decoding and bus mastering in the
// command register, so the device can be programmed and can DMA.
func (d Device) EnableBusMaster() error {
	f, err := os.OpenFile(d.path("config"), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("pci %s: %w", d.Addr, err)
	}
	defer f.Close()
	if err := updateCommand(f, cmdMemorySpace|cmdBusMaster, 0); err != nil {
		return fmt.Errorf("pci %s: %w", d.Addr, err)
	}
	return nil
}

// configSpace is a function's configuration space: its sysfs file, or its
// VFIO region.
type configSpace interface {
	io.ReaderAt
	io.WriterAt
}

// readCommand reads the command register of cfg.
func readCommand(cfg configSpace) (uint16, error) {
	var b [2]byte
	if _, err := cfg.ReadAt(b[:], cfgCommand); err != nil {
		return 0, fmt.Errorf("reading the command register: %w", err)
	}
	return binary.LittleEndian.Uint16(b[:]), nil
}

// updateCommand sets the bits set and clears the bits clear of the command
// register in cfg, a function's configuration space, leaving the others
// as they are. It writes only if that changes anything.
func updateCommand(cfg configSpace, set, clear uint16) error {
	old, err := readCommand(cfg)
	if err != nil {
		return err
	}
	cmd := old&^clear | set
	if cmd == old {
		return nil
	}
	b := binary.LittleEndian.AppendUint16(nil, cmd)
	if _, err := cfg.WriteAt(b, cfgCommand); err != nil {
		return fmt.Errorf("writing the command register: %w", err)
	}
	return nil
}

// ErrNoBAR is returned for a BAR the device does not have.
var ErrNoBAR = errors.New("no such BAR")

// GiveTo makes d's files a driver opens (its configuration space, its BARs'
// resourceN files and /dev/<uio>) belong to uid and gid, so the driver
// needs no privilege to open them. The caller (init) must be root.
func (d Device) GiveTo(uio string, uid, gid int) error {
	files, _ := filepath.Glob(d.path("resource[0-9]"))
	files = append(files, d.path("config"), filepath.Join(DevDir, uio))
	for _, f := range files {
		if err := os.Chown(f, uid, gid); err != nil {
			return fmt.Errorf("pci %s: giving the driver %s: %w", d.Addr, f, err)
		}
	}
	return nil
}

// DevDir is where the uio device nodes are.
var DevDir = "/dev"
