// Command pf is the packet filter server process (see package servers/pf).
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"keepnet/kernel/exitcode"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/pf"
	"keepnet/servers/store"
)

func main() {
	if err := sandbox.Enter(sandbox.Filter); err != nil {
		log.Fatal(err)
	}
	storePath := flag.String("store", store.DefaultPath, "the store's socket")
	ipName := flag.String("ip", pf.IPPeer, "the IP component")
	ifaces := flag.String("ifaces", "e1000.0", "the interfaces, comma-separated, in ip's order")
	maxStates := flag.Int("max-states", pf.DefaultMaxStates, "the state table's size (its kept memory must hold it)")
	flag.Parse()
	profile.OnSignal() // keepnet profile pf
	log.SetFlags(0)

	st := store.Dial(*storePath)
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	o := pf.ServerOptions{Name: "pf", IP: *ipName, Ifaces: strings.Split(*ifaces, ","), MaxStates: *maxStates, Store: st}
	if err := pf.Serve(ctx, o); err != nil {
		exitcode.Exit(err) // a broken channel: exitcode.BrokenChannel
	}
}
