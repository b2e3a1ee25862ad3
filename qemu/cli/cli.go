// Package cli is the host command `keepnet`: boot the appliance, ask it for
// its status, kill or restart its components, inject faults into them, power
// it off.
package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"keepnet/boot/ctl"
	"keepnet/qemu"
	"keepnet/servers/ip"
)

const usage = `usage: keepnet COMMAND [flags]

commands:
  up        boot the appliance (foreground, or --detach); --disk or --iso
            boots an image of make images through the firmware
            (--firmware bios or uefi), --pxe the network
  status    the appliance's components and NICs as tables (CPU % and
            rates over --interval); --json: the status as JSON, for scripts
  top       the status tables again every second, until Ctrl-C
  events    what happened: starts, crashes, hangs, restarts with their
            reason and recovery time, device resets, fault injections
            (-f: follow; --json: one object a line)
  logs      the last lines a component printed: keepnet logs [NAME] [-f]
            [-n N] (no NAME: every component's, init's and the
            supervisor's, merged)
  kill      SIGKILL a component (the supervisor restarts it); --signal STOP
            stops it instead, and hang detection restarts it
  restart   restart a component
  stats     print a component's counters as JSON
  profile   take a CPU profile of a component (go tool pprof reads it)
  trace     record the guest scheduler's switches, wake-ups and
            interrupts for a few seconds (--seconds, -o FILE: the
            kernel's text) and print per program how often it ran, for
            how long, and how long it waited once woken
  hook      run a test hook in a component: keepnet hook NAME HOOK (spin,
            deadlock; the driver's stop-tx, stop-rx); needs an appliance
            booted with --append keepnet.testhooks=1
  inject    arm a fault site in a component: keepnet inject NAME --site ID
            or --type T (one of that type, chosen by --seed), firing on the
            first hit, --after N or --prob P; --disarm NAME disarms. Needs
            a faulty image (make image-faulty: up --initrd
            images/out/initramfs-faulty.cpio; images/out/sites.json
            lists its sites), except --sigkill NAME and --sigstop NAME
  campaign  a fault-injection campaign: boot the appliance in a namespace
            of its own, keep a workload running, inject faults one at a
            time (fault sites of the faulty image, or --sigkill-only) and
            report what each did (report.md: the paper's Tables III, IV)
  pf        the packet filter: keepnet pf load FILE (put a rule set in
            force; a bad one is refused with its line, and the rules in
            force stay), keepnet pf rules (with their counters), keepnet
            pf states. Needs an appliance booted with --pf-rules FILE
  down      power the appliance off

'keepnet COMMAND -h' lists a command's flags.
`

// Main runs the command line args (without the program name) and returns the
// process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "up":
		err = up(ctx, args[1:], stdout, stderr)
	case "status":
		err = status(ctx, args[1:], stdout, stderr)
	case "top":
		err = top(ctx, args[1:], stdout, stderr)
	case "events":
		err = events(ctx, args[1:], stdout, stderr)
	case "logs":
		err = logs(ctx, args[1:], stdout, stderr)
	case "kill", "restart", "stats", "hook":
		err = component(ctx, args[0], args[1:], stdout, stderr)
	case "inject":
		err = inject(ctx, args[1:], stdout, stderr)
	case "profile":
		err = profileCmd(ctx, args[1:], stdout, stderr)
	case "trace":
		err = traceCmd(ctx, args[1:], stdout, stderr)
	case "pf":
		err = pfCmd(ctx, args[1:], stdout, stderr)
	case "down":
		err = down(ctx, args[1:], stdout, stderr)
	case "campaign":
		err = campaignCmd(ctx, args[1:], stdout, stderr)
	case "campaign-worker": // not in the usage: a campaign runs it
		err = campaignWorker(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "keepnet: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "keepnet %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "keepnet %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// DefaultCtl is the control channel path when --ctl is not given: in a
// directory only its user may enter ($XDG_RUNTIME_DIR/keepnet, else
// /run/keepnet-UID), since whoever reaches the socket may kill components
// and power the appliance off.
func DefaultCtl() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "keepnet", "ctl.sock")
	}
	return filepath.Join("/run", fmt.Sprintf("keepnet-%d", os.Getuid()), "ctl.sock")
}

// privateDir creates dir (mode 0700) or checks that it exists, belongs to
// us and lets nobody else in.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control channel directory: %w (set XDG_RUNTIME_DIR or give --ctl)", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("control channel directory %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("control channel directory %s belongs to someone else", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("control channel directory %s is open to others (mode %v): chmod 700 it", dir, fi.Mode().Perm())
	}
	return nil
}

// repoRoot is where images/ lives: next to the bin/ holding this program,
// else the working directory.
func repoRoot() string {
	if exe, err := os.Executable(); err == nil {
		root := filepath.Dir(filepath.Dir(exe))
		if _, err := os.Stat(filepath.Join(root, "images")); err == nil {
			return root
		}
	}
	wd, _ := os.Getwd()
	return wd
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("keepnet "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// maxNICs is how many NICs the appliance drives (boot/pid1.MaxNICs).
const maxNICs = 4

func up(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := repoRoot()
	fs := newFlags("up", stderr)
	var nets []qemu.Net
	fs.Func("net", "a NIC's network: user (QEMU's user networking, the default), tap:IFNAME, or stream:PATH (QEMU listens on PATH for a frame relay: keepnet-relay -qemu-dial PATH), then ,ip=ADDRESS/PREFIX (the first NIC's replaces --ip; every other NIC needs one); repeat for more NICs (e1000.0, e1000.1...), forwarded between unless --append keepnet.forward=off", func(v string) error {
		n, err := qemu.ParseNet(v)
		nets = append(nets, n)
		return err
	})
	var routes []string
	fs.Func("route", "a static route, PREFIX,via=GATEWAY (e.g. 10.90.0.0/16,via=10.78.0.2); repeat for more", func(v string) error {
		if _, err := ip.ParseRoute(v); err != nil {
			return err
		}
		routes = append(routes, v)
		return nil
	})
	fwdFlag := fs.String("fwd", "", "with --net user: host ports to forward, tcp:HOSTPORT:GUESTPORT,... (default tcp:8080:80)")
	ipFlag := fs.String("ip", "10.0.2.15/24", "the appliance's address, or dhcp (from a DHCP server on the first --net)")
	gwFlag := fs.String("gw", "10.0.2.2", "default gateway")
	var ip6 []netip.Prefix
	fs.Func("ip6", "an IPv6 address of the first NIC with prefix length, e.g. fd00:78::15/64; repeat for more (the link-local address and SLAAC need none)", func(v string) error {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() {
			return errors.New("want a global or unique-local IPv6 address with prefix length")
		}
		ip6 = append(ip6, p)
		return nil
	})
	gw6Flag := fs.String("gw6", "", "IPv6 default router, when none advertises itself")
	ipv6Flag := fs.Bool("ipv6", true, "IPv6 on keepnet's stack (link-local, SLAAC, --ip6)")
	dnsFlag := fs.String("dns", "10.0.2.3", "DNS server")
	stack := fs.String("stack", "keepnet", "network stack: keepnet (its own driver, IP, UDP, TCP) or linux (the kernel's, the baseline)")
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path on the host")
	accel := fs.String("accel", "auto", "auto, kvm or tcg (auto uses KVM only if a probe guest really runs)")
	smp := fs.Int("smp", 2, "virtual CPUs")
	mem := fs.Int("mem", 1024, "memory in MiB")
	console := fs.String("console", "", "write the serial console to FILE (default: the terminal; with --detach, CTL.console)")
	detach := fs.Bool("detach", false, "return once the appliance is ready, leaving QEMU running")
	timeout := fs.Duration("timeout", 90*time.Second, "with --detach: how long to wait for ready")
	kernel := fs.String("kernel", defaultKernel(root), "guest kernel: a PVH vmlinux (fast to boot) or a bzImage")
	initrd := fs.String("initrd", filepath.Join(root, "images/out/initramfs.cpio"), "initramfs")
	mac := fs.String("mac", "52:54:00:12:34:56", "the NIC's MAC address")
	appendFlag := fs.String("append", "", "extra kernel command line")
	authKeys := fs.String("authorized-keys", "", "start the appliance's SSH server, accepting the public keys in FILE (authorized_keys format)")
	pfRules := fs.String("pf-rules", "", "filter with the packet filter rule set in FILE (servers/pf's language; on --stack linux the same rules in nf_tables); without it there is no packet filter")
	disk := fs.String("disk", "", "boot this disk image (make images: images/out/keepnet.img) through the firmware instead of --kernel and --initrd; the appliance's configuration is the image's")
	iso := fs.String("iso", "", "boot this ISO image (images/out/keepnet.iso) from a CD-ROM drive, as --disk")
	pxe := fs.Bool("pxe", false, "boot from the network through the first NIC's iPXE ROM (a DHCP and TFTP server there serves images/out/pxe/, as its dnsmasq.conf says); configuration on keepnet.ipxe's kernel line")
	firmware := fs.String("firmware", qemu.FirmwareBIOS, "with --disk or --iso: bios (SeaBIOS) or uefi (OVMF, Debian's ovmf)")
	nicModel := fs.String("nic", qemu.DefaultNIC, "the Intel gigabit NIC QEMU emulates: "+strings.Join(qemu.NICModels, ", ")+" (a --net's own ,nic=MODEL wins)")
	iommu := fs.Bool("iommu", false, "give the guest an emulated Intel IOMMU (machine q35, intel-iommu, intel_iommu=on): keepnet's driver takes its NICs through VFIO, its device reaching only its own pools and rings")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := qemu.CheckNIC(*nicModel); err != nil {
		return usageError{fmt.Errorf("--nic: %w", err)}
	}
	if err := checkImageFlags(fs, *disk, *iso, *pxe, *firmware); err != nil {
		return usageError{err}
	}

	if *ctlPath == DefaultCtl() {
		if err := privateDir(filepath.Dir(*ctlPath)); err != nil {
			return err
		}
	}
	m := qemu.Machine{
		Kernel: *kernel, Initrd: *initrd, SMP: *smp, MemMiB: *mem, MAC: *mac,
		Stack: *stack, Ctl: *ctlPath, Console: *console, Append: *appendFlag,
		PIDFile: *ctlPath + ".pid",
		Disk:    *disk, ISO: *iso, PXE: *pxe, Firmware: *firmware, VarsFile: qemu.VarsFileFor(*ctlPath),
		IOMMU: *iommu,
	}
	if len(nets) == 0 {
		nets = []qemu.Net{{Kind: "user"}}
	}
	if len(nets) > maxNICs {
		return usageError{fmt.Errorf("--net given %d times: at most %d NICs", len(nets), maxNICs)}
	}
	for i := range nets {
		if nets[i].Model == "" {
			nets[i].Model = *nicModel
		}
	}
	m.Net, m.MoreNets, m.Routes = nets[0], nets[1:], routes
	for i, n := range m.MoreNets {
		if !n.IP.IsValid() && !m.BootsImage() {
			return usageError{fmt.Errorf("--net number %d needs its address: ,ip=ADDRESS/PREFIX", i+2)}
		}
	}
	var err error
	fwd := *fwdFlag
	if fwd == "" && m.Net.Kind == "user" {
		fwd = "tcp:8080:80"
	}
	if m.Forwards, err = qemu.ParseForwards(fwd); err != nil {
		return usageError{err}
	}
	if m.Net.Kind != "user" && len(m.Forwards) > 0 {
		return usageError{errors.New("--fwd works only with --net user")}
	}
	if *ipFlag == "dhcp" {
		m.DHCP = true
	} else if m.IP, err = netip.ParsePrefix(*ipFlag); err != nil || !m.IP.Addr().Is4() {
		return usageError{fmt.Errorf("--ip %q: want an IPv4 address with prefix length, or dhcp", *ipFlag)}
	}
	if m.Net.IP.IsValid() {
		m.IP = m.Net.IP
	}
	gwSet := false
	fs.Visit(func(f *flag.Flag) { gwSet = gwSet || f.Name == "gw" })
	if !gwSet && !m.IP.Contains(m.Gateway) {
		m.Gateway = netip.Addr{} // the default gateway is QEMU user networking's: not on this network
	}
	if m.Gateway, err = netip.ParseAddr(*gwFlag); err != nil {
		return usageError{fmt.Errorf("--gw %q: want an IPv4 address", *gwFlag)}
	}
	if m.DHCP {
		if m.Net.IP.IsValid() || len(m.MoreNets) > 0 || len(m.Routes) > 0 {
			return usageError{errors.New("--ip dhcp: one --net without ip=, and no --route")}
		}
		m.Gateway = netip.Addr{} // the server's router
	}
	m.IP6, m.NoIPv6 = ip6, !*ipv6Flag
	if *gw6Flag != "" {
		if m.Gateway6, err = netip.ParseAddr(*gw6Flag); err != nil || !m.Gateway6.Is6() || m.Gateway6.IsMulticast() {
			return usageError{fmt.Errorf("--gw6 %q: want an IPv6 unicast address", *gw6Flag)}
		}
	}
	if m.DNS, err = netip.ParseAddr(*dnsFlag); err != nil {
		return usageError{fmt.Errorf("--dns %q: want an IPv4 address", *dnsFlag)}
	}
	if *stack != "keepnet" && *stack != "linux" {
		return usageError{fmt.Errorf("--stack %q: want keepnet or linux", *stack)}
	}
	if *accel != "auto" && *accel != "kvm" && *accel != "tcg" {
		return usageError{fmt.Errorf("--accel %q: want auto, kvm or tcg", *accel)}
	}
	if *smp < 1 || *mem < 128 {
		return usageError{errors.New("--smp must be at least 1 and --mem at least 128")}
	}
	if *authKeys != "" {
		if m.SSHKeys, err = readAuthorizedKeys(*authKeys); err != nil {
			return usageError{err}
		}
	}
	if *pfRules != "" {
		if m.PFRules, err = readPFRules(*pfRules); err != nil {
			return usageError{err}
		}
	}
	if m.QEMU, err = exec.LookPath("qemu-system-x86_64"); err != nil {
		return errors.New("qemu-system-x86_64 not found; install it (Debian/Ubuntu: apt-get install qemu-system-x86)")
	}
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil && !m.BootsImage() {
		// (An image's command line does not say keepnet.ctl=vsock: it
		// talks over virtio-serial.)
		m.VsockCID = uint32(3 + os.Getpid()%100000)
	}
	var why string
	m.Accel, why = qemu.ChooseAccel(ctx, m.QEMU, *accel)
	fmt.Fprintf(stderr, "keepnet: accelerator %s (%s)\n", m.Accel, why)

	if !*detach {
		if m.VsockCID != 0 {
			if err := writeVsockFile(m); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "keepnet: booting the %s stack; control channel %s; quit with Ctrl-A X\n", m.Stack, m.Ctl)
		for _, f := range m.Forwards {
			if f.Proto == "tcp" && f.GuestPort == 80 {
				fmt.Fprintf(stderr, "keepnet: the status page will be at http://127.0.0.1:%d/\n", f.HostPort)
			}
		}
		return m.Run(ctx)
	}
	if m.Console == "" {
		m.Console = m.Ctl + ".console"
	}
	if m.VsockCID != 0 {
		if err := writeVsockFile(m); err != nil {
			return err
		}
	}
	s, err := m.Start(ctx, *timeout, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keepnet: ready in %.1fs (qemu pid %d, %s stack, %s); console %s; control %s\n",
		s.Elapsed.Seconds(), s.PID, s.Status.Stack, m.Accel, m.Console, m.Ctl)
	return nil
}

// defaultKernel prefers the uncompressed vmlinux `make kernel` extracts:
// QEMU boots it through PVH without the bzImage's slow self-decompression.
func defaultKernel(root string) string {
	v := filepath.Join(root, "images/kernel/vmlinux")
	if _, err := os.Stat(v); err == nil {
		return v
	}
	return filepath.Join(root, "images/kernel/bzImage")
}

// readAuthorizedKeys checks an authorized_keys file and encodes it for the
// kernel command line (whose whole length x86 limits to 2048 bytes).
func readAuthorizedKeys(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--authorized-keys: %w", err)
	}
	rest, n := b, 0
	for len(strings.TrimSpace(string(rest))) > 0 {
		if _, _, _, rest, err = ssh.ParseAuthorizedKey(rest); err != nil {
			return "", fmt.Errorf("--authorized-keys %s: %w", path, err)
		}
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("--authorized-keys %s: no key in it", path)
	}
	enc := base64.StdEncoding.EncodeToString(b)
	if len(enc) > 1200 {
		return "", fmt.Errorf("--authorized-keys %s: %d keys are too long for the kernel command line; give fewer (ed25519 keys are short)", path, n)
	}
	return enc, nil
}

// writeVsockFile leaves the guest's vsock address where --ctl points.
func writeVsockFile(m qemu.Machine) error {
	if err := os.MkdirAll(filepath.Dir(m.Ctl), 0o700); err != nil {
		return err
	}
	return os.WriteFile(m.Ctl, []byte(fmt.Sprintf("vsock:%d\n", m.VsockCID)), 0o644)
}

func component(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(verb, stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	var signal *string
	if verb == ctl.VerbKill {
		signal = fs.String("signal", "KILL", "the signal to send, by name (STOP, CONT, TERM...) or number")
	}
	// The component name (and a hook's name) may come before, between or
	// after the flags.
	words, err := parseWords(fs, args)
	if err != nil {
		return err
	}
	req := ctl.Request{Verb: verb}
	want, use := 1, fmt.Sprintf("usage: keepnet %s NAME [--ctl PATH]", verb)
	if verb == ctl.VerbHook {
		want, use = 2, "usage: keepnet hook NAME HOOK [--ctl PATH]"
	}
	if len(words) > want {
		return usageError{fmt.Errorf("unexpected argument %q", words[want])}
	}
	if len(words) < want {
		return usageError{errors.New(use)}
	}
	req.Name = words[0]
	if verb == ctl.VerbHook {
		req.Hook = words[1]
	}
	if signal != nil {
		if _, err := ctl.ParseSignal(*signal); err != nil {
			return usageError{err}
		}
		req.Signal = *signal
	}
	name := req.Name
	resp, err := ctl.Do(ctx, *ctlPath, req)
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if verb == ctl.VerbStats {
		fmt.Fprintln(stdout, string(resp.Stats))
		return nil
	}
	fmt.Fprintf(stdout, "keepnet: %s %s: done\n", verb, name)
	return nil
}

// parseWords parses args with fs, allowing words (a component's name, a
// hook's) before, between and after the flags, and returns the words.
func parseWords(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			words, args = append(words, args[0]), args[1:]
		}
		if len(args) == 0 {
			return words, nil
		}
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == len(args) { // "-" is a word to flag, not a flag
			words, rest = append(words, rest[0]), rest[1:]
		}
		args = rest
	}
}

// profileCmd takes a CPU profile of one component for --seconds and writes
// it to -o.
func profileCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("profile", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	secs := fs.Int("seconds", 5, fmt.Sprintf("how long to profile (1-%d); the control channel answers nothing else meanwhile", ctl.MaxProfileSeconds))
	out := fs.String("o", "", "where to write the profile (default NAME.pprof)")
	words, err := parseWords(fs, args) // NAME before or after the flags, as keepnet stats takes it
	if err != nil {
		return err
	}
	if len(words) != 1 {
		return usageError{fmt.Errorf("usage: keepnet profile NAME [--seconds N] [-o FILE] [--ctl PATH]")}
	}
	name := words[0]
	if *secs < 1 || *secs > ctl.MaxProfileSeconds {
		return usageError{fmt.Errorf("--seconds %d: want 1 to %d", *secs, ctl.MaxProfileSeconds)}
	}
	if *out == "" {
		*out = name + ".pprof"
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(*secs)*time.Second+30*time.Second)
	defer cancel()
	fmt.Fprintf(stderr, "keepnet: profiling %s for %ds\n", name, *secs)
	resp, err := ctl.Do(ctx, *ctlPath, ctl.Request{Verb: ctl.VerbProfile, Name: name, Seconds: *secs})
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if err := os.WriteFile(*out, resp.Profile, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keepnet: %s: %d bytes; go tool pprof -top %s\n", *out, len(resp.Profile), *out)
	return nil
}

func down(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("down", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the appliance to power off")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := qemu.Down(ctx, *ctlPath, *ctlPath+".pid", *timeout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "keepnet: powered off")
	return nil
}

// cmdlineFlags are the `keepnet up` flags that go on the kernel command
// line, which an image boot (--disk, --iso) does not set: its boot loader
// does, and the appliance reads the rest from the image's configuration
// file.
var cmdlineFlags = []string{"ip", "gw", "ip6", "gw6", "ipv6", "dns", "route", "stack", "append", "authorized-keys", "pf-rules", "kernel", "initrd"}

// checkImageFlags refuses an image boot (--disk, --iso, --pxe) asked for
// with flags it cannot honour, and a firmware without an image.
func checkImageFlags(fs *flag.FlagSet, disk, iso string, pxe bool, firmware string) error {
	if (disk != "" && iso != "") || (pxe && (disk != "" || iso != "")) {
		return errors.New("--disk, --iso and --pxe: give one")
	}
	if pxe {
		disk = "(network)" // an image boot like the others from here
	}
	if firmware != qemu.FirmwareBIOS && firmware != qemu.FirmwareUEFI {
		return fmt.Errorf("--firmware %q: want %s or %s", firmware, qemu.FirmwareBIOS, qemu.FirmwareUEFI)
	}
	var set []string
	firmwareSet := false
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(cmdlineFlags, f.Name) {
			set = append(set, "--"+f.Name)
		}
		firmwareSet = firmwareSet || f.Name == "firmware"
	})
	if disk == "" && iso == "" {
		if firmwareSet {
			return errors.New("--firmware boots an image: give --disk or --iso")
		}
		return nil
	}
	if len(set) > 0 {
		return fmt.Errorf("%s: an image boot takes its kernel command line from the image and its configuration from the image's keepnet.conf (README, \"Boot images\")", strings.Join(set, ", "))
	}
	return nil
}
