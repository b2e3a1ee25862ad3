package nic

import (
	"errors"
	"fmt"
	"log"
	"time"

	"keepnet/drivers/pci"
	"keepnet/kernel/pool"
)

// Two ways to the device
//
// The driver reaches its PCI function in one of two ways, chosen by init
// (Prepare) and seen by the driver as the kernel driver the function is
// bound to:
//
//   - uio (uio_pci_generic), on a machine without an IOMMU: BAR0 through
//     sysfs, INTx through /dev/uioN, and DMA to physical addresses
//     (/proc/self/pagemap). The device can write anywhere in memory.
//   - VFIO (vfio-pci), on a machine with an IOMMU: BAR0, configuration
//     space and the interrupt (MSI where the function has it, INTx
//     otherwise, on an eventfd) through the VFIO device, and DMA through
//     mappings in the IOMMU of exactly the driver's pools and rings, at
//     IOVAs this process picks (pci.IOVAs). The device reaches nothing else:
//     a descriptor that points elsewhere makes the IOMMU block the write
//     and the kernel log a DMA fault.
//
// Restart under VFIO. A new driver process opens the function afresh: the
// previous process's container went with it, and the kernel removed its
// mappings, so whatever the device still did for it was blocked. The new
// process resets the function through VFIO where the kernel can (QEMU's
// e1000e; its 8254x models offer no reset, and the family's Quiesce and
// Reset do it through the registers as under uio), maps its rings and the
// IP generation's pools, and serves. When IP restarts, the driver maps
// the new generation's pools, resets the device (Driver.Adopt), and only
// then unmaps the old pools: until the reset the device may still write
// into them, and those writes must land in the old pools, not fault.

// backend is what the driver process needs of its way to the device,
// beside BAR0.
type backend interface {
	// Kind says which: "uio", or "vfio" with the interrupt's kind.
	Kind() string
	// Fd, Enable and Wait are the interrupt (pci.UIO's meaning).
	Fd() int
	Enable() error
	Wait(timeout time.Duration) (uint32, error)
	// Map makes p reachable by the device, Unmap takes it back; a no-op
	// under uio.
	Map(p *pool.Pool) error
	Unmap(p *pool.Pool) error
	// Translate gives the host view and the device address of a buffer
	// of a mapped pool.
	Translate(p *pool.Pool, ref pool.Ref) ([]byte, uint64, error)
	// IOMMU tells whether the device's DMA is confined to what Map
	// mapped.
	IOMMU() bool
	Close() error
}

// uioBackend: physical addresses.
type uioBackend struct{ *pci.UIO }

func (uioBackend) Kind() string           { return "uio" }
func (uioBackend) Map(*pool.Pool) error   { return nil }
func (uioBackend) Unmap(*pool.Pool) error { return nil }
func (uioBackend) IOMMU() bool            { return false }
func (uioBackend) Translate(p *pool.Pool, r pool.Ref) ([]byte, uint64, error) {
	return Physical(p, r)
}

// vfioDMA is the VFIO device's side the mappings need: pci.VFIO, or a fake
// in tests.
type vfioDMA interface {
	MapDMA(mem []byte, iova uint64, write bool) error
	UnmapDMA(iova, size uint64) error
}

// iommuMaps are the pools mapped in one VFIO container, and the IOVAs they
// got. Pools are compared by identity: two generations' pools may share
// an id.
type iommuMaps struct {
	dma   vfioDMA
	iovas *pci.IOVAs
	pools map[*pool.Pool]uint64 // the IOVA of each pool's byte 0
}

func newIOMMUMaps(dma vfioDMA, iovas *pci.IOVAs) *iommuMaps {
	return &iommuMaps{dma: dma, iovas: iovas, pools: make(map[*pool.Pool]uint64)}
}

// Map maps p's whole mapping (its buffers and header: one huge page or a
// few) at a fresh IOVA, writable by the device only if this process may
// write it (IP's receive pool; transmit pools are the device's to read).
func (m *iommuMaps) Map(p *pool.Pool) error {
	if _, ok := m.pools[p]; ok {
		return nil
	}
	mem := p.Mapping()
	iova, err := m.iovas.Alloc(uint64(len(mem)))
	if err != nil {
		return fmt.Errorf("nic: pool %d: %w", p.ID(), err)
	}
	if err := m.dma.MapDMA(mem, iova, p.Writable()); err != nil {
		m.iovas.Free(iova, uint64(len(mem)))
		return fmt.Errorf("nic: pool %d: %w", p.ID(), err)
	}
	m.pools[p] = iova
	return nil
}

// Unmap removes p's mapping; the device must be done with it.
func (m *iommuMaps) Unmap(p *pool.Pool) error {
	iova, ok := m.pools[p]
	if !ok {
		return nil
	}
	size := uint64(len(p.Mapping()))
	delete(m.pools, p)
	return errors.Join(m.dma.UnmapDMA(iova, size), m.iovas.Free(iova, size))
}

// ErrNotMapped: a buffer of a pool the IOMMU does not map.
var ErrNotMapped = errors.New("pool not mapped for the device")

// Translate gives the IOVA of the buffer ref names: its pool's IOVA plus
// its offset in the pool.
func (m *iommuMaps) Translate(p *pool.Pool, ref pool.Ref) ([]byte, uint64, error) {
	mem, err := p.Bytes(ref) // validates ref
	if err != nil {
		return nil, 0, err
	}
	iova, ok := m.pools[p]
	if !ok {
		return nil, 0, fmt.Errorf("nic: pool %d: %w", p.ID(), ErrNotMapped)
	}
	return mem, iova + uint64(ref.Off), nil
}

// vfioBackend: IOVAs in the function's own IOMMU container.
type vfioBackend struct {
	*pci.VFIO
	*iommuMaps
	irq string // "MSI" or "INTx"
}

func (b vfioBackend) Kind() string { return "vfio, " + b.irq }
func (vfioBackend) IOMMU() bool    { return true }

var (
	_ backend = uioBackend{}
	_ backend = vfioBackend{}
)

// openBackend opens fn the way init prepared it: through VFIO when it is
// bound to vfio-pci, else through uio. Under VFIO the function is reset
// through the kernel where it can be, before anything else.
func openBackend(fn pci.Device) (backend, *pci.BAR, error) {
	if fn.Driver() == "vfio-pci" {
		v, err := fn.OpenVFIO()
		if err != nil {
			return nil, nil, err
		}
		if v.CanReset() {
			if err := v.Reset(); err != nil {
				v.Close()
				return nil, nil, err
			}
			log.Printf("%s: reset through VFIO", fn.Addr)
		} else {
			log.Printf("%s: VFIO offers no reset for it: the family's Quiesce and Reset do it by the registers", fn.Addr)
		}
		if err := v.EnableBusMaster(); err != nil {
			v.Close()
			return nil, nil, err
		}
		bar, err := v.MapBAR(0)
		if err != nil {
			v.Close()
			return nil, nil, err
		}
		irq, err := v.SetUpInterrupts(true)
		if err != nil {
			bar.Close()
			v.Close()
			return nil, nil, err
		}
		return vfioBackend{VFIO: v, iommuMaps: newIOMMUMaps(v, pci.NewIOVAs()), irq: irq}, bar, nil
	}
	uioName, err := fn.BindUIO(5 * time.Second)
	if err != nil {
		return nil, nil, err
	}
	if err := fn.EnableBusMaster(); err != nil {
		return nil, nil, err
	}
	bar, err := fn.MapBAR(0)
	if err != nil {
		return nil, nil, err
	}
	irq, err := fn.OpenUIO(uioName)
	if err != nil {
		bar.Close()
		return nil, nil, err
	}
	return uioBackend{irq}, bar, nil
}
