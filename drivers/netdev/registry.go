package netdev

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// PCIID is a PCI function's vendor and device ID.
type PCIID struct {
	Vendor, Device uint16
}

// String is the ID as lspci writes it: 8086:100e.
func (id PCIID) String() string { return fmt.Sprintf("%04x:%04x", id.Vendor, id.Device) }

// Platform is what the driver process knows of the machine the device is
// in; a family turns it into quirks.
type Platform struct {
	// QEMU says the machine is QEMU's: its emulated devices differ from the
	// parts they model in small ways (e1000: statistics registers that do
	// not clear when read).
	QEMU bool
}

// Family is a NIC family as the driver process sees it: the functions it
// drives and how to take one over. The family's package fills it in (e.g.
// e1000.Family); the driver's main registers it.
type Family struct {
	// Name is the family's package, for logs and stats: "e1000".
	Name string
	// IDs are the PCI functions the family drives, its first-tested part
	// first.
	IDs []PCIID
	// Untested are the IDs among IDs the family is written for from the
	// datasheet but no test has driven (no QEMU model, or one not yet
	// tried), each with what the part is. The driver takes one only when
	// the user asks (keepnet.nic.untested=1).
	Untested map[PCIID]string
	// RingBytes is how much DMA memory (physically contiguous) Open needs
	// for the descriptor rings.
	RingBytes int
	// Quiesce stops the device's DMA without rings: masks its interrupts,
	// stops transmit and receive and resets it. The driver process calls it
	// before anything else (see the package doc's restart protocol). id is
	// the function's PCI ID, one of IDs: a family that drives several parts
	// picks the part's sequence by it.
	Quiesce func(r Regs, id PCIID) error
	// Open makes the Device for the function behind r, part id (one of
	// IDs), with its rings in rings (at least RingBytes long). It does not
	// touch the device: the caller Resets it.
	Open func(r Regs, id PCIID, rings Region, p Platform) (Device, error)
	// TestHooks, by name, stop the device behind the driver's back, for
	// tests of the driver's watchdog (drivers/nic); the driver offers
	// them only when test hooks are enabled (kernel/wiring.EnvTestHooks).
	TestHooks map[string]func(r Regs)
}

// ErrNoFamily is the error of Registry.Lookup for a PCI ID no registered
// family drives; it is wrapped with the ID.
var ErrNoFamily = errors.New("no NIC family drives it")

// Registry maps PCI IDs to the families that drive them. The zero value is
// empty and ready; it is not safe for concurrent Register.
type Registry struct {
	families []Family
	byID     map[PCIID]int // index into families
}

// NewRegistry registers every family in fams, in order.
func NewRegistry(fams ...Family) (*Registry, error) {
	r := new(Registry)
	for _, f := range fams {
		if err := r.Register(f); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds f. An ID another family already drives, a family without
// IDs, without Quiesce or without Open is an error.
func (r *Registry) Register(f Family) error {
	switch {
	case f.Name == "":
		return errors.New("netdev: registering a family without a name")
	case len(f.IDs) == 0:
		return fmt.Errorf("netdev: family %s drives no PCI ID", f.Name)
	case f.Quiesce == nil || f.Open == nil:
		return fmt.Errorf("netdev: family %s has no Quiesce or no Open", f.Name)
	}
	for id := range f.Untested {
		if !slices.Contains(f.IDs, id) {
			return fmt.Errorf("netdev: family %s lists %s as untested but does not drive it", f.Name, id)
		}
	}
	for _, id := range f.IDs {
		if i, ok := r.byID[id]; ok {
			return fmt.Errorf("netdev: PCI device %s registered by %s and by %s", id, r.families[i].Name, f.Name)
		}
	}
	if r.byID == nil {
		r.byID = make(map[PCIID]int)
	}
	for _, id := range f.IDs {
		r.byID[id] = len(r.families)
	}
	r.families = append(r.families, f)
	return nil
}

// Lookup finds the family that drives id. For an ID no family drives it
// returns an error that wraps ErrNoFamily and names the ID and the IDs
// that are driven.
func (r *Registry) Lookup(id PCIID) (Family, error) {
	if i, ok := r.byID[id]; ok {
		return r.families[i], nil
	}
	return Family{}, fmt.Errorf("netdev: PCI device %s: %w (driven: %s)", id, ErrNoFamily, r)
}

// Drives tells whether a registered family drives id.
func (r *Registry) Drives(id PCIID) bool {
	_, ok := r.byID[id]
	return ok
}

// Untested says whether id is one a registered family drives only from its
// datasheet, and what part it is.
func (r *Registry) Untested(id PCIID) (part string, untested bool) {
	i, ok := r.byID[id]
	if !ok {
		return "", false
	}
	part, untested = r.families[i].Untested[id]
	return part, untested
}

// String lists the families and their IDs: "e1000 8086:100e 8086:1015".
func (r *Registry) String() string {
	if len(r.families) == 0 {
		return "no family registered"
	}
	var b strings.Builder
	for i, f := range r.families {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Name)
		for _, id := range f.IDs {
			b.WriteString(" " + id.String())
		}
	}
	return b.String()
}
