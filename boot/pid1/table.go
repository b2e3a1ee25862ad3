package pid1

import (
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"keepnet/boot/hub"
	"keepnet/boot/supervisor"
	"keepnet/drivers/netdev"
	"keepnet/drivers/nic"
	"keepnet/e1000"
	"keepnet/kernel/channel"
	"keepnet/kernel/sandbox"
	"keepnet/kernel/wiring"
	"keepnet/servers/ip"
	"keepnet/servers/pf"
	"keepnet/servers/tcp"
)

// Table is the appliance's component table: what runs, in which order, how
// it is restarted, and how the multiserver stack is wired (which component
// has a channel to which, the pools each owns, the DMA regions kept across a
// driver's restarts, the memory kept across tcp's). The supervisor starts a component once everything in
// its Deps is running; the hub hands out the shared memory when a component
// says hello (kernel/wiring).
//
// On keepnet's stack the applications reach the network through the
// SYSCALL server (servers/syscallsrv) and their socket library
// (servers/socket), over the udp and tcp servers.
func Table(cfg Config) ([]supervisor.Spec, []hub.Node) {
	specs := []supervisor.Spec{
		{Name: "store", Path: "/bin/store", Restart: supervisor.Always},
	}
	// The store has no neighbours; its wiring socket is for init's pings
	// (hang detection) and test hooks.
	nodes := []hub.Node{{Name: "store"}}
	switch cfg.Stack {
	case StackLinux:
		specs = append(specs,
			supervisor.Spec{Name: "httpd", Path: "/bin/httpd", Args: []string{"-stack", cfg.Stack, "-ctl", LocalCtl}, Restart: supervisor.Always},
			supervisor.Spec{Name: "echo", Path: "/bin/echo", Args: []string{"-stack", cfg.Stack}, Restart: supervisor.Always},
		)
		if cfg.DNS.IsValid() {
			specs = append(specs, supervisor.Spec{Name: "resolver", Path: "/bin/resolver",
				Args: []string{"-stack", cfg.Stack, "-dns", cfg.DNS.String()}, Restart: supervisor.Always})
		}
		if cfg.SSHKey != "" {
			specs = append(specs, supervisor.Spec{Name: "sshd", Path: "/bin/sshd",
				Args: []string{"-stack", cfg.Stack, "-keys", cfg.SSHKey, "-ctl", LocalCtl}, Restart: supervisor.Always})
		}
	case StackKeepnet:
		drivers := driverNames(cfg)
		for i, d := range drivers {
			args := append([]string{"-name", d, "-index", strconv.Itoa(i)}, pktgenArgs(cfg, i)...)
			if addr := cfg.nicPCI(i); addr != "" {
				args = append(args, "-pci", addr)
			}
			if cfg.Untested {
				args = append(args, "-untested")
			}
			specs = append(specs, supervisor.Spec{Name: d, Path: "/bin/nic", Args: args,
				Restart: supervisor.Always, Prepare: prepareNIC(d, i, cfg.nicPCI(i), cpusOf(supervisor.Spec{Path: "/bin/nic"}, cfg))})
		}
		specs = append(specs,
			supervisor.Spec{Name: "ip", Path: "/bin/ip", Args: ipArgs(cfg, drivers), Deps: []string{"store"}, Restart: supervisor.Always},
			supervisor.Spec{Name: "udp", Path: "/bin/udp", Args: udpArgs(cfg), Deps: []string{"store"}, Restart: supervisor.Always},
			supervisor.Spec{Name: "tcp", Path: "/bin/tcp", Args: tcpArgs(cfg), Deps: []string{"store"}, Restart: supervisor.Always},
			supervisor.Spec{Name: "syscall", Path: "/bin/syscall", Args: syscallArgs(cfg), Deps: []string{"store"}, Restart: supervisor.Always},
			supervisor.Spec{Name: "httpd", Path: "/bin/httpd", Args: []string{"-stack", cfg.Stack, "-ctl", LocalCtl}, Restart: supervisor.Always},
			// Port 9: a discard socket nobody reads (the flood tests);
			// port 8: echo with keep-alive (2 s, 1 s, 3 probes) on every
			// connection, which logs those that fail (the keep-alive test).
			supervisor.Spec{Name: "echo", Path: "/bin/echo", Args: []string{"-stack", cfg.Stack, "-discard", "9", "-keepalive", "8"}, Restart: supervisor.Always},
		)
		apps := []string{"httpd", "echo"}
		if cfg.DNS.IsValid() {
			specs = append(specs, supervisor.Spec{Name: "resolver", Path: "/bin/resolver",
				Args: []string{"-stack", cfg.Stack, "-dns", cfg.DNS.String()}, Restart: supervisor.Always})
			apps = append(apps, "resolver")
		}
		if cfg.SSHKey != "" {
			specs = append(specs, supervisor.Spec{Name: "sshd", Path: "/bin/sshd",
				Args: []string{"-stack", cfg.Stack, "-keys", cfg.SSHKey, "-ctl", LocalCtl}, Restart: supervisor.Always})
			apps = append(apps, "sshd")
		}
		// syscall names each application's sockets by its place in this
		// list (servers/syscallsrv), the same for each of its generations.
		for i := range specs {
			if specs[i].Name == "syscall" {
				specs[i].Args = append(specs[i].Args, "-apps", strings.Join(apps, ","))
			}
		}
		// A pool's Writers fill its buffers for the owner (the driver:
		// received frames; the transports: syscall's receives; syscall: an
		// application's); every other neighbour maps it read-only.
		for i, d := range drivers {
			nodes = append(nodes, hub.Node{
				Name: d, Peers: []string{"ip"},
				// Both descriptor rings (e1000.RingBytes of the default
				// 256-entry rings), in one huge page, for every generation.
				Regions: append([]hub.RegionSpec{{Name: d + ".rings", Bufs: 1, BufSize: 8192}}, pktgenRegion(cfg, i, d)...),
			})
		}
		// The NICs share ip's receive and transmit pools (servers/ip,
		// server.go): 1023 buffers each per NIC.
		perNIC := 1024 * len(drivers)
		nodes = append(nodes,
			hub.Node{
				Name: "ip", Peers: append(slices.Clone(drivers), "udp", "tcp"),
				Pools: []hub.PoolSpec{
					{Name: ip.RxPool, Bufs: perNIC - 1, BufSize: 2048, Writers: drivers},
					{Name: ip.TxPool, Bufs: perNIC - 1, BufSize: 2048},
					{Name: ip.UpPool, Bufs: 127, BufSize: big},
					// 1023 ran out under 200 busy connections (2,000
					// deliveries dropped in TestTCPEchoConcurrent).
					{Name: ip.UpSmallPool, Bufs: 2047, BufSize: 2048},
					{Name: ip.TxBigPool, Bufs: 127, BufSize: big},
				},
			},
			hub.Node{Name: "udp", Peers: []string{"ip", "syscall"}, Pools: []hub.PoolSpec{{Name: "udp.out", Bufs: 63, BufSize: big}}},
			tcpNode(cfg),
			hub.Node{Name: "syscall", Peers: append([]string{"udp", "tcp"}, apps...), Pools: []hub.PoolSpec{{Name: "syscall.io", Bufs: 255, BufSize: big, Writers: []string{"udp", "tcp"}}}},
		)
		if cfg.PFRules != "" {
			specs, nodes = withPF(specs, nodes, drivers, cfg.PFStates)
		}
		// With zero copy the transports read and fill the applications'
		// buffers themselves, which syscall forwards by reference.
		io := hub.PoolSpec{Bufs: 63, BufSize: big, Writers: []string{"syscall"}}
		if !cfg.NoZeroCopy {
			io.Writers, io.Granted = []string{"syscall", "udp", "tcp"}, []string{"udp", "tcp"}
		}
		for _, app := range apps {
			io.Name = app + ".io"
			nodes = append(nodes, hub.Node{Name: app, Peers: []string{"syscall"}, Pools: []hub.PoolSpec{io}})
		}
	}
	// Every component says when it serves: the appliance is ready only
	// then (ready.go).
	for i := range specs {
		specs[i].Ready = supervisor.ReadyNotify
		if godebug := godebugOf(specs[i], cfg); godebug != "" {
			specs[i].Env = append(specs[i].Env, "GODEBUG="+godebug)
		}
		specs[i].CPUs = cpusOf(specs[i], cfg)
		if cfg.TestHooks {
			specs[i].Env = append(specs[i].Env, wiring.EnvTestHooks+"=1")
		}
		confine(&specs[i], cfg)
	}
	return specs, nodes
}

// godebugOf is sp's GODEBUG: the loop servers' own, then keepnet.godebug.
func godebugOf(sp supervisor.Spec, cfg Config) string {
	var settings []string
	if slices.Contains(loopServers, sp.Path) {
		settings = append(settings, channel.GODEBUG)
	}
	if cfg.GODEBUG != "" {
		settings = append(settings, cfg.GODEBUG)
	}
	return strings.Join(settings, ",")
}

// loopServers are the components that are one event loop, a goroutine
// that sleeps only in kernel/channel: they run with channel.GODEBUG
// (asynchronous preemption off, kernel/channel says why). The
// applications and the store do not: their other goroutines do work a
// long-running one must not hold up.
var loopServers = []string{"/bin/nic", "/bin/ip", "/bin/udp", "/bin/tcp", "/bin/syscall", "/bin/pf"}

// # Processors
//
// On a machine with two processors or more the stack's servers run on the
// first and the applications on the others (keepnet.pin=off: anywhere).
// A request crosses five processes on its way through the stack: on one
// processor each hands the next its work by a wake-up the scheduler
// serves when the waker sleeps, with no interprocessor interrupt, which
// under TCG is dear; the applications, whose work is the most, have the
// rest. The NICs' interrupts go to the drivers' processor too
// (nic.Prepare), so that the kernel's handler wakes a driver where it
// runs. Measured (README, an interleaved A/B): keep-alive requests +23%,
// short connections +16%, ping and bulk transfer level or better.

// cpusOf is the processors sp runs on: none (any) unless pinning.
func cpusOf(sp supervisor.Spec, cfg Config) []int {
	if cfg.NoPin || cfg.CPUs < 2 || cfg.Stack != StackKeepnet {
		return nil
	}
	if slices.Contains(loopServers, sp.Path) {
		return []int{0}
	}
	if slices.Contains(appPaths, sp.Path) {
		cpus := make([]int, 0, cfg.CPUs-1)
		for c := 1; c < cfg.CPUs; c++ {
			cpus = append(cpus, c)
		}
		return cpus
	}
	return nil
}

// appPaths are the applications' executables.
var appPaths = []string{"/bin/httpd", "/bin/echo", "/bin/resolver", "/bin/sshd"}

// confine gives a component its identity from kernel/sandbox's table (its
// uid and gid and its capabilities) and tells it whether to install its
// seccomp filter (sandbox.Enter).
func confine(sp *supervisor.Spec, cfg Config) {
	id, ok := sandbox.Lookup(sp.Name)
	if !ok {
		return // runs as init: the table must name every component
	}
	sp.UID, sp.GID, sp.Caps = id.UID, id.GID, id.Caps
	if sp.Path == "/bin/nic" && cfg.IOMMU && !cfg.TestHooks {
		// Under VFIO the driver hands its device IOVAs, not physical
		// addresses: it needs no page frame numbers from
		// /proc/self/pagemap, which only CAP_SYS_ADMIN reads. (Its
		// dma-escape test hook aims at a physical address: with test
		// hooks it keeps the capability.)
		sp.Caps = slices.DeleteFunc(sp.Caps, func(c uintptr) bool { return c == unix.CAP_SYS_ADMIN })
	}
	seccomp := "0"
	if cfg.Seccomp {
		seccomp = "1"
	}
	sp.Env = append(sp.Env, sandbox.EnvSeccomp+"="+seccomp)
	if cfg.Stack == StackLinux && sp.Path != "/bin/store" {
		// The applications listen on ports below 1024 of the
		// kernel's own stack.
		sp.Caps = append(sp.Caps, unix.CAP_NET_BIND_SERVICE)
	}
}

// driverNames are the NIC drivers' components, e1000.0, e1000.1...: the
// interfaces in ip's (and pf's) order.
func driverNames(cfg Config) []string {
	names := make([]string, cfg.NICs())
	for i := range names {
		names[i] = "e1000." + strconv.Itoa(i)
	}
	return names
}

// ipArgs are the IP server's flags: the first NIC's driver, address and
// gateway, each other NIC's driver and address, the static routes,
// forwarding, and pf if there is one.
func ipArgs(cfg Config, drivers []string) []string {
	addr := cfg.IP.String()
	if cfg.DHCP {
		addr = "dhcp"
	}
	args := []string{"-addr", addr, "-driver", drivers[0], "-udp", "udp", "-tcp", "tcp"}
	if cfg.Gateway.IsValid() {
		args = append(args, "-gw", cfg.Gateway.String())
	}
	for _, p := range cfg.IP6 {
		args = append(args, "-addr6", p.String())
	}
	if cfg.Gateway6.IsValid() {
		args = append(args, "-gw6", cfg.Gateway6.String())
	}
	if !cfg.IPv6 {
		args = append(args, "-ipv6=false")
	}
	for i, p := range cfg.MoreNICs {
		args = append(args, "-iface", drivers[i+1]+"="+p.String())
	}
	for _, r := range cfg.Routes {
		args = append(args, "-route", r.String())
	}
	if cfg.Forwarding() {
		args = append(args, "-forward")
	}
	if cfg.PFRules != "" {
		args = append(args, "-pf", "pf")
	}
	return args
}

// pktgenArgs are the flags that start the frame generator of driver
// index (keepnet.pktgen): the first NIC's only.
func pktgenArgs(cfg Config, index int) []string {
	if cfg.PktGen.Seconds == 0 || index != 0 {
		return nil
	}
	args := []string{"-pktgen", strconv.Itoa(cfg.PktGen.Seconds) + "s", "-pktgen-size", strconv.Itoa(cfg.PktGen.Size)}
	if cfg.PktGen.RxOnly {
		args = append(args, "-pktgen-rx-only")
	}
	return args
}

// pktgenRegion is the DMA memory of driver index's frame generator: a
// region like the rings, so that init holds it and a driver that dies
// mid-measurement leaves its device writing into memory nobody else got
// (boot/hub, "Lifetimes"). Half transmit buffers, half receive buffers,
// one ring's worth each (drivers/nic.PktGenBuffers).
func pktgenRegion(cfg Config, index int, driver string) []hub.RegionSpec {
	if pktgenArgs(cfg, index) == nil {
		return nil
	}
	return []hub.RegionSpec{{Name: driver + nic.PktGenRegion, Bufs: nic.PktGenBuffers, BufSize: 2048}}
}

// prepareNIC readies the PCI function the driver component name drives
// (index among the functions of the NIC families cmd/nic links) for the
// driver's identity: drivers/nic.Prepare, before every start.
func prepareNIC(name string, index int, addr string, cpus []int) func() error {
	id, _ := sandbox.Lookup(name)
	return func() error {
		families, err := netdev.NewRegistry(e1000.Family())
		if err != nil {
			return err
		}
		return nic.Prepare(families, index, addr, int(id.UID), int(id.GID), cpus)
	}
}

// big is the size of the pool buffers above IP: a UDP datagram is up to
// 65507 bytes.
const big = 64 << 10

// tcpNode is tcp's: its out pool and, unless keepnet.keep=off, its
// connections' state, kept across its restarts.
func tcpNode(cfg Config) hub.Node {
	n := hub.Node{Name: "tcp", Peers: []string{"ip", "syscall"}, Pools: []hub.PoolSpec{{Name: "tcp.out", Bufs: 63, BufSize: big}}}
	if cfg.Keep {
		n.Kept = []hub.KeptSpec{{Name: tcp.StateName, Size: tcp.StateBytes}}
	}
	return n
}

// withPF adds the packet filter to the table: its server, beside ip; a
// channel between them, over which pf reads ip's frames (read-only, as
// every neighbour maps a pool it does not write); and its kept memory,
// the state table and the rules init writes (servers/pf, "Recovery").
// The state table holds maxStates flows: pf is told so (-max-states) and
// its kept memory is sized for exactly that, so the two always agree.
// ip waits for pf's verdicts only when pf is in the table (ip's -pf).
func withPF(specs []supervisor.Spec, nodes []hub.Node, drivers []string, maxStates int) ([]supervisor.Spec, []hub.Node) {
	specs = append(specs, supervisor.Spec{Name: "pf", Path: "/bin/pf",
		Args: []string{"-ifaces", strings.Join(drivers, ","), "-max-states", strconv.Itoa(maxStates)},
		Deps: []string{"store"}, Restart: supervisor.Always})
	for i := range nodes {
		if nodes[i].Name == "ip" {
			nodes[i].Peers = append(nodes[i].Peers, "pf")
		}
	}
	nodes = append(nodes, hub.Node{Name: "pf", Peers: []string{"ip"}, Kept: []hub.KeptSpec{
		{Name: pf.StateName, Size: pf.KeptBytes(maxStates)},
		{Name: pf.RulesName, Size: pf.RulesBytes},
	}})
	return specs, nodes
}

// tcpArgs are the TCP server's flags.
// syscallArgs are the SYSCALL server's flags: its transports, and those
// granted the applications' pools (-zerocopy).
func syscallArgs(cfg Config) []string {
	args := []string{"-tcp", "tcp"}
	if !cfg.NoZeroCopy {
		args = append(args, "-zerocopy", "udp,tcp")
	}
	return args
}

// udpArgs are the UDP server's flags.
func udpArgs(cfg Config) []string {
	if cfg.NoZeroCopy {
		return nil
	}
	return []string{"-grants"}
}

func tcpArgs(cfg Config) []string {
	var args []string
	if !cfg.TSO {
		args = append(args, "-no-tso")
	}
	if cfg.TCPRACK {
		args = append(args, "-rack")
	}
	if cfg.TCPIW != 0 {
		args = append(args, "-iw", strconv.Itoa(cfg.TCPIW))
	}
	if cfg.TCPNoECN {
		args = append(args, "-no-ecn")
	}
	if !cfg.NoZeroCopy {
		args = append(args, "-grants")
	}
	return args
}
