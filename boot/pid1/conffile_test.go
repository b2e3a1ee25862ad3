package pid1

import (
	"encoding/base64"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfFile(t *testing.T) {
	keys := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA one@host\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB two@host\n"
	tests := []struct {
		name, file, cmdline string
		want                func(*Config)
		warnings            int
	}{
		{"empty", "", "", func(*Config) {}, 0},
		{"the images' default: all commented out", "# ip=10.0.0.2/24\n\n   # gw=10.0.0.1\n", "", func(*Config) {}, 0},
		{"static address", "ip=192.168.1.2/24\ngw = 192.168.1.1\n dns=192.168.1.1 \nhostname=edge1\n", "",
			func(c *Config) {
				c.IP, c.Gateway, c.DNS = netip.MustParsePrefix("192.168.1.2/24"), netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("192.168.1.1")
				c.Hostname = "edge1"
			}, 0},
		{"the command line wins", "ip=192.168.1.2/24\ngw=192.168.1.1\nhang=10s\n", "console=ttyS0 keepnet.ip=10.0.0.2/8 keepnet.gw=10.0.0.1",
			func(c *Config) {
				c.IP, c.Gateway, c.Hang = netip.MustParsePrefix("10.0.0.2/8"), netip.MustParseAddr("10.0.0.1"), 10*time.Second
			}, 0},
		{"authorized keys, one a line", "authorized_key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA one@host\nauthorized_key = ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB two@host\n", "",
			func(c *Config) { c.SSHKey = base64.StdEncoding.EncodeToString([]byte(keys)) }, 0},
		{"the command line's NICs replace the file's", "ip=10.1.0.1/24\nnic=10.2.0.1/24\nnic=10.3.0.1/24\n", "keepnet.nic=10.4.0.1/24",
			func(c *Config) {
				c.IP = netip.MustParsePrefix("10.1.0.1/24")
				c.MoreNICs = []netip.Prefix{netip.MustParsePrefix("10.4.0.1/24")}
			}, 0},
		{"the file's NICs stand without the command line's", "ip=10.1.0.1/24\nnic=10.2.0.1/24\n", "keepnet.gw=10.1.0.254",
			func(c *Config) {
				c.IP, c.Gateway = netip.MustParsePrefix("10.1.0.1/24"), netip.MustParseAddr("10.1.0.254")
				c.MoreNICs = []netip.Prefix{netip.MustParsePrefix("10.2.0.1/24")}
			}, 0},
		{"bad lines warn, good ones stand", "ip=10.0.0.2\nnonsense\n=5\ncolour=blue\nconf=/other.conf\nhostname=-bad-\nauthorized_key=\ndns=10.0.0.53\n", "",
			func(c *Config) { c.DNS = netip.MustParseAddr("10.0.0.53") }, 7},
		{"a gateway off the file's subnet", "ip=10.0.0.2/24\ngw=10.9.0.1\n", "",
			func(c *Config) {
				c.IP, c.Gateway = netip.MustParsePrefix("10.0.0.2/24"), netip.MustParseAddr("10.9.0.1")
			}, 1},
		{"which NICs, by PCI address", "nics=0000:02:00.0,0000:03:00.1\n", "",
			func(c *Config) { c.PCI = []string{"0000:02:00.0", "0000:03:00.1"} }, 0},
		{"NICs named twice, or not by address", "nics=0000:02:00.0,0000:02:00.0\nnics=eth0\n", "", func(*Config) {}, 2},
		{"keepnet.conf is kept", "", "keepnet.conf=/keepnet/keepnet.conf", func(c *Config) { c.ConfFile = "/keepnet/keepnet.conf" }, 0},
		{"keepnet.conf must be absolute", "", "keepnet.conf=keepnet.conf", func(*Config) {}, 1},
	}
	for _, tc := range tests {
		want := DefaultConfig()
		tc.want(&want)
		got, warnings := Parse(tc.file, tc.cmdline)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Parse(%q, %q) = %+v, want %+v", tc.name, tc.file, tc.cmdline, got, want)
		}
		if len(warnings) != tc.warnings {
			t.Errorf("%s: Parse(%q, %q) warned %q, want %d warnings", tc.name, tc.file, tc.cmdline, warnings, tc.warnings)
		}
	}
}

func TestConfFileOf(t *testing.T) {
	for cmdline, want := range map[string]string{
		"console=ttyS0": "",
		"keepnet.conf=/keepnet/keepnet.conf quiet": "/keepnet/keepnet.conf",
		"keepnet.conf=/a keepnet.conf=/b":          "/b",
	} {
		if got := ConfFileOf(cmdline); got != want {
			t.Errorf("ConfFileOf(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

func TestValidHostname(t *testing.T) {
	for name, want := range map[string]bool{
		"keepnet": true, "edge-1.example.org": true, "a": true, "": false, "-a": false, "a-": false,
		"a..b": false, "a_b": false, "ä": false, strings.Repeat("a", 64): false, strings.Repeat("a.", 32) + "a": false,
	} {
		if got := validHostname(name); got != want {
			t.Errorf("validHostname(%q) = %v, want %v", name, got, want)
		}
	}
}

// fakeDevices are block devices appearing over time, some with the file.
type fakeDevices struct {
	round   int
	appear  map[string]int    // device: the round it appears in
	files   map[string]string // device: the file's text on it
	noMedia map[string]int    // device: rounds it has no medium yet
	reads   map[string]int    // device: how often it was read
}

func (f *fakeDevices) Devices() []string {
	var d []string
	for dev, r := range f.appear {
		if f.round >= r {
			d = append(d, dev)
		}
	}
	f.round++
	return d
}

func (f *fakeDevices) Read(dev, file string) (string, string, bool, bool) {
	f.reads[dev]++
	if f.noMedia[dev] > 0 {
		f.noMedia[dev]--
		return "", "", false, true
	}
	text, ok := f.files[dev]
	return text, "vfat", ok, false
}

func TestFindConf(t *testing.T) {
	f := &fakeDevices{
		appear:  map[string]int{"sda": 0, "sda1": 0, "sr0": 0, "sdb": 3, "sdb2": 3},
		files:   map[string]string{"sdb2": "ip=10.0.0.2/24\n", "sr0": "ip=10.9.9.9/24\n"},
		noMedia: map[string]int{"sr0": 50}, // longer than the stick takes
		reads:   map[string]int{},
	}
	var slept time.Duration
	text, where, err := findConf(f, "/keepnet/keepnet.conf", 10*time.Second, func(d time.Duration) { slept += d })
	if err != nil || text != "ip=10.0.0.2/24\n" || where != "sdb2 (vfat)" {
		t.Fatalf("findConf = %q, %q, %v; want the stick's file from sdb2", text, where, err)
	}
	if f.reads["sda"] != 1 || f.reads["sda1"] != 1 {
		t.Errorf("devices without the file read %v times, want once each", f.reads)
	}
	if f.reads["sr0"] != 3 {
		t.Errorf("the CD drive without a medium was read %d times, want in each round before the stick came (3)", f.reads["sr0"])
	}
	if slept != 3*confPoll {
		t.Errorf("slept %v, want 3 polls", slept)
	}

	none := &fakeDevices{appear: map[string]int{"sda": 0}, reads: map[string]int{}}
	slept = 0
	_, _, err = findConf(none, "/keepnet/keepnet.conf", time.Second, func(d time.Duration) { slept += d })
	if err == nil || slept != time.Second || none.reads["sda"] != 1 {
		t.Errorf("findConf with no file = %v after %v, %d reads of sda; want an error after 1s, one read", err, slept, none.reads["sda"])
	}
}

func TestValidPCIAddr(t *testing.T) {
	for a, want := range map[string]bool{
		"0000:00:03.0": true, "0000:02:1f.7": true, "0001:ff:00.0": true,
		"0000:00:03": false, "00:03.0": false, "0000:00:20.0": false, "0000:00:03.8": false,
		"0000:00:03.0x": false, "0000:0G:03.0": false, "0000:AB:03.0": false, "": false,
	} {
		if got := validPCIAddr(a); got != want {
			t.Errorf("validPCIAddr(%q) = %v, want %v", a, got, want)
		}
	}
}
