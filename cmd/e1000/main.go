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
)

func main() {
	name := flag.String("name", "e1000.0", "component name")
	index := flag.Int("index", 0, "which supported e1000 function, in PCI address order")
	flag.Parse()
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := nic.Run(ctx, nic.Options{Name: *name, Index: *index}); err != nil {
		log.Fatal(err)
	}
}
