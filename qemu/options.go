// Package qemu is the host side of keepnet: it builds QEMU command lines for
// the appliance, boots it (in the foreground or detached), probes whether KVM
// really runs a guest, and talks to the guest's init over the control channel.
package qemu

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PortName is the virtio-serial port name the guest's init looks for.
const PortName = "org.keepnet.ctl"

// Forward is one host port forwarded to the guest with user networking.
type Forward struct {
	Proto     string // "tcp" or "udp"
	HostPort  int
	GuestPort int
}

func (f Forward) String() string { return fmt.Sprintf("%s:%d:%d", f.Proto, f.HostPort, f.GuestPort) }

// ParseForwards parses "tcp:8080:80,udp:7007:7".
func ParseForwards(s string) ([]Forward, error) {
	if s == "" {
		return nil, nil
	}
	var fs []Forward
	for _, item := range strings.Split(s, ",") {
		parts := strings.Split(item, ":")
		if len(parts) != 3 || (parts[0] != "tcp" && parts[0] != "udp") {
			return nil, fmt.Errorf("forward %q: want PROTO:HOSTPORT:GUESTPORT with PROTO tcp or udp", item)
		}
		hp, err1 := strconv.Atoi(parts[1])
		gp, err2 := strconv.Atoi(parts[2])
		if err1 != nil || err2 != nil || hp < 1 || hp > 65535 || gp < 1 || gp > 65535 {
			return nil, fmt.Errorf("forward %q: ports must be 1..65535", item)
		}
		fs = append(fs, Forward{Proto: parts[0], HostPort: hp, GuestPort: gp})
	}
	return fs, nil
}

// NICModels are the Intel gigabit NICs QEMU emulates, by the name of its
// -device: the 82540EM (the default), 82545EM, 82544GC and 82574L.
var NICModels = []string{"e1000", "e1000-82545em", "e1000-82544gc", "e1000e"}

// DefaultNIC is the model of a NIC that names none.
const DefaultNIC = "e1000"

// Net is how one of the appliance's NICs is connected.
type Net struct {
	Kind string // "user", "tap" or "stream"
	Tap  string // interface name, for Kind "tap"
	// Path is the Unix socket QEMU listens on for Kind "stream": a frame
	// relay (qemu/relay: keepnet-relay -qemu-dial PATH) connects there.
	Path string
	// IP is the NIC's address, if given (",ip=CIDR").
	IP netip.Prefix
	// Model is the NIC QEMU emulates, one of NICModels (",nic=MODEL");
	// empty: DefaultNIC, or what `keepnet up --nic` says.
	Model string
}

// ParseNet parses "user", "tap:IFNAME" or "stream:PATH", each optionally
// followed by ",ip=ADDRESS/PREFIX" and ",nic=MODEL".
func ParseNet(s string) (Net, error) {
	kind, opts, _ := strings.Cut(s, ",")
	var n Net
	if name, ok := strings.CutPrefix(kind, "tap:"); ok && name != "" && len(name) < 16 {
		n.Kind, n.Tap = "tap", name
	} else if path, ok := strings.CutPrefix(kind, "stream:"); ok && path != "" && len(path) < 100 {
		n.Kind, n.Path = "stream", path
	} else if kind == "user" {
		n.Kind = "user"
	} else {
		return Net{}, fmt.Errorf("network %q: want user, tap:IFNAME or stream:PATH, then optionally ,ip=ADDRESS/PREFIX and ,nic=MODEL", s)
	}
	for opts != "" {
		var opt string
		opt, opts, _ = strings.Cut(opts, ",")
		key, val, _ := strings.Cut(opt, "=")
		switch key {
		case "ip":
			p, err := netip.ParsePrefix(val)
			if err != nil || !p.Addr().Is4() || n.IP.IsValid() {
				return Net{}, fmt.Errorf("network %q: ip=%q is not an IPv4 address with prefix length (or is given twice)", s, val)
			}
			n.IP = p
		case "nic":
			if err := CheckNIC(val); err != nil || n.Model != "" {
				return Net{}, fmt.Errorf("network %q: %v", s, err)
			}
			n.Model = val
		default:
			return Net{}, fmt.Errorf("network %q: unknown option %q: want ip=ADDRESS/PREFIX or nic=MODEL", s, opt)
		}
	}
	return n, nil
}

// CheckNIC says whether model is one of NICModels.
func CheckNIC(model string) error {
	if !slices.Contains(NICModels, model) {
		return fmt.Errorf("NIC model %q: want one of %s", model, strings.Join(NICModels, ", "))
	}
	return nil
}

// model is the QEMU -device of the NIC.
func (n Net) model() string {
	if n.Model == "" {
		return DefaultNIC
	}
	return n.Model
}

// Firmwares `keepnet up --firmware` offers for booting an image.
const (
	FirmwareBIOS = "bios" // SeaBIOS, QEMU's own
	FirmwareUEFI = "uefi" // OVMF (Debian's ovmf)
)

// OVMF's code and the template of its variable store, as Debian's ovmf
// package installs them; a boot gets a copy of the variables
// (Machine.VarsFile), since the firmware writes them.
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Machine is everything that shapes one boot of the appliance.
type Machine struct {
	QEMU   string // qemu-system-x86_64
	Kernel string
	Initrd string
	// Disk, when set, is a disk image (images/bootimg's keepnet.img) the
	// firmware boots instead of Kernel and Initrd; ISO likewise an image
	// in a CD-ROM drive (keepnet.iso). The image's boot loader then gives
	// the kernel its command line, and the appliance takes its
	// configuration from the image's file: KernelCmdline is not used. A
	// disk is opened with snapshot=on: the guest never changes the file.
	Disk string
	ISO  string
	// PXE boots from the first NIC through its iPXE option ROM (a DHCP
	// and TFTP server on that network serves images/out/pxe/).
	PXE bool
	// Firmware boots Disk or ISO: FirmwareBIOS (the default) or
	// FirmwareUEFI, whose variables go to VarsFile.
	Firmware string
	VarsFile string
	Accel    string // "kvm" or "tcg" (resolved; never "auto")
	SMP      int
	MemMiB   int
	Net      Net   // the first NIC's
	MoreNets []Net // the other NICs', each with its IP
	Forwards []Forward
	MAC      string
	IP       netip.Prefix
	DHCP     bool // the address from a DHCP server (keepnet.ip=dhcp); IP unset
	Gateway  netip.Addr
	IP6      []netip.Prefix // static IPv6 addresses of the first NIC (keepnet.ip6)
	Gateway6 netip.Addr     // IPv6 default router (keepnet.gw6)
	NoIPv6   bool           // keepnet.ipv6=off
	Routes   []string       // static routes, as servers/ip.ParseRoute reads them
	DNS      netip.Addr
	Stack    string // "keepnet" or "linux"
	// Ctl is the host end of the control channel: a Unix socket QEMU
	// listens on (virtio-serial), or, with VsockCID set, a file naming the
	// guest's vsock address.
	Ctl      string
	VsockCID uint32
	// Console is the file the serial console goes to; empty means the
	// terminal (stdio, with QEMU's monitor on Ctrl-A C, quit on Ctrl-A X).
	Console string
	PIDFile string
	Append  string // extra kernel command line
	// SSHKeys are authorized_keys lines, base64-encoded, for the guest's
	// SSH server; empty: no SSH server.
	SSHKeys string
	// PFRules is a packet filter rule set, base64-encoded; empty: no
	// packet filter.
	PFRules string
	// IOMMU gives the guest an emulated Intel IOMMU (VT-d): machine q35,
	// -device intel-iommu before the NICs, intel_iommu=on. keepnet's
	// driver then takes its NIC through VFIO and maps DMA to exactly its
	// pools and rings; the Linux baseline's driver works through the
	// IOMMU's translation too.
	IOMMU bool

	stallWait time.Duration // Start's stall bound; zero: stallWait
}

// KernelCmdline is the command line the guest's init reads its
// configuration from.
func (m Machine) KernelCmdline() string {
	// tsc=reliable: under TCG the guest kernel finds the vCPUs' TSCs
	// unsynchronised and falls back to the HPET, which has no vDSO path,
	// so every clock_gettime became a system call and an emulated MMIO
	// read (a fifth of the IP server's time went to time.Now). QEMU
	// derives every vCPU's TSC from one host clock: it is reliable. Both
	// stacks boot with it.
	args := []string{"console=ttyS0", "panic=-1", "tsc=reliable", "keepnet.stack=" + m.Stack}
	if m.Console == "" {
		// On a terminal the kernel's own messages would bury init's. A
		// console file keeps them: when a guest never reaches init, they
		// are all there is to say where it stopped.
		args = append(args, "quiet")
	}
	if m.IP.IsValid() {
		args = append(args, "keepnet.ip="+m.IP.String())
	}
	if m.DHCP {
		args = append(args, "keepnet.ip=dhcp")
	}
	if m.Gateway.IsValid() {
		args = append(args, "keepnet.gw="+m.Gateway.String())
	}
	for _, p := range m.IP6 {
		args = append(args, "keepnet.ip6="+p.String())
	}
	if m.Gateway6.IsValid() {
		args = append(args, "keepnet.gw6="+m.Gateway6.String())
	}
	if m.NoIPv6 {
		args = append(args, "keepnet.ipv6=off")
	}
	for _, n := range m.MoreNets {
		args = append(args, "keepnet.nic="+n.IP.String())
	}
	for _, r := range m.Routes {
		args = append(args, "keepnet.route="+r)
	}
	if m.DNS.IsValid() {
		args = append(args, "keepnet.dns="+m.DNS.String())
	}
	if m.VsockCID != 0 {
		args = append(args, "keepnet.ctl=vsock")
	}
	if m.SSHKeys != "" {
		args = append(args, "keepnet.sshkey="+m.SSHKeys)
	}
	if m.PFRules != "" {
		args = append(args, "keepnet.pfrules="+m.PFRules)
	}
	if m.Accel == "tcg" {
		// The guest's 2 s hang limit (boot/pid1) is a figure for a
		// machine that runs at hardware speed; TCG runs it ten to fifty
		// times slower, and on a loaded host a loop round took seconds.
		// --append keepnet.hang=... still wins: it comes later.
		args = append(args, "keepnet.hang="+TCGHang.String())
		// TCG runs AES instructions as helpers that work a byte at a
		// time, and Go hashes every map key with them when the CPU has
		// them (-cpu max does): without, Go's hash multiplies, which TCG
		// turns into the host's own. Under qemu-x86_64 a string-keyed
		// lookup took 186 ns with AES and 106 without, an integer one
		// 106 and 88. Both stacks' components get it, the Linux
		// baseline's applications too.
		args = append(args, "keepnet.godebug=cpu.aes=off")
	}
	if m.IOMMU {
		// Translation on, and not iommu=pt: passthrough would give
		// the kernel's own drivers an identity map, and the Linux
		// baseline would not pay for the IOMMU keepnet's driver pays for.
		args = append(args, "intel_iommu=on")
	}
	if m.Append != "" {
		args = append(args, m.Append)
	}
	return strings.Join(args, " ")
}

// TCGHang is the hang limit `keepnet up` gives a guest under TCG.
const TCGHang = 10 * time.Second

// Args is QEMU's command line (without the program name).
func (m Machine) Args() []string {
	a := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", m.machine(),
		"-cpu", cpuFor(m.Accel),
		"-smp", strconv.Itoa(m.SMP),
		"-m", strconv.Itoa(m.MemMiB),
	}
	if m.IOMMU {
		// Before every PCI device it translates for (QEMU's docs
		// require the order). intremap: interrupt remapping, which
		// the kernel wants for x2APIC and VFIO's MSI; caching-mode:
		// the guest reports every new mapping, which an emulated
		// IOMMU needs to see (and a VFIO device assigned from the host
		// would require).
		a = append(a, "-device", "intel-iommu,intremap=on,caching-mode=on")
	}
	if m.BootsImage() {
		a = append(a, m.imageArgs()...)
	} else {
		a = append(a, "-kernel", m.Kernel, "-initrd", m.Initrd, "-append", m.KernelCmdline())
	}
	if m.Console == "" {
		a = append(a, "-serial", "mon:stdio")
	} else {
		a = append(a, "-serial", "file:"+m.Console)
	}
	if m.VsockCID != 0 {
		a = append(a, "-device", fmt.Sprintf("vhost-vsock-pci,guest-cid=%d", m.VsockCID))
	} else {
		a = append(a,
			"-device", "virtio-serial-pci",
			"-chardev", "socket,id=ctl,path="+m.Ctl+",server=on,wait=off",
			"-device", "virtserialport,chardev=ctl,name="+PortName,
		)
	}
	for i, n := range append([]Net{m.Net}, m.MoreNets...) {
		a = append(a, n.args(i, m.Forwards)...)
		dev := fmt.Sprintf("%s,netdev=n%d,mac=%s", n.model(), i, NthMAC(m.MAC, i))
		switch {
		case m.PXE && i == 0:
			dev += ",bootindex=0" // its iPXE ROM boots the machine
		case m.BootsImage():
			// No iPXE option ROM: the firmware would offer the NIC
			// as a boot device and spend seconds starting it.
			dev += ",romfile="
		}
		a = append(a, "-device", dev)
	}
	if m.PIDFile != "" {
		a = append(a, "-pidfile", m.PIDFile)
	}
	return a
}

// machine is QEMU's -machine: the i440FX PC, or with an IOMMU the q35
// (Intel's VT-d model exists on q35 only), with the interrupt controller
// split (the IOAPIC in QEMU), which interrupt remapping requires under
// KVM; TCG takes the property and has no in-kernel irqchip either way.
func (m Machine) machine() string {
	if m.IOMMU {
		return "q35,kernel-irqchip=split,accel=" + m.Accel
	}
	return "pc,accel=" + m.Accel
}

// BootsImage reports whether the firmware boots a disk or CD image rather
// than QEMU loading Kernel and Initrd.
func (m Machine) BootsImage() bool { return m.Disk != "" || m.ISO != "" || m.PXE }

// imageArgs are the firmware and the drive of an image boot, first in the
// boot order (none for a PXE boot): a virtio disk, or a CD-ROM on an AHCI
// controller. Both are DMA devices: the firmware reads the kernel and
// initramfs through them several times faster than through IDE, whose
// every sector is port I/O that TCG emulates one word at a time (37 s to
// load the boot files through SeaBIOS's IDE on a busy host).
func (m Machine) imageArgs() []string {
	var a []string
	if m.Firmware == FirmwareUEFI {
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+m.VarsFile)
	}
	if m.PXE {
		return a
	}
	if m.Disk != "" {
		return append(a, "-drive", "if=none,id=boot,format=raw,snapshot=on,file="+m.Disk, "-device", "virtio-blk-pci,drive=boot,bootindex=0")
	}
	return append(a, "-drive", "if=none,id=boot,format=raw,media=cdrom,readonly=on,file="+m.ISO,
		"-device", "ahci,id=ahci", "-device", "ide-cd,bus=ahci.0,drive=boot,bootindex=0")
}

// args is the -netdev of NIC i; the first NIC's user networking forwards
// fwds.
func (n Net) args(i int, fwds []Forward) []string {
	id := "n" + strconv.Itoa(i)
	switch n.Kind {
	case "tap":
		return []string{"-netdev", "tap,id=" + id + ",ifname=" + n.Tap + ",script=no,downscript=no"}
	case "stream":
		// QEMU listens; the relay dials (and redials after a restart).
		return []string{"-netdev", "stream,id=" + id + ",server=on,addr.type=unix,addr.path=" + n.Path}
	}
	nd := "user,id=" + id
	if i > 0 {
		fwds = nil
	}
	for _, f := range fwds {
		nd += fmt.Sprintf(",hostfwd=%s:127.0.0.1:%d-:%d", f.Proto, f.HostPort, f.GuestPort)
	}
	return []string{"-netdev", nd}
}

// NthMAC is the MAC of NIC i: mac, the first NIC's, with i added to its
// last byte.
func NthMAC(mac string, i int) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || i == 0 {
		return mac // QEMU says what is wrong with it
	}
	hw[5] += byte(i)
	return hw.String()
}

func cpuFor(accel string) string {
	if accel == "kvm" {
		return "host"
	}
	return "max"
}
