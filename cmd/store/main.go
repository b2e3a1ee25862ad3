// Command store is keepnet's storage server: every component keeps the state
// it needs after a crash here (see package keepnet/servers/store).
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"keepnet/kernel/notify"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/store"
)

func main() {
	if err := sandbox.Enter(sandbox.Store); err != nil {
		log.Fatal(err)
	}
	socket := flag.String("socket", store.DefaultPath, "Unix socket to serve on")
	flag.Parse()
	profile.OnSignal() // keepnet profile store
	log.SetFlags(0)    // the supervisor prefixes each line with the component name
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *socket, store.WithAccess(access)); err != nil {
		log.Fatal(err)
	}
}

// access is the appliance's store access control: each component is
// known by its uid in kernel/sandbox's table, owns the namespace named
// after it and its key of the shared namespace of counters, and may keep a
// quarter of the store.
var access = store.Access{
	Names:      sandbox.NameOf,
	Shared:     []string{store.StatsNS},
	QuotaBytes: store.MaxBytes / 4,
	QuotaKeys:  16384,
}

// run serves a fresh, empty store made with opts on socket until ctx is
// done.
func run(ctx context.Context, socket string, opts ...store.ServerOption) error {
	l, err := store.Listen(socket)
	if err != nil {
		return err
	}
	s := store.NewServer(opts...)
	log.Printf("serving on %s, epoch %016x", socket, s.Epoch())
	if err := notify.Ready(); err != nil { // the socket is bound: clients connect
		log.Print(err)
	}
	if stop, err := s.AnswerInit(); err != nil {
		log.Printf("no hang detection: %v", err)
	} else {
		defer stop()
	}
	defer log.Printf("stopped")
	return s.Serve(ctx, l)
}
