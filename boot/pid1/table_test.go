package pid1

import (
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"keepnet/boot/hub"
	"keepnet/boot/supervisor"
	"keepnet/drivers/nic"
	"keepnet/kernel/channel"
	"keepnet/servers/pf"
)

// Each pool is writable only by its owner and the neighbours that fill its
// buffers; everyone else that maps it gets it read-only (boot/hub).
func TestTablePoolWriters(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IP, cfg.DNS, cfg.SSHKey = netip.MustParsePrefix("10.0.2.15/24"), netip.MustParseAddr("10.0.2.3"), "keys"
	_, nodes := Table(cfg)
	if _, err := hub.New(nodes, hub.Factory{}, t.Logf); err != nil {
		t.Fatalf("hub.New(Table) = %v", err)
	}
	want := map[string][]string{
		"ip.rx":      {"e1000.0"}, // the driver's device fills receive buffers
		"syscall.io": {"udp", "tcp"},
		// syscall's data copies, or with zero copy (the default) the
		// transports reading and filling the applications' buffers.
		"httpd.io":    {"syscall", "udp", "tcp"},
		"echo.io":     {"syscall", "udp", "tcp"},
		"resolver.io": {"syscall", "udp", "tcp"},
		"sshd.io":     {"syscall", "udp", "tcp"},
	}
	both := []string{"udp", "tcp"}
	granted := map[string][]string{"httpd.io": both, "echo.io": both, "resolver.io": both, "sshd.io": both}
	for _, n := range nodes {
		for _, p := range n.Pools {
			if !slices.Equal(p.Writers, want[p.Name]) || !slices.Equal(p.Granted, granted[p.Name]) {
				t.Errorf("%s's pool %s: writers %v, granted to %v; want %v, %v", n.Name, p.Name, p.Writers, p.Granted, want[p.Name], granted[p.Name])
			}
		}
	}
}

// keepnet.zerocopy=off: syscall copies, tcp is granted nothing, and
// neither is told otherwise.
func TestTableZeroCopyOff(t *testing.T) {
	cfg, warnings := ParseCmdline("keepnet.ip=10.0.2.15/24 keepnet.zerocopy=off")
	if len(warnings) != 0 {
		t.Fatal(warnings)
	}
	specs, nodes := Table(cfg)
	if _, err := hub.New(nodes, hub.Factory{}, t.Logf); err != nil {
		t.Fatalf("hub.New(Table) = %v", err)
	}
	for _, n := range nodes {
		for _, p := range n.Pools {
			if strings.HasSuffix(p.Name, ".io") && p.Name != "syscall.io" && (len(p.Granted) > 0 || !slices.Equal(p.Writers, []string{"syscall"})) {
				t.Errorf("%s's pool %s: writers %v, granted to %v; want syscall alone", n.Name, p.Name, p.Writers, p.Granted)
			}
		}
	}
	for _, s := range specs {
		if (s.Name == "tcp" || s.Name == "udp" || s.Name == "syscall") && (slices.Contains(s.Args, "-grants") || slices.Contains(s.Args, "-zerocopy")) {
			t.Errorf("%s's arguments %q, want neither -grants nor -zerocopy", s.Name, s.Args)
		}
	}
}

// tcp gets kept memory for its connections unless keepnet.keep=off.
func TestTableKeptMemory(t *testing.T) {
	kept := func(cfg Config) []hub.KeptSpec {
		cfg.IP = netip.MustParsePrefix("10.0.2.15/24")
		_, nodes := Table(cfg)
		for _, n := range nodes {
			if n.Name == "tcp" {
				return n.Kept
			}
		}
		t.Fatal("no tcp in the table")
		return nil
	}
	if k := kept(DefaultConfig()); len(k) != 1 || k[0].Name != "tcp.state" {
		t.Errorf("tcp's kept memory by default: %+v, want tcp.state", k)
	}
	off := DefaultConfig()
	off.Keep = false
	if k := kept(off); len(k) != 0 {
		t.Errorf("tcp's kept memory with keepnet.keep=off: %+v, want none", k)
	}
}

// Without rules there is no pf, and ip asks nothing of one; with rules pf
// runs beside ip, with its kept memory, and ip waits for its verdicts.
func TestTablePF(t *testing.T) {
	for _, rules := range []string{"", "pass all\n"} {
		cfg := DefaultConfig()
		cfg.IP, cfg.PFRules = netip.MustParsePrefix("10.0.2.15/24"), rules
		specs, nodes := Table(cfg)
		if _, err := hub.New(nodes, hub.Factory{}, t.Logf); err != nil {
			t.Fatalf("rules %q: hub.New(Table) = %v", rules, err)
		}
		var pfSpec, ipAsks bool
		for _, s := range specs {
			pfSpec = pfSpec || s.Name == "pf"
			ipAsks = ipAsks || s.Name == "ip" && slices.Contains(s.Args, "-pf")
		}
		var kept []string
		for _, n := range nodes {
			if n.Name == "pf" {
				for _, k := range n.Kept {
					kept = append(kept, k.Name)
					if k.Size%os.Getpagesize() != 0 {
						t.Errorf("pf's kept memory %s is %d bytes, not whole pages (kernel/keep refuses it)", k.Name, k.Size)
					}
				}
			}
		}
		want := rules != ""
		if pfSpec != want || ipAsks != want || (len(kept) == 2) != want {
			t.Errorf("rules %q: pf runs %v, ip asks it %v, its kept memory %v; want %v", rules, pfSpec, ipAsks, kept, want)
		}
	}
}

// With two NICs each has its driver, e1000.0 and e1000.1, restarted on its
// own and preparing its own PCI function; ip is wired to both, told of the
// second NIC, the routes and forwarding; both drivers fill ip's receive
// pool; pf knows both interfaces.
func TestTableTwoNICs(t *testing.T) {
	cfg, warnings := ParseCmdline("keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1/24 keepnet.route=10.90.0.0/16,via=10.78.0.2 keepnet.nic.untested=1 keepnet.nics=0000:00:04.0 keepnet.pfrules=" +
		"cGFzcyBhbGwK") // "pass all\n"
	if len(warnings) != 0 {
		t.Fatal(warnings)
	}
	specs, nodes := Table(cfg)
	if _, err := hub.New(nodes, hub.Factory{}, t.Logf); err != nil {
		t.Fatalf("hub.New(Table) = %v", err)
	}
	args := map[string][]string{}
	for _, s := range specs {
		args[s.Name] = s.Args
		if (s.Name == "e1000.0" || s.Name == "e1000.1") && (s.Prepare == nil || s.UID == 0) {
			t.Errorf("%s: no Prepare or runs as root (uid %d)", s.Name, s.UID)
		}
	}
	for name, want := range map[string][]string{
		"e1000.0": {"-name", "e1000.0", "-index", "0", "-pci", "0000:00:04.0", "-untested"},
		"e1000.1": {"-name", "e1000.1", "-index", "1", "-untested"},
		"ip": {"-addr", "10.77.0.1/24", "-driver", "e1000.0", "-udp", "udp", "-tcp", "tcp",
			"-iface", "e1000.1=10.78.0.1/24", "-route", "10.90.0.0/16,via=10.78.0.2", "-forward", "-pf", "pf"},
		"pf": {"-ifaces", "e1000.0,e1000.1", "-max-states", "65536"},
	} {
		if !slices.Equal(args[name], want) {
			t.Errorf("%s's arguments %q, want %q", name, args[name], want)
		}
	}
	for _, n := range nodes {
		switch n.Name {
		case "ip":
			if !slices.Contains(n.Peers, "e1000.0") || !slices.Contains(n.Peers, "e1000.1") {
				t.Errorf("ip's peers %v, want both drivers", n.Peers)
			}
			if rx := n.Pools[0]; !slices.Equal(rx.Writers, []string{"e1000.0", "e1000.1"}) {
				t.Errorf("%s's writers %v, want both drivers", rx.Name, rx.Writers)
			}
		case "e1000.1":
			if len(n.Regions) != 1 || n.Regions[0].Name != "e1000.1.rings" {
				t.Errorf("e1000.1's regions %+v, want its own rings", n.Regions)
			}
		}
	}
	off, _ := ParseCmdline("keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1/24 keepnet.forward=off")
	specs, _ = Table(off)
	for _, s := range specs {
		if s.Name == "ip" && slices.Contains(s.Args, "-forward") {
			t.Errorf("keepnet.forward=off: ip's arguments %q ask to forward", s.Args)
		}
	}
}

// keepnet.pfstates sizes pf's state table: pf is told the size, and its
// kept memory holds exactly that many states, rounded up to what
// kernel/keep makes.
func TestTablePFStates(t *testing.T) {
	for _, tt := range []struct {
		cmdline string
		states  int
	}{
		{"", pf.DefaultMaxStates},
		{"keepnet.pfstates=32", 32},
		{"keepnet.pfstates=1000", 1000},
	} {
		cfg, warnings := ParseCmdline("keepnet.ip=10.0.2.15/24 keepnet.pfrules=cGFzcyBhbGwK " + tt.cmdline)
		if len(warnings) != 0 {
			t.Fatal(warnings)
		}
		specs, nodes := Table(cfg)
		if _, err := hub.New(nodes, hub.Factory{}, t.Logf); err != nil {
			t.Fatalf("%q: hub.New(Table) = %v", tt.cmdline, err)
		}
		for _, s := range specs {
			if s.Name != "pf" {
				continue
			}
			i := slices.Index(s.Args, "-max-states")
			if i < 0 || i+1 == len(s.Args) || s.Args[i+1] != strconv.Itoa(tt.states) {
				t.Errorf("%q: pf's arguments %q, want -max-states %d", tt.cmdline, s.Args, tt.states)
			}
		}
		for _, n := range nodes {
			for _, k := range n.Kept {
				if n.Name == "pf" && k.Name == pf.StateName {
					if want := pf.KeptBytes(tt.states); k.Size != want || k.Size < pf.MemBytes(tt.states) {
						t.Errorf("%q: pf's state memory %d bytes, want %d (%d states)", tt.cmdline, k.Size, want, tt.states)
					}
					if _, err := pf.New(make([]byte, k.Size), pf.Config{MaxStates: tt.states, Nonce: 1}); err != nil {
						t.Errorf("%q: pf.New over its kept memory: %v", tt.cmdline, err)
					}
				}
			}
		}
	}
}

// keepnet.pktgen starts the first driver's frame generator: that driver,
// and no other, gets the flags and the DMA region init holds for it.
func TestTablePktGen(t *testing.T) {
	cfg, warnings := ParseCmdline("keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1/24 keepnet.pktgen=5,size=1514")
	if len(warnings) != 0 {
		t.Fatal(warnings)
	}
	specs, nodes := Table(cfg)
	if _, err := hub.New(nodes, hub.Factory{}, t.Logf); err != nil {
		t.Fatalf("hub.New(Table) = %v", err)
	}
	for _, s := range specs {
		want := map[string][]string{
			"e1000.0": {"-name", "e1000.0", "-index", "0", "-pktgen", "5s", "-pktgen-size", "1514"},
			"e1000.1": {"-name", "e1000.1", "-index", "1"},
		}[s.Name]
		if want != nil && !slices.Equal(s.Args, want) {
			t.Errorf("%s's arguments %q, want %q", s.Name, s.Args, want)
		}
	}
	for _, n := range nodes {
		var regions []string
		for _, r := range n.Regions {
			regions = append(regions, r.Name)
			if r.Name == "e1000.0.pktgen" && (r.Bufs != nic.PktGenBuffers || r.BufSize != 2048) {
				t.Errorf("the generator's region %+v, want %d buffers of 2048 bytes", r, nic.PktGenBuffers)
			}
		}
		want := map[string][]string{"e1000.0": {"e1000.0.rings", "e1000.0.pktgen"}, "e1000.1": {"e1000.1.rings"}}[n.Name]
		if want != nil && !slices.Equal(regions, want) {
			t.Errorf("%s's regions %q, want %q", n.Name, regions, want)
		}
	}
	cfg.PktGen.RxOnly = true
	specs, _ = Table(cfg)
	for _, s := range specs {
		if s.Name == "e1000.0" && !slices.Equal(s.Args[len(s.Args)-1:], []string{"-pktgen-rx-only"}) {
			t.Errorf("tx=off: e1000.0's arguments %q, want -pktgen-rx-only", s.Args)
		}
	}
	// Off by default: no flag, no region.
	specs, nodes = Table(DefaultConfig())
	for _, s := range specs {
		if slices.Contains(s.Args, "-pktgen") {
			t.Errorf("without keepnet.pktgen %s's arguments are %q", s.Name, s.Args)
		}
	}
	for _, n := range nodes {
		if len(n.Regions) > 1 {
			t.Errorf("without keepnet.pktgen %s has regions %+v", n.Name, n.Regions)
		}
	}
}

// keepnet.tcp.iw reaches tcp as its -iw flag; without it tcp keeps its
// default (RFC 6928's ten segments). keepnet.tcp.ecn=off is -no-ecn.
func TestTableTCPInitialWindow(t *testing.T) {
	for _, tt := range []struct {
		cmdline string
		want    []string
	}{
		{"", []string{"-grants"}},
		{"keepnet.tcp.iw=3", []string{"-iw", "3", "-grants"}},
		{"keepnet.tcp.iw=3 keepnet.tso=off", []string{"-no-tso", "-iw", "3", "-grants"}},
		{"keepnet.tcp.ecn=off", []string{"-no-ecn", "-grants"}},
		{"keepnet.tcp.ecn=on", []string{"-grants"}},
		{"keepnet.zerocopy=off", nil},
	} {
		cfg, warnings := ParseCmdline("keepnet.ip=10.0.2.15/24 " + tt.cmdline)
		if len(warnings) != 0 {
			t.Fatal(warnings)
		}
		specs, _ := Table(cfg)
		for _, s := range specs {
			if s.Name == "tcp" && !slices.Equal(s.Args, tt.want) {
				t.Errorf("%q: tcp's arguments %q, want %q", tt.cmdline, s.Args, tt.want)
			}
		}
	}
}

// Under VFIO the driver hands its device IOVAs, and drops CAP_SYS_ADMIN
// (physical addresses); with test hooks (dma-escape aims at one) or
// without an IOMMU it keeps it.
func TestTableDriverCapsIOMMU(t *testing.T) {
	for _, c := range []struct {
		iommu, hooks, admin bool
	}{{false, false, true}, {true, false, false}, {true, true, true}} {
		cfg := DefaultConfig()
		cfg.IP = netip.MustParsePrefix("10.0.2.15/24")
		cfg.IOMMU, cfg.TestHooks = c.iommu, c.hooks
		specs, _ := Table(cfg)
		i := slices.IndexFunc(specs, func(s supervisor.Spec) bool { return s.Name == "e1000.0" })
		if i < 0 {
			t.Fatal("no e1000.0 in the table")
		}
		caps := specs[i].Caps
		if got := slices.Contains(caps, unix.CAP_SYS_ADMIN); got != c.admin {
			t.Errorf("IOMMU %v, test hooks %v: driver caps %v, CAP_SYS_ADMIN %v, want %v", c.iommu, c.hooks, caps, got, c.admin)
		}
		if !slices.Contains(caps, unix.CAP_IPC_LOCK) {
			t.Errorf("IOMMU %v: driver caps %v lack CAP_IPC_LOCK (DMA memory is pinned)", c.iommu, caps)
		}
	}
}

// The servers that are one event loop run with asynchronous preemption off
// (channel.GODEBUG); the applications and the store do not.
func TestTableLoopServersGODEBUG(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IP, cfg.DNS, cfg.SSHKey = netip.MustParsePrefix("10.0.2.15/24"), netip.MustParseAddr("10.0.2.3"), "keys"
	cfg.PFRules = "pass all\n"
	specs, _ := Table(cfg)
	want := map[string]bool{"e1000.0": true, "ip": true, "udp": true, "tcp": true, "syscall": true, "pf": true}
	seen := 0
	for _, sp := range specs {
		has := slices.Contains(sp.Env, "GODEBUG="+channel.GODEBUG)
		if has != want[sp.Name] {
			t.Errorf("%s: GODEBUG=%s set %v, want %v", sp.Name, channel.GODEBUG, has, want[sp.Name])
		}
		if has {
			seen++
		}
	}
	if seen != len(want) {
		t.Errorf("%d components run with GODEBUG=%s, want %d (%v)", seen, channel.GODEBUG, len(want), want)
	}
}

// keepnet.godebug reaches every component, after the loop servers' own
// setting, on either stack.
func TestTableGODEBUG(t *testing.T) {
	for _, stack := range []string{StackKeepnet, StackLinux} {
		cfg := DefaultConfig()
		cfg.Stack = stack
		cfg.IP, cfg.DNS = netip.MustParsePrefix("10.0.2.15/24"), netip.MustParseAddr("10.0.2.3")
		cfg.GODEBUG = "cpu.aes=off"
		specs, _ := Table(cfg)
		for _, sp := range specs {
			want := "GODEBUG=cpu.aes=off"
			if slices.Contains(loopServers, sp.Path) {
				want = "GODEBUG=" + channel.GODEBUG + ",cpu.aes=off"
			}
			if !slices.Contains(sp.Env, want) {
				t.Errorf("%s stack, %s: environment %q, want %s", stack, sp.Name, sp.Env, want)
			}
		}
	}
}

// On two processors or more the stack's servers run on the first and the
// applications on the rest; with keepnet.pin=off, one processor or Linux's
// stack nobody is confined.
func TestTableCPUs(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		cpus    int
		servers []int
		apps    []int
	}{
		{"keepnet.ip=10.0.2.15/24", 2, []int{0}, []int{1}},
		{"keepnet.ip=10.0.2.15/24", 4, []int{0}, []int{1, 2, 3}},
		{"keepnet.ip=10.0.2.15/24", 1, nil, nil},
		{"keepnet.ip=10.0.2.15/24 keepnet.pin=off", 2, nil, nil},
		{"keepnet.ip=10.0.2.15/24 keepnet.stack=linux", 2, nil, nil},
	} {
		cfg, warnings := ParseCmdline(tc.cmdline)
		if len(warnings) != 0 {
			t.Fatal(warnings)
		}
		cfg.CPUs = tc.cpus
		specs, _ := Table(cfg)
		for _, sp := range specs {
			var want []int
			switch sp.Name {
			case "e1000.0", "ip", "udp", "tcp", "syscall":
				want = tc.servers
			case "httpd", "echo":
				want = tc.apps
			}
			if !slices.Equal(sp.CPUs, want) {
				t.Errorf("%q on %d processors: %s runs on %v, want %v", tc.cmdline, tc.cpus, sp.Name, sp.CPUs, want)
			}
		}
	}
}
