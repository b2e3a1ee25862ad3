package nic

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	"keepnet/drivers/pci"
	"keepnet/e1000"
	"keepnet/kernel/channel"
	"keepnet/kernel/wiring"
)

// Options choose the device a driver process drives.
type Options struct {
	Name  string // the component's name, e.g. e1000.0
	Index int    // which supported function, in PCI address order
	// Stats, if set, receives the driver's counters once a second.
	Stats func(Stats)
}

// Stats is what a driver publishes for `keepnet stats e1000.N`.
type Stats struct {
	Generation     int
	PCI            string
	MAC            string
	LinkUp         bool
	PeerGeneration int
	Counters
	Sleeps
	Device e1000.Stats
}

// Sleeps counts how the loop's sleeps ended, so a stalled interrupt shows:
// a driver that wakes only by timeout while frames arrive is not being
// interrupted.
type Sleeps struct {
	WokenByInterrupt uint64
	WokenOtherwise   uint64 // a request from IP, the wiring, or the timeout
	InterruptCount   uint32 // the kernel's count for the line (uio)
	EnableErrors     uint64 // unmasking the interrupt failed
}

// Tuning of the process loop.
const (
	// spinRounds is how many empty polls the loop makes before sleeping:
	// the few microseconds it costs keep a busy link off the interrupt path.
	spinRounds = 200
	// sleepTimeout bounds a sleep even if no interrupt comes.
	sleepTimeout = 50 * time.Millisecond
	joinTimeout  = 10 * time.Second
)

// Run is the e1000 driver process: bind the function, quiesce it, join the
// wiring, reset it on the persistent rings and serve IP until ctx ends.
func Run(ctx context.Context, o Options) error {
	fn, err := findFunction(o.Index)
	if err != nil {
		return err
	}
	uioName, err := fn.BindUIO(5 * time.Second)
	if err != nil {
		return err
	}
	if err := fn.EnableBusMaster(); err != nil {
		return err
	}
	bar, err := fn.MapBAR(0)
	if err != nil {
		return err
	}
	defer bar.Close()
	irq, err := fn.OpenUIO(uioName)
	if err != nil {
		return err
	}
	defer irq.Close()
	// Before anything else: the previous generation may have left buffers
	// on the rings, in pools init frees once this process says hello.
	if err := e1000.Quiesce(bar, nil); err != nil {
		return err
	}

	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := e1000.Config{StickyCounters: underQEMU()}
	rings, err := ringRegion(setup, o.Name, cfg)
	if err != nil {
		return err
	}
	dev, err := e1000.New(bar, rings, cfg)
	if err != nil {
		return err
	}
	if _, err := dev.Reset(); err != nil {
		return err
	}
	mac := dev.MAC()
	log.Printf("%s at %s (%s), MAC %x, link %s, generation %d", o.Name, fn.Addr, uioName,
		mac, map[bool]string{true: "up", false: "down"}[dev.LinkUp()], setup.Generation)

	d := New(dev, Physical)
	for _, p := range setup.Peers {
		if err := adopt(d, conn, p); err != nil {
			return err
		}
	}
	if err := conn.Send(wiring.Message{Type: wiring.TypeUp}); err != nil {
		return err
	}
	// Later IP generations are announced on the wiring socket.
	watch, err := wiring.Watch(conn)
	if err != nil {
		return err
	}
	defer watch.Close()
	defer conn.Close() // ends the watcher

	var nextStats time.Time
	var sleeps Sleeps
	for ctx.Err() == nil {
		if now := time.Now(); o.Stats != nil && now.After(nextStats) {
			st := Stats{Generation: setup.Generation, PCI: fn.Addr, MAC: fmt.Sprintf("%x", mac), LinkUp: dev.LinkUp(),
				Counters: d.Counters(), Sleeps: sleeps, Device: dev.Stats()}
			if p := d.Peer(); p != nil {
				st.PeerGeneration = p.Generation
			}
			o.Stats(st)
			nextStats = now.Add(time.Second)
		}
		select {
		case p, ok := <-watch.C:
			if !ok {
				return errors.New("nic: init closed the wiring socket")
			}
			if err := adopt(d, conn, p); err != nil {
				return err
			}
			continue
		default:
		}
		for idle := 0; idle < spinRounds; {
			if d.Poll() {
				idle = 0
			} else {
				idle++
			}
		}
		if !d.Idle() {
			continue
		}
		sleep(d, irq, watch, dev, &sleeps)
	}
	return nil
}

// adopt starts serving a new IP generation and releases the old one's pools.
func adopt(d *Driver, conn *wiring.Conn, p *wiring.Peer) error {
	old, err := d.Adopt(&Peer{Name: p.Name, Generation: p.Generation, Port: p.Port, Pools: p.Pools})
	if err != nil {
		return err
	}
	for _, pl := range old {
		id := pl.ID()
		pl.Close()
		if err := conn.Send(wiring.Message{Type: wiring.TypeRelease, Pool: &wiring.PoolInfo{ID: id}}); err != nil {
			log.Printf("releasing pool %d: %v", id, err)
		}
	}
	log.Printf("serving %s generation %d", p.Name, p.Generation)
	return nil
}

// sleep waits for the device's interrupt, a request from IP or a wiring
// event, whichever comes first.
//
// The interrupt is level-triggered INTx. Before unmasking it the loop
// acknowledges every pending cause (reading ICR deasserts the line) and
// polls the rings once more, so that a frame that arrived since the last
// poll is served now rather than by an interrupt that was raised, and
// acknowledged, before the unmask.
func sleep(d *Driver, irq *pci.UIO, watch *wiring.Watcher, dev *e1000.Dev, n *Sleeps) {
	dev.Interrupts()
	if d.Poll() || !d.Idle() {
		return
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
	r := channel.WaitAny(ports, []int{irq.Fd(), watch.Fd()}, sleepTimeout)
	if r[0] {
		n.WokenByInterrupt++
		if c, err := irq.Wait(0); err == nil { // consume the count
			n.InterruptCount = c
		}
	} else {
		n.WokenOtherwise++
	}
	if r[1] {
		watch.Drain()
	}
}

// findFunction returns the index-th supported e1000 function.
func findFunction(index int) (pci.Device, error) {
	var all []pci.Device
	for _, dt := range e1000.Devices {
		if !dt.Supported {
			continue
		}
		fns, err := pci.Find(dt.Vendor, dt.ID)
		if err != nil {
			return pci.Device{}, err
		}
		all = append(all, fns...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Addr < all[j].Addr })
	if index >= len(all) {
		return pci.Device{}, fmt.Errorf("nic: no supported e1000 function number %d (found %d)", index, len(all))
	}
	return all[index], nil
}

// ringRegion carves the descriptor rings out of the persistent region init
// keeps for this driver: the same memory in every generation, so a device
// writing back descriptors after a crash writes into memory nobody else got.
func ringRegion(s *wiring.Setup, name string, cfg e1000.Config) (e1000.Region, error) {
	p, ok := s.Regions[name+".rings"]
	if !ok {
		return e1000.Region{}, fmt.Errorf("nic: init sent no region %s.rings", name)
	}
	if !p.Huge() {
		return e1000.Region{}, errors.New("nic: the ring region is not in huge pages: its physical memory may not be contiguous")
	}
	ref, ok := p.Alloc()
	if !ok {
		return e1000.Region{}, errors.New("nic: empty ring region")
	}
	mem, addr, err := Physical(p, ref)
	if err != nil {
		return e1000.Region{}, err
	}
	n := e1000.RingBytes(cfg)
	if len(mem) < n {
		return e1000.Region{}, fmt.Errorf("nic: ring region buffer of %d bytes, need %d", len(mem), n)
	}
	return e1000.Region{Mem: mem[:n], Addr: addr}, nil
}

// underQEMU tells whether the machine is QEMU's (its e1000 keeps its
// statistics registers as running totals).
func underQEMU() bool {
	b, _ := os.ReadFile("/sys/class/dmi/id/sys_vendor")
	return strings.Contains(string(b), "QEMU")
}
