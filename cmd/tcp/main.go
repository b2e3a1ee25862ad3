// Command tcp is the TCP server process (see package servers/tcp).
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
	"keepnet/servers/tcp"
)

func main() {
	if err := sandbox.Enter(sandbox.Transport); err != nil {
		log.Fatal(err)
	}
	storePath := flag.String("store", store.DefaultPath, "the store's socket")
	ipName := flag.String("ip", tcp.IPPeer, "the IP component")
	syscallName := flag.String("syscall", tcp.SyscallPeer, "the SYSCALL component")
	noTSO := flag.Bool("no-tso", false, "never ask for segmentation offload, even if IP offers it")
	iw := flag.Int("iw", 0, "the initial congestion window in segments (keepnet.tcp.iw; 0: RFC 6928's 10)")
	rack := flag.Bool("rack", false, "RACK-TLP loss detection and tail loss probes (keepnet.tcp.rack=on; RFC 8985)")
	noECN := flag.Bool("no-ecn", false, "refuse ECN when a peer asks for it (keepnet.tcp.ecn=off)")
	grants := flag.Bool("grants", false, "init grants us the applications' pools; syscall forwards their buffers by reference")
	flag.Parse()
	profile.OnSignal() // keepnet profile tcp
	log.SetFlags(0)

	st := store.Dial(*storePath)
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The ISN key is drawn from crypto/rand by the server.
	if err := tcp.Serve(ctx, tcp.ServerOptions{Name: "tcp", IP: *ipName, Syscall: *syscallName, Store: st, NoTSO: *noTSO, Grants: *grants,
		Config: tcp.Config{InitialWindow: *iw, RACK: *rack, NoECN: *noECN}}); err != nil {
		exitcode.Exit(err) // a broken channel: exitcode.BrokenChannel
	}
}
