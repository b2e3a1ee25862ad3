package qemu

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseForwards(t *testing.T) {
	tests := []struct {
		in      string
		want    []Forward
		wantErr bool
	}{
		{"", nil, false},
		{"tcp:8080:80", []Forward{{"tcp", 8080, 80}}, false},
		{"tcp:8080:80,udp:7007:7", []Forward{{"tcp", 8080, 80}, {"udp", 7007, 7}}, false},
		{"sctp:1:2", nil, true},
		{"tcp:8080", nil, true},
		{"tcp:0:80", nil, true},
		{"tcp:8080:65536", nil, true},
		{"tcp:x:80", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseForwards(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseForwards(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseNet(t *testing.T) {
	tests := []struct {
		in      string
		want    Net
		wantErr bool
	}{
		{"user", Net{Kind: "user"}, false},
		{"tap:kn0", Net{Kind: "tap", Tap: "kn0"}, false},
		{"tap:", Net{}, true},
		{"tap:averyveryverylongname", Net{}, true},
		{"stream:/run/k/n0.sock", Net{Kind: "stream", Path: "/run/k/n0.sock"}, false},
		{"stream:", Net{}, true},
		{"bridge", Net{}, true},
		{"tap:kn1,ip=10.78.0.1/24", Net{Kind: "tap", Tap: "kn1", IP: netip.MustParsePrefix("10.78.0.1/24")}, false},
		{"user,ip=10.0.2.15/24", Net{Kind: "user", IP: netip.MustParsePrefix("10.0.2.15/24")}, false},
		{"tap:kn1,ip=10.78.0.1", Net{}, true},  // no prefix length
		{"tap:kn1,ip=fe80::1/64", Net{}, true}, // not IPv4
		{"tap:kn1,nic=e1000-82545em", Net{Kind: "tap", Tap: "kn1", Model: "e1000-82545em"}, false},
		{"stream:/s,ip=10.78.0.1/24,nic=e1000e", Net{Kind: "stream", Path: "/s", IP: netip.MustParsePrefix("10.78.0.1/24"), Model: "e1000e"}, false},
		{"user,nic=e1000-82544gc,ip=10.0.2.15/24", Net{Kind: "user", IP: netip.MustParsePrefix("10.0.2.15/24"), Model: "e1000-82544gc"}, false},
		{"user,nic=rtl8139", Net{}, true},                     // not an Intel gigabit model
		{"user,nic=e1000,nic=e1000e", Net{}, true},            // twice
		{"user,ip=10.0.2.15/24,ip=10.0.2.16/24", Net{}, true}, // twice
		{"user,mtu=1000", Net{}, true},                        // unknown option
	}
	for _, tt := range tests {
		got, err := ParseNet(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseNet(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func testMachine() Machine {
	return Machine{
		QEMU: "qemu-system-x86_64", Kernel: "/k/bzImage", Initrd: "/k/initrd", Accel: "tcg", SMP: 2, MemMiB: 1024,
		Net: Net{Kind: "user"}, Forwards: []Forward{{"tcp", 8080, 80}}, MAC: "52:54:00:12:34:56",
		IP: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"), DNS: netip.MustParseAddr("10.0.2.3"),
		Stack: "linux", Ctl: "/run/k/ctl.sock", Console: "/run/k/console", PIDFile: "/run/k/pid",
	}
}

// flagValue returns the argument after the first occurrence of flag whose
// value has the given prefix.
func flagValue(args []string, flag, prefix string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && strings.HasPrefix(args[i+1], prefix) {
			return args[i+1], true
		}
	}
	return "", false
}

func TestMachineArgs(t *testing.T) {
	m := testMachine()
	args := m.Args()
	for _, want := range [][2]string{
		{"-machine", "pc,accel=tcg"},
		{"-cpu", "max"},
		{"-smp", "2"},
		{"-m", "1024"},
		{"-kernel", "/k/bzImage"},
		{"-initrd", "/k/initrd"},
		{"-serial", "file:/run/k/console"},
		{"-chardev", "socket,id=ctl,path=/run/k/ctl.sock,server=on,wait=off"},
		{"-device", "virtserialport,chardev=ctl,name=org.keepnet.ctl"},
		{"-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80"},
		{"-device", "e1000,netdev=n0,mac=52:54:00:12:34:56"},
		{"-pidfile", "/run/k/pid"},
	} {
		if got, ok := flagValue(args, want[0], want[1]); !ok || got != want[1] {
			t.Errorf("Args() lacks %s %s; got %q", want[0], want[1], args)
		}
	}
	cmdline, _ := flagValue(args, "-append", "")
	for _, p := range []string{"console=ttyS0", "keepnet.stack=linux", "keepnet.ip=10.0.2.15/24", "keepnet.gw=10.0.2.2", "keepnet.dns=10.0.2.3"} {
		if !strings.Contains(cmdline, p) {
			t.Errorf("kernel command line %q lacks %s", cmdline, p)
		}
	}
	if strings.Contains(cmdline, "keepnet.ctl") {
		t.Errorf("kernel command line %q names a control transport, want the virtio default", cmdline)
	}

	m.Net = Net{Kind: "tap", Tap: "kn0"}
	m.Console = ""
	m.VsockCID = 7
	args = m.Args()
	if _, ok := flagValue(args, "-netdev", "tap,id=n0,ifname=kn0,script=no,downscript=no"); !ok {
		t.Errorf("tap Args() = %q, want a tap netdev on kn0", args)
	}
	if _, ok := flagValue(args, "-serial", "mon:stdio"); !ok {
		t.Errorf("Args() without a console file = %q, want the console on stdio", args)
	}
	m.Net = Net{Kind: "stream", Path: "/run/k/n0.sock"}
	if _, ok := flagValue(m.Args(), "-netdev", "stream,id=n0,server=on,addr.type=unix,addr.path=/run/k/n0.sock"); !ok {
		t.Errorf("stream Args() = %q, want a stream netdev QEMU listens on", m.Args())
	}
	if _, ok := flagValue(args, "-device", "vhost-vsock-pci,guest-cid=7"); !ok || slices.Contains(args, "virtio-serial-pci") {
		t.Errorf("vsock Args() = %q, want vhost-vsock-pci and no virtio-serial", args)
	}
	if c, _ := flagValue(args, "-append", ""); !strings.Contains(c, "keepnet.ctl=vsock") {
		t.Errorf("vsock kernel command line %q lacks keepnet.ctl=vsock", c)
	}
}

// Two NICs: two devices, the second on its own netdev with the next MAC and
// the model it names; its address and the routes on the kernel command
// line.
func TestMachineTwoNICs(t *testing.T) {
	m := testMachine()
	m.Net = Net{Kind: "tap", Tap: "kn0"}
	m.Forwards = nil
	m.MoreNets = []Net{{Kind: "tap", Tap: "kn1", IP: netip.MustParsePrefix("10.78.0.1/24"), Model: "e1000-82545em"}}
	m.Routes = []string{"10.90.0.0/16,via=10.78.0.2"}
	args := strings.Join(m.Args(), " ")
	for _, want := range []string{
		"-netdev tap,id=n0,ifname=kn0,script=no,downscript=no -device e1000,netdev=n0,mac=52:54:00:12:34:56",
		"-netdev tap,id=n1,ifname=kn1,script=no,downscript=no -device e1000-82545em,netdev=n1,mac=52:54:00:12:34:57",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("Args() = %s\nwant it to contain %s", args, want)
		}
	}
	cmdline := m.KernelCmdline()
	for _, want := range []string{"keepnet.nic=10.78.0.1/24", "keepnet.route=10.90.0.0/16,via=10.78.0.2"} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("KernelCmdline() = %s, want it to contain %s", cmdline, want)
		}
	}
}

// Under TCG the guest gets a longer hang limit and Go without its AES map
// hash (AES instructions are dear there); under KVM neither.
func TestMachineTCGSettings(t *testing.T) {
	m := testMachine()
	for accel, want := range map[string]bool{"tcg": true, "kvm": false} {
		m.Accel = accel
		cmdline := m.KernelCmdline()
		for _, arg := range []string{"keepnet.godebug=cpu.aes=off", "keepnet.hang=" + TCGHang.String()} {
			if strings.Contains(cmdline, arg) != want {
				t.Errorf("%s: KernelCmdline() = %s; want %s in it: %v", accel, cmdline, arg, want)
			}
		}
	}
}

// An image boot has the firmware load the image: no -kernel, no command
// line, the image first in the boot order, no option ROM on the NIC.
func TestMachineImageArgs(t *testing.T) {
	for _, c := range []struct {
		name      string
		m         func(*Machine)
		want, not []string
	}{
		{"disk, BIOS", func(m *Machine) { m.Disk = "k.img" },
			[]string{"-drive if=none,id=boot,format=raw,snapshot=on,file=k.img -device virtio-blk-pci,drive=boot,bootindex=0", ",romfile= "},
			[]string{"-kernel", "-append", "pflash"}},
		{"disk, UEFI", func(m *Machine) { m.Disk, m.Firmware, m.VarsFile = "k.img", FirmwareUEFI, "/run/v.fd" },
			[]string{"-drive if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode, "-drive if=pflash,format=raw,unit=1,file=/run/v.fd", "virtio-blk-pci,drive=boot,bootindex=0"},
			[]string{"-kernel"}},
		{"CD, BIOS", func(m *Machine) { m.ISO = "k.iso" },
			[]string{"-drive if=none,id=boot,format=raw,media=cdrom,readonly=on,file=k.iso -device ahci,id=ahci -device ide-cd,bus=ahci.0,drive=boot,bootindex=0"},
			[]string{"-kernel", "pflash"}},
		{"network", func(m *Machine) { m.PXE = true },
			[]string{"-device e1000,netdev=n0,mac=52:54:00:12:34:56,bootindex=0"},
			[]string{"-kernel", "pflash", "-drive", "romfile"}},
		{"kernel", func(m *Machine) {}, []string{"-kernel ", "-initrd ", "-append "}, []string{"romfile", "bootindex", "pflash"}},
	} {
		m := testMachine()
		c.m(&m)
		args := strings.Join(m.Args(), " ") + " "
		for _, w := range c.want {
			if !strings.Contains(args, w) {
				t.Errorf("%s: Args() = %s\nwant it to contain %s", c.name, args, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(args, n) {
				t.Errorf("%s: Args() = %s\nwant no %s", c.name, args, n)
			}
		}
	}
}

// TestMachineIOMMU: --iommu gives q35 with the IOMMU device ahead of every
// NIC, and the kernel translation without passthrough.
func TestMachineIOMMU(t *testing.T) {
	m := testMachine()
	m.IOMMU = true
	args := m.Args()
	if got, _ := flagValue(args, "-machine", ""); got != "q35,kernel-irqchip=split,accel=tcg" {
		t.Errorf("-machine %q, want q35,kernel-irqchip=split,accel=tcg", got)
	}
	iommu, nic := -1, -1
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "intel-iommu,"):
			iommu = i
		case strings.HasPrefix(a, "e1000,") && nic < 0:
			nic = i
		}
	}
	if iommu < 0 || nic < 0 || iommu > nic {
		t.Errorf("Args() = %q: want -device intel-iommu before the NIC", args)
	}
	cmdline, _ := flagValue(args, "-append", "")
	if !strings.Contains(cmdline, "intel_iommu=on") || strings.Contains(cmdline, "iommu=pt") {
		t.Errorf("kernel command line %q: want intel_iommu=on and no iommu=pt", cmdline)
	}
	m.IOMMU = false
	if got := strings.Join(m.Args(), " "); strings.Contains(got, "iommu") {
		t.Errorf("without IOMMU Args() = %q", got)
	}
}
