package relay

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"time"
)

// Command is keepnet-relay's main (cmd/keepnet-relay), here so tests can
// drive it: it parses args, relays until ctx is done, and returns the exit
// status. Counters go to stderr every -stats interval and at the end.
func Command(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("keepnet-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: keepnet-relay (-qemu PATH | -qemu-dial PATH) -tap NAME [impairments]

Relays Ethernet frames between QEMU's stream netdev and a tap device,
dropping, duplicating, reordering, delaying and rate-limiting them.

  -qemu PATH       listen on PATH; start QEMU afterwards with
                   -netdev stream,id=n0,server=off,addr.type=unix,addr.path=PATH
  -qemu-dial PATH  connect to a QEMU started with
                   -netdev stream,id=n0,server=on,addr.type=unix,addr.path=PATH
                   (retried; survives a relay restart)

Each impairment flag sets both directions; the -NAME-out form (guest to tap)
and -NAME-in form (tap to guest) override one direction.

`)
		fs.PrintDefaults()
	}
	var (
		listenPath = fs.String("qemu", "", "Unix socket to listen on for QEMU (server=off)")
		dialPath   = fs.String("qemu-dial", "", "Unix socket QEMU listens on (server=on)")
		tap        = fs.String("tap", "", "existing tap device in this network namespace")
		seed       = fs.Uint64("seed", 1, "random seed: the same seed and traffic replay the same impairments")
		every      = fs.Duration("stats", 10*time.Second, "print counters this often (0: only at exit)")
		mtu        = fs.Int("mtu", 0, "link MTU of a hop in the middle, both ways: longer IPv4 datagrams are fragmented, or with DF dropped and answered with ICMP fragmentation needed (0: none)")
		blackHole  = fs.Bool("mtu-blackhole", false, "with -mtu: drop datagrams with DF over the MTU silently (no ICMP: a PMTU black hole)")
		mtuFrom    = fs.String("mtu-from", "", "with -mtu: the IPv4 address the ICMP errors come from (default: the dropped datagram's destination)")
	)
	both := impairmentFlags(fs, "", "")
	out := impairmentFlags(fs, "-out", " (guest to tap)")
	in := impairmentFlags(fs, "-in", " (tap to guest)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg := Config{Seed: *seed, VnetHdr: true, Out: both.merge(out, set), In: both.merge(in, set),
		MTU: *mtu, BlackHole: *blackHole}
	logger := log.New(stderr, "keepnet-relay: ", 0)
	cfg.Logf = logger.Printf
	usage := func(msg string) int { logger.Print(msg); return 2 }
	if *mtuFrom != "" {
		a, err := netip.ParseAddr(*mtuFrom)
		if err != nil {
			return usage("-mtu-from: " + err.Error())
		}
		cfg.MTUFrom = a
	}
	if err := validateMTU(cfg); err != nil {
		return usage(err.Error())
	}
	switch {
	case fs.NArg() > 0:
		return usage(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case (*listenPath == "") == (*dialPath == ""):
		return usage("give exactly one of -qemu PATH and -qemu-dial PATH")
	case *tap == "":
		return usage("-tap NAME is required")
	}
	if err := cfg.Out.Validate(); err != nil {
		return usage("out: " + err.Error())
	}
	if err := cfg.In.Validate(); err != nil {
		return usage("in: " + err.Error())
	}

	var next Connector
	if *listenPath != "" {
		ln, err := Listen(*listenPath)
		if err != nil {
			logger.Print(err)
			return 1
		}
		defer ln.Close()
		next = Accepting(ln)
	} else {
		next = Dialing(*dialPath, 200*time.Millisecond)
	}
	t, err := OpenTap(*tap)
	if err != nil {
		logger.Print(err)
		return 1
	}
	defer t.Close()
	r, err := New(t, cfg)
	if err != nil {
		logger.Print(err)
		return 1
	}
	if *listenPath != "" {
		logger.Printf("listening on %s for QEMU (server=off), tap %s", *listenPath, *tap)
	} else {
		logger.Printf("connecting to QEMU at %s (server=on), tap %s", *dialPath, *tap)
	}
	printStats := func() {
		o, i := r.Stats()
		logger.Printf("out: %v", o)
		logger.Printf("in: %v", i)
	}
	if *every > 0 {
		tick := time.NewTicker(*every)
		defer tick.Stop()
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					printStats()
				}
			}
		}()
	}
	err = r.Serve(ctx, next)
	printStats()
	if err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

type impFlags struct {
	drop, dup, reorder   *float64
	ce                   *float64
	delay, jitter, bound *time.Duration
	rate                 *uint64
	limit                *int
	suffix               string
}

func impairmentFlags(fs *flag.FlagSet, suffix, what string) impFlags {
	return impFlags{
		suffix:  suffix,
		drop:    fs.Float64("drop"+suffix, 0, "drop probability 0..1"+what),
		dup:     fs.Float64("dup"+suffix, 0, "duplicate probability 0..1"+what),
		ce:      fs.Float64("ce"+suffix, 0, "probability an ECN-capable IP datagram is marked CE 0..1"+what),
		reorder: fs.Float64("reorder"+suffix, 0, "probability a frame is sent after the next one"+what),
		bound:   fs.Duration("reorder-bound"+suffix, DefaultReorderBound, "longest a reordered frame waits for the next"+what),
		delay:   fs.Duration("delay"+suffix, 0, "delay"+what),
		jitter:  fs.Duration("jitter"+suffix, 0, "delay varies uniformly by ± this"+what),
		rate:    fs.Uint64("rate"+suffix, 0, "bytes per second, 0 unlimited"+what),
		limit:   fs.Int("limit"+suffix, DefaultLimit, "frames that may wait before more are dropped"+what),
	}
}

// merge returns the both-directions values overridden by the ones given
// with d's suffix.
func (b impFlags) merge(d impFlags, set map[string]bool) Impairment {
	pick := func(name string) bool { return set[name+d.suffix] }
	c := Impairment{Drop: *b.drop, Dup: *b.dup, Reorder: *b.reorder, CE: *b.ce, ReorderBound: *b.bound,
		Delay: *b.delay, Jitter: *b.jitter, Rate: *b.rate, Limit: *b.limit}
	if pick("drop") {
		c.Drop = *d.drop
	}
	if pick("ce") {
		c.CE = *d.ce
	}
	if pick("dup") {
		c.Dup = *d.dup
	}
	if pick("reorder") {
		c.Reorder = *d.reorder
	}
	if pick("reorder-bound") {
		c.ReorderBound = *d.bound
	}
	if pick("delay") {
		c.Delay = *d.delay
	}
	if pick("jitter") {
		c.Jitter = *d.jitter
	}
	if pick("rate") {
		c.Rate = *d.rate
	}
	if pick("limit") {
		c.Limit = *d.limit
	}
	return c
}
