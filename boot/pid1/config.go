package pid1

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"keepnet/servers/ip"
	"keepnet/servers/pf"
	"keepnet/servers/tcp"
)

// Stacks keepnet can run its applications on.
const (
	StackKeepnet = "keepnet" // keepnet's own multiserver stack (the default)
	StackLinux   = "linux"   // the kernel's own e1000 driver and TCP/IP: the baseline
)

// Control channel transports.
const (
	CtlVirtio = "virtio" // virtio-serial port named PortName
	CtlVsock  = "vsock"  // vsock stream on ctl.VsockPort
)

// Scheduling policies for the components.
const (
	SchedBatch = "batch" // SCHED_BATCH: a woken process does not preempt the running one
	SchedOther = "other" // SCHED_OTHER, Linux's default
)

// PortName is the name QEMU gives the control channel's virtio-serial port.
const PortName = "org.keepnet.ctl"

// Config is what init reads from the kernel command line, and from the
// configuration file keepnet.conf names (conffile.go: the same settings,
// the command line winning):
//
//	keepnet.ip=CIDR          the appliance's address, e.g. 10.0.2.15/24;
//	                         dhcp: address, subnet and router from a DHCP
//	                         server (one NIC; servers/ip/dhcp)
//	keepnet.gw=ADDR          default gateway
//	keepnet.ip6=CIDR         an IPv6 address of the first NIC, e.g.
//	                         fd00:78::15/64; repeat for more. Without it the
//	                         NIC still has its link-local address and takes
//	                         addresses from routers' advertisements (SLAAC)
//	keepnet.gw6=ADDR         IPv6 default router, when none advertises itself
//	keepnet.ipv6=off         no IPv6 on keepnet's stack (on by default)
//	keepnet.nic=CIDR         one more NIC (driver e1000.1, e1000.2... in the
//	                         order given) with its address; MaxNICs in all
//	keepnet.route=PREFIX,via=ADDR  a static route (servers/ip.ParseRoute);
//	                         repeat for more
//	keepnet.forward=off      ip does not forward between the NICs (it does
//	                         when there is more than one; so does the Linux
//	                         stack, net.ipv4.ip_forward)
//	keepnet.nics=PCI,...     which NICs keepnet's drivers take: the first
//	                         NIC's PCI address (like 0000:02:00.0), the
//	                         second's...; a NIC not named takes the
//	                         function of its number among those a linked
//	                         family drives, in PCI address order (the
//	                         default for all)
//	keepnet.nic.untested=1   the drivers take NICs their family is written
//	                         for but no test has driven (e1000.Devices);
//	                         without it such a NIC's driver refuses it
//	keepnet.dns=ADDR         DNS server for the resolver
//	keepnet.hostname=NAME    the appliance's host name (RFC 1123: letters,
//	                         digits, hyphens, dots; at most 64 bytes)
//	keepnet.conf=PATH        a configuration file (conffile.go) on a FAT or
//	                         ISO 9660 file system of a disk, USB stick or CD:
//	                         init looks for it on each (esp.go) before it
//	                         starts anything. The boot images' command line
//	                         names /keepnet/keepnet.conf (images/bootimg)
//	keepnet.stack=NAME       keepnet (default) or linux
//	keepnet.ctl=NAME         virtio (default) or vsock
//	keepnet.hugepages=N      2 MiB huge pages to reserve for packet pools (default 64)
//	keepnet.sshkey=B64       authorized_keys lines, base64: starts the SSH server
//	keepnet.tso=off          keepnet's TCP does not use segmentation offload
//	keepnet.sched=POLICY     batch (default) or other: the scheduling policy of
//	                         every component (see schedPolicy)
//	keepnet.hang=DURATION    a component whose loop does not answer for this
//	                         long is killed as hung and restarted (default 2s,
//	                         0 disables; longer while the whole machine
//	                         answers slowly: boot/supervisor's hang detection)
//	keepnet.testhooks=1      components run test hooks on request (the control
//	                         verb hook: spin, deadlock, stop the device...)
//	keepnet.seccomp=0        no component installs its seccomp filter (for
//	                         debugging; kernel/sandbox); 1 is the default
//	keepnet.keep=off         tcp gets no kept memory: its connections die
//	                         with it, as before issue 12 (to measure what
//	                         keeping them costs; on is the default)
//	keepnet.tcp.iw=N         keepnet's TCP starts each connection with a
//	                         congestion window of N segments (1 to
//	                         tcp.MaxInitialWindow; default RFC 6928's
//	                         tcp.DefaultInitialWindow, 10; 3 is RFC 5681's)
//	keepnet.tcp.rack=on|off  RACK-TLP (RFC 8985) loss detection and tail loss
//	                         probes on keepnet's TCP connections with SACK
//	                         (off is the default; servers/tcp/rack.go)
//	keepnet.tcp.ecn=off      keepnet's TCP answers a peer's request for ECN
//	                         (RFC 3168) with no; on, the default, agrees
//	                         to it, as Linux's net.ipv4.tcp_ecn=2 does (it
//	                         never asks itself)
//	keepnet.zerocopy=off     syscall copies the applications' data into its
//	                         own pool for tcp, as before issue 14; on, the
//	                         default, tcp is granted the applications'
//	                         pools and reads and fills their buffers itself
//	                         (servers/syscallsrv, "Zero copy")
//	keepnet.pin=off          the stack's servers and the applications run on
//	                         any processor; on, the default on a machine
//	                         with two or more, the servers run on the
//	                         first and the applications on the others
//	                         (table.go, "Processors")
//	keepnet.godebug=SETTINGS Go runtime settings (GODEBUG) for every
//	                         component, e.g. cpu.aes=off; the loop servers'
//	                         own (channel.GODEBUG) come first. `keepnet up`
//	                         sets cpu.aes=off under TCG, which emulates AES
//	                         instructions in software: Go's map hash then
//	                         multiplies instead (README, "Go under TCG")
//	keepnet.pfrules=B64      a packet filter rule set (servers/pf), base64:
//	                         starts the pf server and puts it in ip's path.
//	                         Without it there is no pf and no datagram
//	                         waits for one. A rule set the parser refuses
//	                         is replaced by "set default block" (and a
//	                         warning): a filter asked for never fails open.
//	                         On the Linux stack the same rules go into
//	                         nf_tables (nftables.go)
//	keepnet.pfstates=N       the packet filter's state table holds N flows
//	                         (MinPFStates to MaxPFStates; default
//	                         pf.DefaultMaxStates); its kept memory is sized
//	                         for N, and a full table refuses new flows
//	keepnet.pktgen=SECONDS[,size=BYTES][,tx=off]  the first NIC's driver
//	                         runs its frame generator for SECONDS (1 to
//	                         MaxPktGenSeconds) before it serves ip: frames
//	                         of BYTES (MinPktGenSize, the default, to
//	                         MaxPktGenSize, without CRC) as fast as the
//	                         device takes them, counting what arrives
//	                         meanwhile; with tx=off it only counts, after
//	                         one frame that shows the window has begun
//	                         (drivers/nic, pktgen.go; make bench's driver
//	                         ceiling). Off by default
type Config struct {
	IP         netip.Prefix
	DHCP       bool // keepnet.ip=dhcp: IP and Gateway come from a DHCP server
	Gateway    netip.Addr
	IP6        []netip.Prefix   // the first NIC's static IPv6 addresses
	Gateway6   netip.Addr       // IPv6 default router; invalid: only advertised ones
	IPv6       bool             // IPv6 on keepnet's stack (keepnet.ipv6)
	MoreNICs   []netip.Prefix   // the addresses of the NICs after the first
	PCI        []string         // keepnet.nics: NIC i's PCI address, for i < len(PCI)
	Routes     []ip.StaticRoute // static routes
	Forward    bool             // ip forwards between the NICs (with more than one)
	Untested   bool             // the drivers take untested NICs too
	DNS        netip.Addr
	Hostname   string // empty: the kernel's default
	ConfFile   string // keepnet.conf: where the configuration file is
	Stack      string
	Ctl        string
	HugePages  int
	SSHKey     string // base64 authorized_keys; empty: no SSH server
	Sched      string
	TSO        bool          // keepnet's TCP may use segmentation offload
	Hang       time.Duration // hang limit; 0: no hang detection
	TestHooks  bool          // components run test hooks on request
	Seccomp    bool          // components install their seccomp filters
	Keep       bool          // tcp keeps its connections in kept memory
	TCPIW      int           // keepnet.tcp.iw: tcp's initial window in segments; 0: tcp's default
	TCPRACK    bool          // keepnet.tcp.rack: RACK-TLP in tcp
	TCPNoECN   bool          // keepnet.tcp.ecn=off: tcp refuses ECN when a peer asks
	NoZeroCopy bool          // keepnet.zerocopy=off: syscall copies the applications' data for tcp
	NoPin      bool          // keepnet.pin=off: no component is confined to processors
	GODEBUG    string        // keepnet.godebug: Go runtime settings for every component
	CPUs       int           // the machine's processors (init counts them; not from the command line); pinning needs two
	PFRules    string        // the rule text; empty: no packet filter
	PFStates   int           // the packet filter's state table size
	PktGen     PktGen        // the first driver's frame generator; off when Seconds is 0
	// IOMMU: the machine has an IOMMU the kernel drives (not from the
	// command line: init looks, /sys/class/iommu). keepnet's drivers then
	// take their NICs through VFIO (drivers/nic, backend.go), not uio.
	IOMMU bool
}

// PktGen is keepnet.pktgen: how long the first NIC's driver generates
// frames before it serves, and how long each frame is.
type PktGen struct {
	Seconds int  // 0: off
	Size    int  // bytes without CRC
	RxOnly  bool // tx=off: it only counts what arrives
}

// The bounds of keepnet.pktgen: Ethernet's shortest and longest frames
// without CRC (and VLAN tag), and a window long enough for any measurement
// yet short enough that a boot with a mistyped figure still ends up
// serving.
const (
	MinPktGenSize    = 60
	MaxPktGenSize    = 1514
	MaxPktGenSeconds = 300
)

// DefaultHang is the hang limit without keepnet.hang.
const DefaultHang = 2 * time.Second

// DefaultConfig is the configuration with no keepnet.* parameters.
func DefaultConfig() Config {
	return Config{Stack: StackKeepnet, Ctl: CtlVirtio, HugePages: 64, Sched: SchedBatch, TSO: true, Hang: DefaultHang, Seccomp: true, Keep: true,
		Forward: true, PFStates: pf.DefaultMaxStates, IPv6: true}
}

// The bounds of keepnet.pfstates. Below 16 a table could not hold the
// flows of one ping and one download through a forwarding appliance (two
// states each, one per direction); above 65536 it would take more than
// the 16 MiB of kept memory pf.DefaultMaxStates does.
const (
	MinPFStates = 16
	MaxPFStates = pf.DefaultMaxStates
)

// MaxNICs is how many NICs the appliance drives (the driver identities of
// kernel/sandbox).
const MaxNICs = 4

// NICs is how many NICs the configuration has.
func (c Config) NICs() int { return 1 + len(c.MoreNICs) }

// NICAddr is NIC i's address: keepnet.ip for the first, its keepnet.nic
// for the others.
func (c Config) NICAddr(i int) netip.Prefix {
	if i == 0 {
		return c.IP
	}
	return c.MoreNICs[i-1]
}

// Forwarding reports whether ip forwards: with more than one NIC, unless
// keepnet.forward=off.
func (c Config) Forwarding() bool { return c.Forward && c.NICs() > 1 }

// ParseCmdline reads the keepnet.* parameters of a kernel command line.
// Other parameters are ignored. A malformed or unknown keepnet.* parameter
// is reported in warnings and otherwise ignored: init must still boot far
// enough to be reached over the control channel.
func ParseCmdline(cmdline string) (cfg Config, warnings []error) {
	return Parse("", cmdline)
}

// Parse is the configuration of a configuration file's text (conffile.go)
// and a kernel command line, which wins: its parameters are set after the
// file's, and a repeated parameter's list (keepnet.nic, keepnet.route,
// keepnet.sshkey) replaces the file's list.
func Parse(file, cmdline string) (cfg Config, warnings []error) {
	cfg = DefaultConfig()
	warnings = parseConfFile(file).apply(&cfg)
	fromCmdline := map[string]bool{}
	for _, field := range strings.Fields(cmdline) {
		key, val, _ := strings.Cut(field, "=")
		name, ok := strings.CutPrefix(key, "keepnet.")
		if !ok {
			continue
		}
		if repeated[name] && !fromCmdline[name] {
			cfg.clear(name)
		}
		fromCmdline[name] = true
		if err := cfg.set(name, val); err != nil {
			warnings = append(warnings, fmt.Errorf("kernel command line %q: %w", field, err))
		}
	}
	if cfg.DHCP {
		if cfg.NICs() > 1 || len(cfg.Routes) > 0 || cfg.Gateway.IsValid() {
			warnings = append(warnings, errors.New("keepnet.ip=dhcp configures one NIC, its router from the server: keepnet.nic, keepnet.route and keepnet.gw ignored"))
		}
		cfg.MoreNICs, cfg.Routes, cfg.Gateway = nil, nil, netip.Addr{}
	}
	if cfg.Gateway.IsValid() && cfg.IP.IsValid() && !cfg.IP.Contains(cfg.Gateway) {
		warnings = append(warnings, fmt.Errorf("gateway %v is not on the appliance's subnet %v", cfg.Gateway, cfg.IP.Masked()))
	}
	if err := ip.CheckRoutes(append([]netip.Prefix{cfg.IP}, cfg.MoreNICs...), cfg.Routes); err != nil {
		warnings = append(warnings, fmt.Errorf("%w; no static routes", err))
		cfg.Routes = nil
	}
	return cfg, warnings
}

// clear empties a repeated setting's list.
func (c *Config) clear(name string) {
	switch name {
	case "nic":
		c.MoreNICs = nil
	case "route":
		c.Routes = nil
	case "sshkey":
		c.SSHKey = ""
	}
}

func (c *Config) set(name, val string) error {
	switch name {
	case "hostname":
		if !validHostname(val) {
			return fmt.Errorf("want a host name: letters, digits and hyphens, dots between labels, at most 64 bytes")
		}
		c.Hostname = val
	case "conf":
		if err := checkConfPath(val); err != nil {
			return err
		}
		c.ConfFile = val
	case "ip":
		if val == "dhcp" {
			c.IP, c.DHCP = netip.Prefix{}, true
			return nil
		}
		p, err := netip.ParsePrefix(val)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("want an IPv4 address with prefix length, like 10.0.2.15/24, or dhcp")
		}
		c.IP, c.DHCP = p, false
	case "gw":
		a, err := netip.ParseAddr(val)
		if err != nil || !a.Is4() {
			return fmt.Errorf("want an IPv4 address")
		}
		c.Gateway = a
	case "ip6":
		p, err := netip.ParsePrefix(val)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().IsMulticast() || p.Addr().IsUnspecified() || p.Addr().IsLinkLocalUnicast() {
			return fmt.Errorf("want a global or unique-local IPv6 address with prefix length, like fd00:78::15/64")
		}
		c.IP6 = append(c.IP6, p)
	case "gw6":
		a, err := netip.ParseAddr(val)
		if err != nil || !a.Is6() || a.Is4In6() || a.IsMulticast() || a.IsUnspecified() {
			return fmt.Errorf("want an IPv6 unicast address, like fe80::1")
		}
		c.Gateway6 = a
	case "ipv6":
		return parseSwitch(val, "on", "off", &c.IPv6)
	case "nic":
		p, err := netip.ParsePrefix(val)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("want an IPv4 address with prefix length, like 10.78.0.1/24")
		}
		if c.NICs() == MaxNICs {
			return fmt.Errorf("at most %d NICs", MaxNICs)
		}
		c.MoreNICs = append(c.MoreNICs, p)
	case "route":
		r, err := ip.ParseRoute(val)
		if err != nil {
			return err
		}
		c.Routes = append(c.Routes, r)
	case "nics":
		addrs := strings.Split(val, ",")
		if len(addrs) > MaxNICs {
			return fmt.Errorf("at most %d NICs", MaxNICs)
		}
		for i, a := range addrs {
			if !validPCIAddr(a) || slices.Contains(addrs[:i], a) {
				return fmt.Errorf("want PCI addresses like 0000:02:00.0, each once, comma-separated")
			}
		}
		c.PCI = addrs
	case "forward":
		return parseSwitch(val, "on", "off", &c.Forward)
	case "nic.untested":
		return parseSwitch(val, "1", "0", &c.Untested)
	case "dns":
		a, err := netip.ParseAddr(val)
		if err != nil || !a.Is4() {
			return fmt.Errorf("want an IPv4 address")
		}
		c.DNS = a
	case "stack":
		if val != StackKeepnet && val != StackLinux {
			return fmt.Errorf("want %s or %s", StackKeepnet, StackLinux)
		}
		c.Stack = val
	case "ctl":
		if val != CtlVirtio && val != CtlVsock {
			return fmt.Errorf("want %s or %s", CtlVirtio, CtlVsock)
		}
		c.Ctl = val
	case "sshkey":
		if _, err := base64.StdEncoding.DecodeString(val); err != nil || val == "" {
			return fmt.Errorf("want base64-encoded authorized_keys lines")
		}
		c.SSHKey = val
	case "tso":
		return parseSwitch(val, "on", "off", &c.TSO)
	case "seccomp":
		return parseSwitch(val, "1", "0", &c.Seccomp)
	case "keep":
		return parseSwitch(val, "on", "off", &c.Keep)
	case "sched":
		if val != SchedBatch && val != SchedOther {
			return fmt.Errorf("want %s or %s", SchedBatch, SchedOther)
		}
		c.Sched = val
	case "hang":
		d, err := time.ParseDuration(val)
		if val == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration like 2s or 500ms, or 0 to disable")
		}
		c.Hang = d
	case "testhooks":
		return parseSwitch(val, "1", "0", &c.TestHooks)
	case "pfrules":
		return c.setPFRules(val)
	case "tcp.rack":
		return parseSwitch(val, "on", "off", &c.TCPRACK)
	case "tcp.ecn":
		return parseSwitch(val, "off", "on", &c.TCPNoECN)
	case "zerocopy":
		return parseSwitch(val, "off", "on", &c.NoZeroCopy)
	case "pin":
		return parseSwitch(val, "off", "on", &c.NoPin)
	case "godebug":
		if strings.ContainsAny(val, " \t") {
			return fmt.Errorf("want comma-separated settings like cpu.aes=off")
		}
		c.GODEBUG = val
	case "tcp.iw":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 || n > tcp.MaxInitialWindow {
			return fmt.Errorf("want an initial window from 1 to %d segments", tcp.MaxInitialWindow)
		}
		c.TCPIW = n
	case "pfstates":
		n, err := strconv.Atoi(val)
		if err != nil || n < MinPFStates || n > MaxPFStates {
			return fmt.Errorf("want a state table size from %d to %d flows; keeping %d", MinPFStates, MaxPFStates, c.PFStates)
		}
		c.PFStates = n
	case "pktgen":
		return c.setPktGen(val)
	case "hugepages":
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 || n > 1<<16 {
			return fmt.Errorf("want a count of 2 MiB pages")
		}
		c.HugePages = n
	default:
		return fmt.Errorf("unknown keepnet parameter")
	}
	return nil
}

// setPktGen takes keepnet.pktgen's SECONDS[,size=BYTES][,tx=off], all or
// nothing: a generator that is not what was asked for measures the wrong
// thing.
func (c *Config) setPktGen(val string) error {
	const want = "want SECONDS[,size=BYTES][,tx=off]"
	fields := strings.Split(val, ",")
	g := PktGen{Size: MinPktGenSize}
	n, err := strconv.Atoi(fields[0])
	if err != nil || n < 1 || n > MaxPktGenSeconds {
		return fmt.Errorf("%s, SECONDS a whole number from 1 to %d", want, MaxPktGenSeconds)
	}
	g.Seconds = n
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		key, v, _ := strings.Cut(f, "=")
		if seen[key] {
			return fmt.Errorf("%s: %s given twice", want, key)
		}
		seen[key] = true
		switch key {
		case "size":
			n, err := strconv.Atoi(v)
			if err != nil || n < MinPktGenSize || n > MaxPktGenSize {
				return fmt.Errorf("%s, BYTES from %d to %d (a frame without its CRC)", want, MinPktGenSize, MaxPktGenSize)
			}
			g.Size = n
		case "tx":
			var tx bool
			if err := parseSwitch(v, "on", "off", &tx); err != nil {
				return fmt.Errorf("%s: tx: %w", want, err)
			}
			g.RxOnly = !tx
		default:
			return fmt.Errorf("%s: unknown option %q", want, f)
		}
	}
	c.PktGen = g
	return nil
}

// blockAll is the rule set of a filter whose rules were refused.
const blockAll = "set default block\n"

// setPFRules takes the packet filter's rules from val, base64. Rules that
// do not parse are reported, and block everything instead.
func (c *Config) setPFRules(val string) error {
	text, err := base64.StdEncoding.DecodeString(val)
	if err != nil || val == "" {
		c.PFRules = blockAll
		return fmt.Errorf("want a base64-encoded rule set; blocking everything")
	}
	if _, err := pf.Parse(string(text)); err != nil {
		c.PFRules = blockAll
		return fmt.Errorf("rule set: %w; blocking everything", err)
	}
	c.PFRules = string(text)
	return nil
}

// nicPCI is NIC i's PCI address from keepnet.nics, or "".
func (c Config) nicPCI(i int) string {
	if i < len(c.PCI) {
		return c.PCI[i]
	}
	return ""
}

// validPCIAddr reports whether a is a PCI address as sysfs names it:
// domain:bus:device.function in lower-case hex, 0000:02:00.0.
func validPCIAddr(a string) bool {
	var dom, bus, dev, fn uint
	var rest string
	n, _ := fmt.Sscanf(a, "%04x:%02x:%02x.%1x%s", &dom, &bus, &dev, &fn, &rest)
	return n == 4 && len(a) == 12 && dev < 32 && fn < 8 && a == strings.ToLower(a)
}

// validHostname reports whether name is a host name (RFC 1123) the kernel
// takes (at most 64 bytes).
func validHostname(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// parseSwitch sets *v from a parameter that is either on or off.
func parseSwitch(val, on, off string, v *bool) error {
	if val != on && val != off {
		return fmt.Errorf("want %s or %s", on, off)
	}
	*v = val == on
	return nil
}
