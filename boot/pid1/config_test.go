package pid1

import (
	"encoding/base64"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"keepnet/servers/ip"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		cmdline  string
		want     Config
		warnings int
	}{
		{"console=ttyS0 quiet", DefaultConfig(), 0},
		{
			"console=ttyS0 keepnet.ip=10.0.2.15/24 keepnet.gw=10.0.2.2 keepnet.dns=10.0.2.3 keepnet.stack=linux keepnet.ctl=vsock keepnet.hugepages=8 keepnet.sched=other keepnet.hang=500ms keepnet.testhooks=1 keepnet.seccomp=0 keepnet.keep=off",
			Config{
				IP: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
				DNS: netip.MustParseAddr("10.0.2.3"), Stack: StackLinux, Ctl: CtlVsock, HugePages: 8, Sched: SchedOther, TSO: true,
				Hang: 500 * time.Millisecond, TestHooks: true, Forward: true, PFStates: 65536, IPv6: true,
			},
			0,
		},
		{"keepnet.ip6=fd00:78::15/64 keepnet.ip6=2001:db8::15/64 keepnet.gw6=fe80::1", func() Config {
			c := DefaultConfig()
			c.IP6 = []netip.Prefix{netip.MustParsePrefix("fd00:78::15/64"), netip.MustParsePrefix("2001:db8::15/64")}
			c.Gateway6 = netip.MustParseAddr("fe80::1")
			return c
		}(), 0},
		{"keepnet.ipv6=off", func() Config { c := DefaultConfig(); c.IPv6 = false; return c }(), 0},
		{"keepnet.ip6=fe80::15/64", DefaultConfig(), 1}, // link-local: made from the MAC
		{"keepnet.ip6=10.0.2.15/24", DefaultConfig(), 1},
		{"keepnet.gw6=ff02::2", DefaultConfig(), 1},
		{"keepnet.keep=maybe", DefaultConfig(), 1},    // on or off
		{"keepnet.ip=10.0.2.15", DefaultConfig(), 1},  // no prefix length
		{"keepnet.ip=fe80::1/64", DefaultConfig(), 1}, // IPv6 is keepnet.ip6
		{"keepnet.ip=dhcp", withDHCP(), 0},
		{"keepnet.ip=dhcp keepnet.gw=10.0.2.2 keepnet.nic=10.78.0.1/24", withDHCP(), 1}, // the lease gives the router; one NIC
		{"keepnet.ip=dhcp keepnet.ip=10.0.2.15/24", withIP("10.0.2.15/24"), 0},          // the last one wins
		{"keepnet.stack=bsd", DefaultConfig(), 1},                                       // unknown stack
		{"keepnet.ctl=carrier-pigeon", DefaultConfig(), 1},                              // unknown transport
		{"keepnet.hugepages=-1", DefaultConfig(), 1},                                    // negative
		{"keepnet.sched=fifo", DefaultConfig(), 1},                                      // not offered
		{"keepnet.hang=soon", DefaultConfig(), 1},                                       // not a duration
		{"keepnet.hang=0", func() Config { c := DefaultConfig(); c.Hang = 0; return c }(), 0},
		{"keepnet.seccomp=off", DefaultConfig(), 1}, // 0 or 1
		{"keepnet.pfrules=" + base64.StdEncoding.EncodeToString([]byte("pass all\n")), withRules("pass all\n"), 0},
		{"keepnet.pfrules=" + base64.StdEncoding.EncodeToString([]byte("pass sideways\n")), withRules(blockAll), 1}, // fails closed
		{"keepnet.pfrules=!!", withRules(blockAll), 1},                                                              // not base64
		{"keepnet.godebug=cpu.aes=off,cpu.sse42=off", func() Config { c := DefaultConfig(); c.GODEBUG = "cpu.aes=off,cpu.sse42=off"; return c }(), 0},
		{"keepnet.tcp.rack=on", func() Config { c := DefaultConfig(); c.TCPRACK = true; return c }(), 0},
		{"keepnet.tcp.rack=off", DefaultConfig(), 0},
		{"keepnet.tcp.iw=3", func() Config { c := DefaultConfig(); c.TCPIW = 3; return c }(), 0},
		{"keepnet.tcp.iw=10", func() Config { c := DefaultConfig(); c.TCPIW = 10; return c }(), 0},
		{"keepnet.tcp.iw=0", DefaultConfig(), 1},
		{"keepnet.tcp.iw=65", DefaultConfig(), 1}, // past tcp.MaxInitialWindow
		{"keepnet.tcp.iw=ten", DefaultConfig(), 1},
		{"keepnet.tcp.ecn=off", func() Config { c := DefaultConfig(); c.TCPNoECN = true; return c }(), 0},
		{"keepnet.tcp.ecn=on", DefaultConfig(), 0},
		{"keepnet.tcp.ecn=1", DefaultConfig(), 1},
		{"keepnet.pfstates=32", withStates(32), 0},
		{"keepnet.pfstates=16", withStates(16), 0},       // the least
		{"keepnet.pfstates=65536", withStates(65536), 0}, // the most
		{"keepnet.pfstates=15", DefaultConfig(), 1},      // too few
		{"keepnet.pfstates=65537", DefaultConfig(), 1},   // more than the kept memory of the default
		{"keepnet.pfstates=0", DefaultConfig(), 1},
		{"keepnet.pfstates=-32", DefaultConfig(), 1},
		{"keepnet.pfstates=32k", DefaultConfig(), 1}, // a count, no suffixes
		{"keepnet.pfstates=", DefaultConfig(), 1},
		{"keepnet.nic.untested=1", func() Config { c := DefaultConfig(); c.Untested = true; return c }(), 0},
		{"keepnet.nic.untested=0", DefaultConfig(), 0},
		{"keepnet.nic.untested=yes", DefaultConfig(), 1},
		{"keepnet.pktgen=5", withPktGen(5, 60), 0},
		{"keepnet.pktgen=2,size=1514", withPktGen(2, 1514), 0},
		{"keepnet.pktgen=1,size=60", withPktGen(1, 60), 0},         // the least
		{"keepnet.pktgen=300,size=1514", withPktGen(300, 1514), 0}, // the most
		{"keepnet.pktgen=0", DefaultConfig(), 1},                   // off is the default, not a value
		{"keepnet.pktgen=301", DefaultConfig(), 1},
		{"keepnet.pktgen=-5", DefaultConfig(), 1},
		{"keepnet.pktgen=5s", DefaultConfig(), 1}, // whole seconds, no unit
		{"keepnet.pktgen=", DefaultConfig(), 1},
		{"keepnet.pktgen=5,size=59", DefaultConfig(), 1},   // shorter than Ethernet's minimum
		{"keepnet.pktgen=5,size=1515", DefaultConfig(), 1}, // longer than a frame without CRC
		{"keepnet.pktgen=5,size=", DefaultConfig(), 1},
		{"keepnet.pktgen=5,len=100", DefaultConfig(), 1}, // unknown option
		{"keepnet.pktgen=5,size=100,size=200", DefaultConfig(), 1},
		{"keepnet.pktgen=5,tx=off", withPktGen(5, 60, true), 0},
		{"keepnet.pktgen=5,tx=off,size=1514", withPktGen(5, 1514, true), 0},
		{"keepnet.pktgen=5,size=100,tx=on", withPktGen(5, 100), 0},
		{"keepnet.pktgen=5,tx=no", DefaultConfig(), 1},
		{"keepnet.pktgen=5,tx=off,tx=on", DefaultConfig(), 1},
		{"keepnet.pktgen=5,", DefaultConfig(), 1},
		{"keepnet.colour=blue keepnet.gw=x", DefaultConfig(), 2}, // unknown key, bad address
		{
			"keepnet.ip=10.0.0.2/24 keepnet.gw=192.168.1.1",
			Config{IP: netip.MustParsePrefix("10.0.0.2/24"), Gateway: netip.MustParseAddr("192.168.1.1"), Stack: StackKeepnet, Ctl: CtlVirtio, HugePages: 64, Sched: SchedBatch, TSO: true, Hang: DefaultHang, Seccomp: true, Keep: true, Forward: true, PFStates: 65536, IPv6: true},
			1, // gateway off the subnet
		},
		{"keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1/24 keepnet.route=10.90.0.0/16,via=10.78.0.2", twoNICs(true, "10.90.0.0/16,via=10.78.0.2"), 0},
		{"keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1/24 keepnet.forward=off", twoNICs(false), 0},
		{"keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1/24 keepnet.route=10.90.0.0/16,via=10.79.0.2", twoNICs(true), 1}, // via no network
		{"keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1/24 keepnet.route=10.90.0.0/16", twoNICs(true), 1},               // no via
		{"keepnet.ip=10.77.0.1/24 keepnet.nic=10.78.0.1 keepnet.forward=maybe", func() Config {
			c := DefaultConfig()
			c.IP = netip.MustParsePrefix("10.77.0.1/24")
			return c
		}(), 2},
	}
	for _, tt := range tests {
		got, warnings := ParseCmdline(tt.cmdline)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCmdline(%q) = %+v, want %+v", tt.cmdline, got, tt.want)
		}
		if len(warnings) != tt.warnings {
			t.Errorf("ParseCmdline(%q) warnings = %v, want %d", tt.cmdline, warnings, tt.warnings)
		}
	}
}

// twoNICs is the default configuration with NICs 10.77.0.1/24 and
// 10.78.0.1/24, forward, and routes.
func twoNICs(forward bool, routes ...string) Config {
	c := DefaultConfig()
	c.IP = netip.MustParsePrefix("10.77.0.1/24")
	c.MoreNICs = []netip.Prefix{netip.MustParsePrefix("10.78.0.1/24")}
	c.Forward = forward
	for _, r := range routes {
		c.Routes = append(c.Routes, must(ip.ParseRoute(r)))
	}
	return c
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// withStates is the default configuration with a state table of n.
func withStates(n int) Config {
	c := DefaultConfig()
	c.PFStates = n
	return c
}

// withPktGen is the default configuration with the first driver's
// generator on for seconds, frames of size bytes (receiving only, with a
// true rxOnly).
func withPktGen(seconds, size int, rxOnly ...bool) Config {
	c := DefaultConfig()
	c.PktGen = PktGen{Seconds: seconds, Size: size, RxOnly: len(rxOnly) > 0 && rxOnly[0]}
	return c
}

// A refused keepnet.pfstates says what it wants, and what stays.
func TestParseCmdlinePFStatesMessage(t *testing.T) {
	_, warnings := ParseCmdline("keepnet.pfstates=8")
	want := `kernel command line "keepnet.pfstates=8": want a state table size from 16 to 65536 flows; keeping 65536`
	if len(warnings) != 1 || warnings[0].Error() != want {
		t.Errorf("ParseCmdline(keepnet.pfstates=8) warnings = %v, want [%s]", warnings, want)
	}
}

// withRules is the default configuration with a packet filter of rules.
func withRules(rules string) Config {
	c := DefaultConfig()
	c.PFRules = rules
	return c
}

// withDHCP is the default configuration with keepnet.ip=dhcp: no address
// or gateway of its own.
func withDHCP() Config {
	c := DefaultConfig()
	c.IP, c.Gateway, c.DHCP = netip.Prefix{}, netip.Addr{}, true
	return c
}

// withIP is the default configuration with keepnet.ip=p.
func withIP(p string) Config {
	c := DefaultConfig()
	c.IP = netip.MustParsePrefix(p)
	return c
}
