package nic

import (
	"bytes"
	"log"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
)

// HookDMAEscape is the test hook (keepnet.testhooks=1, `keepnet hook
// e1000.0 dma-escape`) that makes the driver misbehave the way the IOMMU
// is there for: it puts on the receive ring a descriptor whose buffer
// address lies outside every mapping the device has.
//
// The address is the physical address of a page of the driver's own: the
// unused tail of the huge page its rings are in, which the hook first
// fills with a pattern. Under VFIO the device's address space holds only
// IOVAs from pci.DefaultIOVABase up, above physical memory, so this
// address is mapped to nothing: the IOMMU blocks the device's write of the
// next frame and the kernel logs a DMA fault (DMAR: ... fault addr ...);
// the page keeps its pattern, and the hook says so in the log. Without an
// IOMMU (uio) the same descriptor makes the device write the frame into
// that page: harmless, since the page is the driver's, and the log says
// the write landed. Either way the frame is lost to IP (TCP retransmits
// it) and nothing else changes; a device the fault stopped is reset by the
// watchdog.
const HookDMAEscape = "dma-escape"

// escapeVictim is the length of the page the hook aims at.
const escapeVictim = 4096

// escapePattern fills the victim page.
const escapePattern = 0xa5

// dmaEscape is the hook's state, in the driver loop.
type dmaEscape struct {
	name  string
	be    backend
	rings *pool.Pool // the persistent ring region
	// ringsRef is the ring region's buffer, for its physical address.
	ringsRef pool.Ref
	// pending is set while the probe is out: when it came back, and what
	// to report.
	result chan []byte
	since  time.Time
	victim []byte
}

// hook is HookDMAEscape for d.
func (e *dmaEscape) hook(d *Driver) wiring.Hook {
	return wiring.Hook{Name: HookDMAEscape, Run: func() { e.run(d) }}
}

func (e *dmaEscape) run(d *Driver) {
	if e.rings == nil || e.result != nil {
		log.Printf("%s: %s: no ring region, or a probe is out already", e.name, HookDMAEscape)
		return
	}
	mem := e.rings.Mapping()
	if len(mem) < pool.HugePageSize {
		log.Printf("%s: %s: the ring region is not a huge page", e.name, HookDMAEscape)
		return
	}
	phys, err := e.rings.Phys(e.ringsRef) // the huge page is contiguous
	if err != nil {
		log.Printf("%s: %s: %v", e.name, HookDMAEscape, err)
		return
	}
	off := len(mem) - escapeVictim
	target := phys - uint64(e.ringsRef.Off) + uint64(off)
	e.victim = mem[off:]
	for i := range e.victim {
		e.victim[i] = escapePattern
	}
	size := d.dev.RxBufSize()
	if size > escapeVictim {
		log.Printf("%s: %s: receive buffers of %d bytes, more than the victim page", e.name, HookDMAEscape, size)
		return
	}
	e.result = make(chan []byte, 1)
	done := func(frame []byte) { e.result <- frame }
	if !d.PostProbe(netdev.Buffer{Mem: e.victim[:size], Addr: target}, done) {
		e.result = nil
		log.Printf("%s: %s: a probe is out already", e.name, HookDMAEscape)
		return
	}
	e.since = time.Now()
	where := "no IOMMU (uio): the device will write there"
	if e.be.IOMMU() {
		where = "outside every IOMMU mapping of this device"
	}
	log.Printf("%s: %s: receive descriptor (on the ring at the next free slot) with buffer address %#x, the physical address of a page of this driver filled with %#x; %s",
		e.name, HookDMAEscape, target, escapePattern, where)
}

// check reports the probe's outcome once the device gave it back (or a
// reset took it): whether the page kept its pattern.
func (e *dmaEscape) check() {
	if e.result == nil {
		return
	}
	var frame []byte
	select {
	case frame = <-e.result:
	default:
		return
	}
	e.result = nil
	intact := bytes.Count(e.victim, []byte{escapePattern}) == len(e.victim)
	how := "the device reported a frame in it"
	if frame == nil {
		how = "a reset took it back"
	}
	verdict := "the device's write did not land: the page is as it was"
	if !intact {
		verdict = "the device's write landed: the page changed"
	}
	log.Printf("%s: %s: after %v %s; %s", e.name, HookDMAEscape, time.Since(e.since).Round(time.Millisecond), how, verdict)
}
