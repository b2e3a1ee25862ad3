// Command keepnet-relay sits between a QEMU guest's NIC (QEMU's
// -netdev stream Unix socket) and a tap device, and drops, duplicates,
// reorders, delays and rate-limits the frames passing through, from a seed:
// the link impairment the host kernel's missing netem would give. See
// keepnet/qemu/relay, or run it with -h.
//
//	ip netns exec NS keepnet-relay -qemu /tmp/n0.sock -tap kntap0 -drop 0.01 -reorder 0.01 -seed 7
//	qemu-system-x86_64 ... -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/n0.sock -device e1000,netdev=n0
//
// It runs until SIGTERM or SIGINT and prints its counters to stderr.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"keepnet/qemu/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(relay.Command(ctx, os.Args[1:], os.Stderr))
}
