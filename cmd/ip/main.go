// Command ip is the IP server process (see package servers/ip).
package main

import (
	"context"
	"flag"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"keepnet/kernel/exitcode"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/ip"
	"keepnet/servers/store"
)

func main() {
	if err := sandbox.Enter(sandbox.IP); err != nil {
		log.Fatal(err)
	}
	addr := flag.String("addr", "", "address and prefix, e.g. 10.0.2.15/24")
	gw := flag.String("gw", "", "default gateway")
	driver := flag.String("driver", "e1000.0", "the NIC driver component")
	udp := flag.String("udp", "udp", "the UDP transport component (empty: none)")
	tcp := flag.String("tcp", "", "the TCP transport component (empty: none)")
	filter := flag.String("pf", "", "the packet filter component (empty: none, nothing waits for a verdict)")
	storePath := flag.String("store", store.DefaultPath, "the store's socket")
	flag.Parse()
	profile.OnSignal() // keepnet profile ip
	log.SetFlags(0)

	var cfg ip.Config
	var err error
	if cfg.Addr, err = netip.ParsePrefix(*addr); err != nil {
		log.Printf("-addr %q: %v", *addr, err)
		os.Exit(exitcode.Config) // restarting will not help
	}
	if *gw != "" {
		if cfg.Gateway, err = netip.ParseAddr(*gw); err != nil {
			log.Printf("-gw %q: %v", *gw, err)
			os.Exit(exitcode.Config)
		}
	}
	st := store.Dial(*storePath)
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	transports := map[uint8]string{}
	if *udp != "" {
		transports[17] = *udp
	}
	if *tcp != "" {
		transports[6] = *tcp
	}
	if err := ip.Serve(ctx, ip.ServerOptions{Name: "ip", Driver: *driver, Transports: transports, Config: cfg, Store: st, Filter: *filter}); err != nil {
		exitcode.Exit(err) // a broken channel: exitcode.BrokenChannel
	}
}
