// Command udp is the UDP server process (see package servers/udp).
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"keepnet/kernel/exitcode"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/store"
	"keepnet/servers/udp"
)

func main() {
	if err := sandbox.Enter(sandbox.Transport); err != nil {
		log.Fatal(err)
	}
	storePath := flag.String("store", store.DefaultPath, "the store's socket")
	ipName := flag.String("ip", udp.IPPeer, "the IP component")
	syscallName := flag.String("syscall", udp.SyscallPeer, "the SYSCALL component")
	grants := flag.Bool("grants", false, "init grants us the applications' pools; syscall forwards their buffers by reference")
	flag.Parse()
	profile.OnSignal() // keepnet profile udp
	log.SetFlags(0)

	st := store.Dial(*storePath)
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := udp.Serve(ctx, udp.ServerOptions{Name: "udp", IP: *ipName, Syscall: *syscallName, Store: st, Grants: *grants}); err != nil {
		exitcode.Exit(err) // a broken channel: exitcode.BrokenChannel
	}
}
