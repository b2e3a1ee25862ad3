// Command resolver resolves a name every second through the appliance's DNS
// server over one UDP socket it keeps all its life, and publishes its counts
// (keepnet stats resolver). See package apps/resolver.
package main

import (
	"context"
	"flag"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"keepnet/apps/netapi"
	"keepnet/apps/resolver"
	"keepnet/apps/stacks"
	"keepnet/kernel/notify"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/store"
)

func main() {
	if err := sandbox.Enter(sandbox.App); err != nil {
		log.Fatal(err)
	}
	dns := flag.String("dns", "", "the DNS server's address")
	name := flag.String("name", "keepnet.test", "the name to resolve")
	stack := flag.String("stack", netapi.StackLinux, "network stack: linux or keepnet")
	flag.Parse()
	profile.OnSignal() // keepnet profile resolver
	log.SetFlags(0)
	server, err := netip.ParseAddr(*dns)
	if err != nil {
		log.Printf("-dns %q: %v", *dns, err)
		os.Exit(78) // a configuration error: restarting will not help
	}
	network, err := stacks.Open(*stack)
	if err != nil {
		log.Fatal(err)
	}
	pc, err := network.ListenPacket("udp", ":0")
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	log.Printf("resolving %s through %v from %v every second (%s stack)", *name, server, pc.LocalAddr(), *stack)
	if err := notify.Ready(); err != nil { // its socket is open: it runs as it should
		log.Print(err)
	}

	st := store.Dial(store.DefaultPath)
	defer st.Close()
	pub := store.NewPublisher(st, "stats", "resolver")
	defer pub.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = resolver.Run(ctx, resolver.Config{
		Conn: pc, Server: netip.AddrPortFrom(server, 53), Name: *name,
		Every: time.Second, Timeout: 900 * time.Millisecond,
		Report: func(c resolver.Counts) { pub.Publish(c) },
	})
	if err != nil {
		log.Fatal(err)
	}
}
