// Command httpd is keepnet's demo web server (package keepnet/apps/httpd):
// the appliance's status page and the /bytes and /sink endpoints of the
// throughput tests, on port 80.
//
//	httpd [-addr :80] [-stack linux|keepnet] [-ctl /run/keepnet/ctl.sock]
//
// It serves until SIGTERM or SIGINT. Exit status 78 means the configuration
// cannot work (e.g. the requested stack is unavailable): the supervisor
// should not restart it.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"keepnet/apps/httpd"
	"keepnet/apps/httpd/metrics"
	"keepnet/apps/netapi"
	"keepnet/apps/stacks"
	"keepnet/boot/ctl"
	"keepnet/boot/journal"
	"keepnet/kernel/notify"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/kernel/wiring"
)

// exitNoRestart (sysexits' EX_CONFIG) tells the supervisor that restarting
// cannot help: boot/supervisor.DoNotRestart.
const exitNoRestart = 78

func main() {
	if err := sandbox.Enter(sandbox.App); err != nil {
		log.Fatal(err)
	}
	profile.OnSignal() // keepnet profile NAME
	log.SetFlags(0)    // the supervisor prefixes lines with our name; net/http logs here
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("httpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":80", "TCP address to serve HTTP on")
	stack := fs.String("stack", netapi.StackLinux, "network stack: linux or keepnet")
	ctlPath := fs.String("ctl", "/run/keepnet/ctl.sock", "Unix socket where init answers the ctl protocol")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := log.New(stderr, "", 0) // the supervisor prefixes lines with our name

	network, err := stacks.Open(*stack)
	if errors.Is(err, netapi.ErrUnavailable) {
		logger.Print(err)
		return exitNoRestart
	} else if err != nil {
		logger.Print(err)
		return 2
	}
	l, err := network.Listen("tcp", *addr)
	if err != nil {
		logger.Print(err)
		return 1
	}
	logger.Printf("serving on %s (%s stack)", l.Addr(), *stack)
	if err := notify.Ready(); err != nil {
		logger.Print(err)
	}
	var dial func(ctx context.Context, network, address string) (net.Conn, error)
	if wiring.TestHooksEnabled() {
		if d, ok := network.(interface {
			DialContext(ctx context.Context, network, address string) (net.Conn, error)
		}); ok {
			dial = d.DialContext
		} else {
			dial = new(net.Dialer).DialContext
		}
	}
	h := httpd.New(httpd.Config{
		Dial:  dial,
		Stack: *stack,
		Status: func(ctx context.Context) (*ctl.Status, error) {
			return httpd.QueryStatus(ctx, *ctlPath)
		},
		Events: func(ctx context.Context, since uint64) ([]journal.Event, uint64, error) {
			return httpd.QueryEvents(ctx, *ctlPath, since)
		},
		Logs: func(ctx context.Context, name string, since uint64) ([]journal.Line, uint64, error) {
			return httpd.QueryLogs(ctx, *ctlPath, name, since)
		},
		Metrics: metrics.Handler(
			func(ctx context.Context) (*ctl.Status, error) { return httpd.QueryStatus(ctx, *ctlPath) },
			func(ctx context.Context, since uint64) ([]journal.Event, uint64, error) {
				return httpd.QueryEvents(ctx, *ctlPath, since)
			}),
	})
	if err := httpd.Serve(ctx, l, h); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}
