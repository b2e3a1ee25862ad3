// Command syscall is keepnet's SYSCALL server (see package servers/syscallsrv).
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
	"keepnet/servers/ops"
	"keepnet/servers/store"
	"keepnet/servers/syscallsrv"
)

func main() {
	if err := sandbox.Enter(sandbox.Syscall); err != nil {
		log.Fatal(err)
	}
	udp := flag.String("udp", "udp", "the UDP transport component")
	tcp := flag.String("tcp", "", "the TCP transport component (empty: none)")
	apps := flag.String("apps", "", "the application components, comma-separated, in init's order (servers/syscallsrv: their socket ids)")
	zeroCopy := flag.String("zerocopy", "", "the transports granted the applications' pools, comma-separated: sends and receives go to them with the applications' own buffers")
	storePath := flag.String("store", store.DefaultPath, "the store's socket")
	flag.Parse()
	profile.OnSignal() // keepnet profile syscall
	log.SetFlags(0)
	st := store.Dial(*storePath)
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	transports := map[ops.Network]string{ops.UDP: *udp}
	if *tcp != "" {
		transports[ops.TCP] = *tcp
	}
	opts := syscallsrv.Options{Name: "syscall", Transports: transports, Store: st}
	if *apps != "" {
		opts.Apps = strings.Split(*apps, ",")
	}
	if *zeroCopy != "" {
		opts.ZeroCopy = strings.Split(*zeroCopy, ",")
	}
	if err := syscallsrv.Serve(ctx, opts); err != nil {
		exitcode.Exit(err) // a broken channel: exitcode.BrokenChannel
	}
}
