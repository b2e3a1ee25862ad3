// Command e1000 is the userspace Intel PRO/1000 driver process (see package
// drivers/nic). Init starts one per NIC, named e1000.N.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"keepnet/drivers/nic"
	"keepnet/kernel/profile"
	"keepnet/servers/store"
)

func main() {
	name := flag.String("name", "e1000.0", "component name")
	index := flag.Int("index", 0, "which supported e1000 function, in PCI address order")
	flag.Parse()
	profile.OnSignal() // keepnet profile NAME
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st := store.Dial(store.DefaultPath)
	defer st.Close()
	pub := store.NewPublisher(st, "stats", *name)
	defer pub.Close()
	opts := nic.Options{Name: *name, Index: *index, Stats: func(s nic.Stats) { pub.Publish(s) }}
	if err := nic.Run(ctx, opts); err != nil {
		log.Fatal(err)
	}
}
