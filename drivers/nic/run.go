package nic

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/drivers/netdev"
	"keepnet/drivers/pci"
	"keepnet/kernel/channel"
	"keepnet/kernel/exitcode"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
)

// The families drive the device through its BAR0 mapping.
var _ netdev.Regs = (*pci.BAR)(nil)

// Options choose the device a driver process drives.
type Options struct {
	Name string // the component's name, e.g. e1000.0
	// Families are the NIC families the process links; the function's PCI
	// ID picks one.
	Families *netdev.Registry
	Index    int // which function Families drives, in PCI address order
	// Addr, when set, is the PCI address of the function to drive
	// instead (keepnet.nics): it must be one Families drives.
	Addr string
	// Untested lets the driver take a function its family is written for
	// but no test has driven (netdev.Family.Untested); without it such a
	// function is refused, saying so (keepnet.nic.untested=1).
	Untested bool
	// Stats, if set, receives the driver's counters once a second.
	Stats func(Stats)
	// PktGen, if its Duration is set, runs the frame generator before
	// the driver serves (pktgen.go): in the first generation only, the
	// one a boot measures; a restarted driver serves at once.
	PktGen PktGenConfig
}

// Stats is what a driver publishes for `keepnet stats e1000.N`.
type Stats struct {
	Generation int
	PCI        string // its address, e.g. 0000:00:03.0
	PCIID      string // vendor:device, e.g. 8086:100e: which part
	Family     string // the NIC family driving it, e.g. e1000
	// Backend is how the driver reaches the device: "uio" (physical
	// addresses, no IOMMU), or "vfio, MSI" / "vfio, INTx" (an IOMMU maps
	// only the driver's pools and rings; backend.go).
	Backend        string
	MAC            string
	LinkUp         bool
	PeerGeneration int
	Counters
	Sleeps
	Timing
	Device netdev.Stats
	// PktGen is what the frame generator moved before the driver served
	// (keepnet.pktgen); absent without it.
	PktGen *PktGen `json:",omitempty"`
	// SpinRounds is how many polls in a row must find nothing before the
	// loop sleeps (spinRoundsOn).
	SpinRounds int
}

// spinRoundsOn is how many polls in a row must find nothing before the
// loop sleeps, given how many processors it may run on. On one, a single
// empty poll: the driver shares that processor with ip and the transports
// (boot/pid1 "Processors", or a machine with one), and under SCHED_BATCH
// the frame it has just handed ip waits until the driver sleeps, so every
// further poll only delays the answer.
func spinRoundsOn(processors int) int {
	if processors < 2 {
		return 1
	}
	return spinRounds
}

// processors is how many processors this process may run on (its
// affinity; 1 if the kernel will not say).
func processors() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 1
	}
	return set.Count()
}

// Sleeps counts how the loop's sleeps ended, so a stalled interrupt shows:
// a driver that wakes only by timeout while frames arrive is not being
// interrupted.
type Sleeps struct {
	WokenByInterrupt uint64
	WokenOtherwise   uint64 // a request from IP, the wiring, or the timeout
	// ServedAwake counts sleeps not taken: work came while the loop got
	// ready to sleep, after its empty polls.
	ServedAwake uint64
	// StaleInterrupts counts interrupts consumed before sleeping: raised
	// while the loop polled, for work it has served.
	StaleInterrupts uint64
	InterruptCount  uint32 // the kernel's count for the line (uio), or the eventfd's total (VFIO)
	EnableErrors    uint64 // unmasking the interrupt failed
	// unread: the last sleep ended by the interrupt, whose count the
	// next settle reads (not a stale one).
	unread bool
}

// Tuning of the process loop.
const (
	// spinRounds is how many polls in a row must find nothing before the
	// loop sleeps, when it may run on more than one processor: the few
	// microseconds they cost keep a busy link off the interrupt path
	// (spinRoundsOn). At least one: the loop polls only there.
	spinRounds = 200
	// sleepTimeout bounds a sleep even if no interrupt comes.
	sleepTimeout = 50 * time.Millisecond
	joinTimeout  = 10 * time.Second
)

// Prepare readies the function a driver process with these families and
// index (or PCI address addr, when not empty) will drive, for a driver
// running as uid and gid without root: on a machine with an IOMMU it binds
// the function to vfio-pci and hands the driver its group's node
// (pci.Device.GiveVFIOTo), otherwise it binds it to uio_pci_generic and
// hands the driver its files (pci.Device.GiveTo). Init calls it before every start of the driver;
// Run then finds the function bound already. An untested part is
// prepared too: the driver itself refuses it, in its log and exit status.
//
// irqCPUs, if not empty, are the processors the driver runs on: the
// function's interrupts are delivered there (pci.Device.SteerIRQs), so the
// kernel's handler wakes the driver on its own processor. MSI vectors the
// driver enables itself (VFIO) come after and stay where the kernel puts
// them.
func Prepare(families *netdev.Registry, index int, addr string, uid, gid int, irqCPUs []int) error {
	fn, _, err := findFunction(families, index, addr, true)
	if err != nil {
		return err
	}
	steer := func() {
		if err := fn.SteerIRQs(irqCPUs); err != nil {
			log.Print(err) // delivered elsewhere: slower, not wrong
		}
	}
	if pci.HasIOMMU(IOMMUClass) {
		group, err := fn.BindVFIO(5 * time.Second)
		if err != nil {
			return err
		}
		steer()
		return fn.GiveVFIOTo(group, uid, gid)
	}
	uioName, err := fn.BindUIO(5 * time.Second)
	if err != nil {
		return err
	}
	steer()
	return fn.GiveTo(uioName, uid, gid)
}

// IOMMUClass is where the kernel lists the IOMMUs it drives.
var IOMMUClass = "/sys/class/iommu"

// Run is the driver process: find the function and its family, bind it,
// quiesce it, join the wiring, reset it on the persistent rings and serve
// IP until ctx ends.
func Run(ctx context.Context, o Options) error {
	fn, fam, err := findFunction(o.Families, o.Index, o.Addr, o.Untested)
	if err != nil {
		return err
	}
	if part, ok := o.Families.Untested(pciID(fn)); ok {
		log.Printf("%s: %s at %s (%s) was never tested: driving it as asked (keepnet.nic.untested=1)", o.Name, pciID(fn), fn.Addr, part)
	}
	be, bar, err := openBackend(fn)
	if err != nil {
		return err
	}
	defer be.Close()
	defer bar.Close()
	// Before anything else: the previous generation may have left buffers
	// on the rings, in pools init frees once this process says hello.
	if err := fam.Quiesce(bar, pciID(fn)); err != nil {
		return fmt.Errorf("nic: quiescing %s (%s): %w", fn, fam.Name, err)
	}

	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	rings, ringsRef, err := ringRegion(setup, o.Name, fam.RingBytes, be)
	if err != nil {
		return err
	}
	dev, err := fam.Open(bar, pciID(fn), rings, netdev.Platform{QEMU: underQEMU()})
	if err != nil {
		return fmt.Errorf("nic: %s (%s): %w", fn, fam.Name, err)
	}
	if _, err := dev.Reset(); err != nil {
		return fmt.Errorf("nic: %s (%s): %w", fn, fam.Name, err)
	}
	mac := dev.MAC()
	log.Printf("%s at %s (%s, %s), MAC %x, link %s, generation %d", o.Name, fn, be.Kind(), fam.Name,
		mac, map[bool]string{true: "up", false: "down"}[dev.LinkUp()], setup.Generation)

	var gen *PktGen
	if o.PktGen.Duration > 0 && setup.Generation == 1 {
		r, err := runPktGen(ctx, o.Name, setup, dev, o.PktGen, be)
		if errors.Is(err, context.Canceled) {
			return nil
		} else if err != nil {
			return err
		}
		gen = &r
	}

	d := New(dev, be.Translate)
	for _, p := range setup.Peers {
		if err := adopt(d, conn, p, be); err != nil {
			return err
		}
	}
	if err := conn.Send(wiring.Message{Type: wiring.TypeUp}); err != nil {
		return err
	}
	// Later IP generations are announced on the wiring socket.
	escape := &dmaEscape{name: o.Name, be: be, rings: setup.Regions[o.Name+".rings"], ringsRef: ringsRef}
	watch, err := wiring.Watch(conn, append(deviceHooks(fam, bar), escape.hook(d))...)
	if err != nil {
		return err
	}
	defer watch.Close()
	defer conn.Close() // ends the watcher

	var nextStats time.Time
	var sleeps Sleeps
	spin := spinRoundsOn(processors())
	for ctx.Err() == nil {
		watch.Alive() // init's pings, answered by this loop (kernel/wiring "Hang detection")
		now := time.Now()
		d.Moderate(now)
		if o.Stats != nil && now.After(nextStats) {
			st := Stats{Generation: setup.Generation, PCI: fn.Addr, PCIID: pciID(fn).String(), Family: fam.Name, Backend: be.Kind(), MAC: fmt.Sprintf("%x", mac), LinkUp: dev.LinkUp(),
				Counters: d.Counters(), Sleeps: sleeps, Timing: d.Timing(), Device: dev.Stats(), PktGen: gen, SpinRounds: spin}
			if p := d.Peer(); p != nil {
				st.PeerGeneration = p.Generation
			}
			o.Stats(st)
			nextStats = now.Add(time.Second)
		}
		escape.check()
		if reason, err := d.Watch(now, DefaultWatchLimit); err != nil {
			return err
		} else if reason != "" {
			log.Printf("%s: %s: device reset (%d so far)", o.Name, reason, d.Counters().Resets)
		}
		select {
		case p, ok := <-watch.C:
			if !ok {
				return errors.New("nic: init closed the wiring socket")
			}
			if err := adopt(d, conn, p, be); err != nil {
				return err
			}
			continue
		default:
		}
		for idle := 0; idle < spin; {
			watch.Alive() // here too: under load this loop may not end for long
			woken := d.peerWakeups()
			if d.Poll() {
				idle = 0
				// IP, woken by the frames, handles them before this
				// loop's further polls and its sleep's chores.
				channel.Handoff(d.peerWakeups() > woken)
			} else {
				idle++
			}
		}
		if !d.Idle() {
			continue
		}
		if err := sleep(d, be, watch, dev, &sleeps); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoHugePages: memory the device would DMA into is not in huge pages.
// An ordinary 4 KiB page may be moved by the kernel (compaction,
// migration) while the device writes to its old physical address, and a
// buffer may straddle two pages that are not contiguous: the driver
// refuses to run rather than corrupt memory. The error also wraps
// exitcode.ErrConfig: the driver exits with exitcode.Config (78), which
// the supervisor does not restart, since a restart finds no more huge
// pages than this start did.
var ErrNoHugePages = errors.New("not in huge pages")

// hugeBacked is what requireHuge needs of a pool.
type hugeBacked interface{ Huge() bool }

// requireHuge fails with ErrNoHugePages, saying what to do, unless p is in
// huge pages.
func requireHuge(name string, p hugeBacked) error {
	if p.Huge() {
		return nil
	}
	return fmt.Errorf("nic: %s is %w: the kernel may move an ordinary page under the device's DMA; "+
		"reserve huge pages before the stack starts (hugepages=N on the kernel command line, or /proc/sys/vm/nr_hugepages) (%w)",
		name, ErrNoHugePages, exitcode.ErrConfig)
}

// deviceHooks are the family's test hooks on this device, for the wiring
// watcher (they run only when test hooks are enabled).
func deviceHooks(fam netdev.Family, r netdev.Regs) []wiring.Hook {
	var hooks []wiring.Hook
	for name, stop := range fam.TestHooks {
		hooks = append(hooks, wiring.Hook{Name: name, Run: func() { stop(r) }})
	}
	return hooks
}

// adopt starts serving a new IP generation and releases the old one's
// pools. Every pool of the new generation must be in huge pages. The new
// pools are mapped for the device first; the old ones are unmapped only
// after Adopt reset the device, which held their buffers until then.
func adopt(d *Driver, conn *wiring.Conn, p *wiring.Peer, be backend) error {
	for _, pl := range p.Pools {
		if err := requireHuge(fmt.Sprintf("pool %d of %s", pl.ID(), p.Name), pl); err != nil {
			return err
		}
		if err := be.Map(pl); err != nil {
			return err
		}
	}
	old, err := d.Adopt(&Peer{Name: p.Name, Generation: p.Generation, Port: p.Port, Pools: p.Pools})
	if err != nil {
		return err
	}
	for _, pl := range old {
		id := pl.ID()
		if err := be.Unmap(pl); err != nil {
			log.Printf("unmapping pool %d: %v", id, err)
		}
		pl.Close()
		if err := conn.Send(wiring.Message{Type: wiring.TypeRelease, Pool: &wiring.PoolInfo{ID: id}}); err != nil {
			log.Printf("releasing pool %d: %v", id, err)
		}
	}
	if len(old) > 0 {
		// Adopt reset the device: it held the old generation's buffers.
		log.Printf("serving %s generation %d, after a device reset (%d so far)", p.Name, p.Generation, d.Counters().Resets)
	} else {
		log.Printf("serving %s generation %d", p.Name, p.Generation)
	}
	return nil
}

// irqLine is the device's interrupt as the loop's sleep uses it (backend's).
type irqLine interface {
	Fd() int
	Enable() error
	Wait(timeout time.Duration) (uint32, error)
}

// sleep waits for the device's interrupt, a request from IP or a wiring
// event, whichever comes first, once settle found nothing left to do.
//
// A broken channel to IP (kernel/channel.ErrBroken) is returned: the driver
// ends, and its restart resets the device and gets a fresh channel.
func sleep(d *Driver, irq irqLine, watch *wiring.Watcher, dev netdev.Device, n *Sleeps) error {
	if !settle(d, irq, dev, n) {
		return nil
	}
	var ports []*channel.Endpoint
	if p := d.Peer(); p != nil {
		if ep, ok := p.Port.(*channel.Endpoint); ok {
			ports = append(ports, ep)
		}
	}
	if err := irq.Enable(); err != nil {
		n.EnableErrors++
	}
	var r [2]bool
	if err := channel.WaitAny(r[:], ports, []int{irq.Fd(), watch.Fd()}, sleepTimeout); err != nil {
		return fmt.Errorf("nic: channel to %s generation %d: %w", d.Peer().Name, d.Peer().Generation, err)
	}
	if r[0] {
		// The interrupt's count is read by the next settle, before the
		// next sleep: read now, it would put two system calls between
		// the interrupt and the frames it announced.
		n.WokenByInterrupt++
		n.unread = true
	} else {
		n.WokenOtherwise++
	}
	if r[1] {
		watch.Drain()
	}
	return nil
}

// settle readies the loop to sleep on the interrupt and reports whether it
// may: false when there was work after all (counted in ServedAwake).
//
// The interrupt is level-triggered INTx (or MSI, under VFIO where the
// function has it: then the unmask is a no-op). A sleep that ended by
// another wake-up (a request from IP, the timeout) left it unmasked, and
// the device may have raised it since, for frames the loop's polls have
// served: the kernel then counts it (uio's count, VFIO's eventfd), masks
// INTx, and the fd stays readable until read. Slept on, it would end the
// next sleep at once, for nothing; settle consumes it first, as it does
// the count of the interrupt that ended the last sleep (left unread, so
// that the loop served its frames first). Then it
// acknowledges every pending cause (reading ICR deasserts the line) and
// polls the rings once more, so that a frame that came since the last poll
// is served now rather than by an interrupt that was raised, and
// acknowledged, before the unmask. In that order nothing is missed: an
// interrupt raised between the consuming read and the ICR read at worst
// ends the sleep at once, and the poll serves its frame.
func settle(d *Driver, irq irqLine, dev netdev.Device, n *Sleeps) bool {
	if c, err := irq.Wait(0); err == nil {
		if !n.unread {
			n.StaleInterrupts++
		}
		n.InterruptCount = c
	}
	n.unread = false
	dev.Interrupts()
	if d.Poll() || !d.Idle() {
		n.ServedAwake++
		return false
	}
	return true
}

// findFunction returns the index-th PCI function a family in reg drives,
// and that family.
func findFunction(reg *netdev.Registry, index int, addr string, untested bool) (pci.Device, netdev.Family, error) {
	if reg == nil {
		return pci.Device{}, netdev.Family{}, errors.New("nic: no NIC family registered")
	}
	all, err := pci.List()
	if err != nil {
		return pci.Device{}, netdev.Family{}, err
	}
	return pick(all, reg, index, addr, untested)
}

// ErrUntested: the function is a part its family is written for but no
// test has driven. It is a configuration error (the driver is not
// restarted): the user decides whether to try it.
var ErrUntested = errors.New("written from its datasheet but never tested; boot with keepnet.nic.untested=1 to drive it anyway")

// pick chooses the index-th function of fns that a family in reg drives, in
// PCI address order, or with addr the one at that address, and looks its
// family up. An untested part counts among the functions either way, so
// that NIC numbers do not depend on the flag, but is refused unless
// untested is set.
func pick(fns []pci.Device, reg *netdev.Registry, index int, addr string, untested bool) (pci.Device, netdev.Family, error) {
	var driven []pci.Device
	for _, fn := range fns {
		if reg.Drives(pciID(fn)) {
			driven = append(driven, fn)
		}
	}
	sort.Slice(driven, func(i, j int) bool { return driven[i].Addr < driven[j].Addr })
	if addr != "" {
		i := slices.IndexFunc(driven, func(fn pci.Device) bool { return fn.Addr == addr })
		if i < 0 {
			return pci.Device{}, netdev.Family{}, fmt.Errorf("nic: no NIC at PCI address %s that %s drives: %w", addr, reg, exitcode.ErrConfig)
		}
		index = i
	}
	if index < 0 || index >= len(driven) {
		return pci.Device{}, netdev.Family{}, fmt.Errorf("nic: no NIC function number %d (found %d of %s)", index, len(driven), reg)
	}
	fn := driven[index]
	if part, ok := reg.Untested(pciID(fn)); ok {
		if !untested {
			return pci.Device{}, netdev.Family{}, fmt.Errorf("nic: %s at %s (%s) is %w: %w", pciID(fn), fn.Addr, part, ErrUntested, exitcode.ErrConfig)
		}
	}
	fam, err := reg.Lookup(pciID(fn))
	return fn, fam, err
}

func pciID(fn pci.Device) netdev.PCIID {
	return netdev.PCIID{Vendor: fn.Vendor, Device: fn.DeviceID}
}

// ringRegion maps (for the device) and carves the descriptor rings out of the persistent region init
// keeps for this driver: the same memory in every generation, so a device
// writing back descriptors after a crash writes into memory nobody else got.
func ringRegion(s *wiring.Setup, name string, need int, be backend) (netdev.Region, pool.Ref, error) {
	p, ok := s.Regions[name+".rings"]
	if !ok {
		return netdev.Region{}, pool.Ref{}, fmt.Errorf("nic: init sent no region %s.rings", name)
	}
	if err := requireHuge(name+".rings", p); err != nil {
		return netdev.Region{}, pool.Ref{}, err
	}
	ref, ok := p.Alloc()
	if !ok {
		return netdev.Region{}, pool.Ref{}, errors.New("nic: empty ring region")
	}
	if err := be.Map(p); err != nil {
		return netdev.Region{}, pool.Ref{}, err
	}
	mem, addr, err := be.Translate(p, ref)
	if err != nil {
		return netdev.Region{}, pool.Ref{}, err
	}
	if len(mem) < need {
		return netdev.Region{}, pool.Ref{}, fmt.Errorf("nic: ring region buffer of %d bytes, need %d", len(mem), need)
	}
	return netdev.Region{Mem: mem[:need], Addr: addr}, ref, nil
}

// underQEMU tells whether the machine is QEMU's (netdev.Platform: e1000
// under QEMU keeps its statistics registers as running totals).
func underQEMU() bool {
	b, _ := os.ReadFile("/sys/class/dmi/id/sys_vendor")
	return strings.Contains(string(b), "QEMU")
}
