// Command echo is keepnet's Echo Protocol server (RFC 862; package
// keepnet/apps/echo) over TCP and UDP.
//
//	echo [-port 7] [-stack linux|keepnet] [-discard PORT] [-keepalive PORT]
//
// With -keepalive it also echoes TCP on PORT with keep-alive set on every
// connection it accepts (-keepalive-idle, -interval, -count: 2 s, 1 s, 3 by
// default), and logs the connections that fail (the first ten, then every
// hundredth), keep-alive giving up on a peer that vanished among them: the
// tests' check that an application hears of it within the time it
// configured.
//
// It serves until SIGTERM or SIGINT. Exit status 78 means the configuration
// cannot work (e.g. the requested stack is unavailable): the supervisor
// should not restart it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"keepnet/apps/echo"
	"keepnet/apps/netapi"
	"keepnet/apps/stacks"
	"keepnet/kernel/notify"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
)

// exitNoRestart (sysexits' EX_CONFIG) tells the supervisor that restarting
// cannot help: boot/supervisor.DoNotRestart.
const exitNoRestart = 78

func main() {
	if err := sandbox.Enter(sandbox.App); err != nil {
		log.Fatal(err)
	}
	profile.OnSignal() // keepnet profile NAME
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 7, "TCP and UDP port to echo on")
	discard := fs.Int("discard", 0, "also bind this UDP port and never read it (RFC 863 discard, by letting the stack's bounded queue drop): the socket nobody reads that the flood tests aim at; 0: none")
	stack := fs.String("stack", netapi.StackLinux, "network stack: linux or keepnet")
	kaPort := fs.Int("keepalive", 0, "also echo TCP on this port with keep-alive on every connection; 0: none")
	kaIdle := fs.Duration("keepalive-idle", 2*time.Second, "-keepalive's idle time before the first probe")
	kaInterval := fs.Duration("keepalive-interval", time.Second, "-keepalive's time between probes")
	kaCount := fs.Int("keepalive-count", 3, "-keepalive's unanswered probes before a connection fails")
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
	if *port < 0 || *port > 65535 {
		logger.Printf("-port %d: want 0 to 65535", *port)
		return 2
	}
	addr := net.JoinHostPort("", strconv.Itoa(*port))
	pc, err := network.ListenPacket("udp", addr)
	if err != nil {
		logger.Print(err)
		return 1
	}
	if *discard != 0 {
		d, err := network.ListenPacket("udp", net.JoinHostPort("", strconv.Itoa(*discard)))
		if err != nil {
			logger.Print(err)
			return 1
		}
		defer d.Close()
	}
	// A stack without TCP yet (keepnet's, until its tcp server lands)
	// still serves UDP echo.
	l, err := network.Listen("tcp", addr)
	if errors.Is(err, errors.ErrUnsupported) {
		logger.Printf("tcp: %v; serving udp %s only (%s stack)", err, pc.LocalAddr(), *stack)
		if err := notify.Ready(); err != nil {
			logger.Print(err)
		}
		err := echo.ServeUDP(ctx, pc)
		if err != nil {
			logger.Print(err)
			return 1
		}
		return 0
	}
	if err != nil {
		pc.Close()
		logger.Print(err)
		return 1
	}
	logger.Printf("serving on tcp %s and udp %s (%s stack)", l.Addr(), pc.LocalAddr(), *stack)
	if err := notify.Ready(); err != nil {
		logger.Print(err)
	}

	echo.DefaultServer.Logf = logger.Printf
	// Any server failing stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3)
	servers := 2
	if *kaPort != 0 {
		kl, err := network.Listen("tcp", net.JoinHostPort("", strconv.Itoa(*kaPort)))
		if err != nil {
			logger.Print(err)
			return 1
		}
		ka := &echo.Server{Logf: logger.Printf, KeepAlive: net.KeepAliveConfig{Enable: true, Idle: *kaIdle, Interval: *kaInterval, Count: *kaCount}}
		logger.Printf("keep-alive echo on tcp %s: idle %v, interval %v, count %d", kl.Addr(), *kaIdle, *kaInterval, *kaCount)
		servers++
		go func() { errs <- wrap("tcp keep-alive", ka.ServeTCP(ctx, kl)); cancel() }()
	}
	go func() { errs <- wrap("tcp", echo.ServeTCP(ctx, l)); cancel() }()
	go func() { errs <- wrap("udp", echo.ServeUDP(ctx, pc)); cancel() }()
	var all []error
	for range servers {
		all = append(all, <-errs)
	}
	err = errors.Join(all...)

	st := &echo.DefaultServer.Stats
	logger.Printf("stopped: tcp %d connections, %d bytes; udp %d datagrams, %d bytes, %d dropped",
		st.TCPAccepted.Load(), st.TCPBytes.Load(), st.UDPPackets.Load(), st.UDPBytes.Load(), st.UDPDropped.Load())
	if err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

func wrap(proto string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", proto, err)
}
