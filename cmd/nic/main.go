// Command nic is the userspace NIC driver process (see package drivers/nic).
// Init starts one per NIC, named after its family and index (e1000.0); the
// function's PCI vendor:device ID picks the family among those linked here.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"keepnet/drivers/netdev"
	"keepnet/drivers/nic"
	"keepnet/e1000"
	"keepnet/kernel/exitcode"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/store"
)

func main() {
	if err := sandbox.Enter(sandbox.Driver); err != nil {
		log.Fatal(err)
	}
	name := flag.String("name", "e1000.0", "component name")
	index := flag.Int("index", 0, "which NIC function a linked family drives, in PCI address order")
	addr := flag.String("pci", "", "the PCI address of the NIC function to drive, instead of -index (keepnet.nics)")
	untested := flag.Bool("untested", false, "drive a NIC its family is written for but no test has driven (keepnet.nic.untested=1)")
	pktgen := flag.Duration("pktgen", 0, "run the frame generator this long before serving (keepnet.pktgen; 0: off)")
	pktgenSize := flag.Int("pktgen-size", nic.MinFrame, "the generator's frame length, without CRC")
	pktgenRxOnly := flag.Bool("pktgen-rx-only", false, "the generator only counts what arrives (after one frame that marks the window)")
	flag.Parse()
	profile.OnSignal() // keepnet profile NAME
	log.SetFlags(0)
	// Every NIC family the process drives: one entry per device package.
	families, err := netdev.NewRegistry(e1000.Family())
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st := store.Dial(store.DefaultPath)
	defer st.Close()
	pub := store.NewPublisher(st, "stats", *name)
	defer pub.Close()
	opts := nic.Options{Name: *name, Families: families, Index: *index, Addr: *addr, Untested: *untested, Stats: func(s nic.Stats) { pub.Publish(s) },
		PktGen: nic.PktGenConfig{Duration: *pktgen, Size: *pktgenSize, RxOnly: *pktgenRxOnly}}
	if err := nic.Run(ctx, opts); err != nil {
		exitcode.Exit(err) // a broken channel: exitcode.BrokenChannel; no huge pages: exitcode.Config
	}
}
