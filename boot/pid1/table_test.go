package pid1

import (
	"net/netip"
	"os"
	"slices"
	"testing"

	"keepnet/boot/hub"
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
		"ip.rx":       {"e1000.0"}, // the driver's device fills receive buffers
		"syscall.io":  {"udp", "tcp"},
		"httpd.io":    {"syscall"},
		"echo.io":     {"syscall"},
		"resolver.io": {"syscall"},
		"sshd.io":     {"syscall"},
	}
	for _, n := range nodes {
		for _, p := range n.Pools {
			if !slices.Equal(p.Writers, want[p.Name]) {
				t.Errorf("%s's pool %s: writers %v, want %v", n.Name, p.Name, p.Writers, want[p.Name])
			}
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
