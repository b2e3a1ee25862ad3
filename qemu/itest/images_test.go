package itest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/images/bootimg"
)

// The boot images of `make images`, booted the way a machine boots them:
// by the firmware, from a disk, a CD-ROM or the network, no -kernel. Each
// test writes the appliance's configuration into the image's file (as a
// user would: mtools on the disk image, no root; for the ISO, a build with
// -conf; for PXE, the iPXE script's kernel line) — ip=dhcp, with dnsmasq
// as the namespace's DHCP server — and checks the appliance took it: a
// lease dnsmasq also lists, ready, ping, the status page, a 20 MB download
// with the right hash at the leased address (and on the disks, SSH with
// the key the file authorizes).

// imageConfDHCP is the configuration file the tests put on the images:
// the address from the namespace's DHCP server, its DNS server, a host
// name, and the hang limit `keepnet up` gives a guest under TCG on its
// command line (which an image boot does not have).
func imageConfDHCP(n *netns) string {
	return fmt.Sprintf("# written by qemu/itest\nip=dhcp\ndns=%s\nhostname=itest\nhang=%s\n", n.HostIP, "10s")
}

// requireImages fails unless make images has run and its tools are here.
func requireImages(t *testing.T) {
	t.Helper()
	requireITest(t, true)
	for _, f := range []string{"images/out/keepnet.img", "images/out/keepnet.iso"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Fatalf("%s missing: run 'make images' first", f)
		}
	}
	if err := bootimg.CheckTools(bootimg.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
}

func TestBootDiskUEFI(t *testing.T) { bootDisk(t, "uefi") }
func TestBootDiskBIOS(t *testing.T) { bootDisk(t, "bios") }

// bootDisk boots a copy of keepnet.img with its configuration file
// rewritten by mcopy: ip=dhcp, with dnsmasq as the namespace's DHCP server
// (issue 17's acceptance: a lease, then the status page and a download at
// the leased address).
func bootDisk(t *testing.T, firmware string) {
	requireImages(t)
	if firmware == "uefi" {
		if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
			t.Fatal("OVMF missing: apt-get install ovmf")
		}
	}
	n := newNetns(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "keepnet.img")
	run(t, "cp", "--sparse=always", filepath.Join(root, "images/out/keepnet.img"), img)
	// An SSH key in the file too, one authorized_key line.
	key := filepath.Join(dir, "id")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "keepnet.conf")
	leases, _ := n.dhcpServer(t)
	if err := os.WriteFile(conf, []byte(imageConfDHCP(n)+"authorized_key="+string(pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mcopy", "-o", "-i", img+"@@"+strconv.Itoa(bootimg.ESPOffset), conf, "::"+bootimg.ConfPath)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, out)
	}
	a := boot(t, n.Name, "--net", "tap:"+n.Tap, "--disk", img, "--firmware", firmware)
	n.GuestIP = leasedAddr(t, a, leases)
	checkImageBoot(t, a, n, true)
	if out, err := n.ssh(t, key, "echo hello"); err != nil || out != "hello\n" {
		t.Errorf("ssh with the file's key: echo hello = %q, %v; want hello", out, err)
	}
}

// TestBootISO boots keepnet.iso, built with the test's configuration file,
// as a CD-ROM with SeaBIOS. (The same ISO boots with OVMF: --firmware uefi.)
func TestBootISO(t *testing.T) {
	requireImages(t)
	n := newNetns(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepnet.conf")
	if err := os.WriteFile(conf, []byte(imageConfDHCP(n)), 0o644); err != nil {
		t.Fatal(err)
	}
	leases, _ := n.dhcpServer(t)
	o := bootimg.DefaultOptions()
	o.Kernel, o.Initrd = filepath.Join(root, o.Kernel), filepath.Join(root, o.Initrd)
	o.Out, o.Conf, o.Tmp = dir, conf, dir
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := o.Compress(); err != nil {
		t.Fatal(err)
	}
	if err := bootimg.ISO(ctx, o); err != nil {
		t.Fatal(err)
	}
	a := boot(t, n.Name, "--net", "tap:"+n.Tap, "--iso", filepath.Join(dir, "keepnet.iso"))
	n.GuestIP = leasedAddr(t, a, leases)
	checkImageBoot(t, a, n, true)
}

// leasedAddr is the address a's ip holds from the namespace's DHCP
// server, checked against the server's lease file.
func leasedAddr(t *testing.T, a *appliance, leases string) string {
	t.Helper()
	st := a.waitStats("ip", func(m map[string]any) bool { s, _ := dhcpState(m); return s == "bound" })
	_, lease := dhcpState(st)
	p, err := netip.ParsePrefix(lease)
	if err != nil {
		t.Fatalf("ip's DHCP lease %q: %v", lease, err)
	}
	// The firmware of a network boot may have had a lease of its own
	// (another client identifier): one of the MAC's must be ip's.
	b, _ := os.ReadFile(leases)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == "52:54:00:12:34:56" && f[2] == p.Addr().String() {
			return p.Addr().String()
		}
	}
	t.Fatalf("dnsmasq's leases do not give ip's %v to 52:54:00:12:34:56:\n%s", p, b)
	return ""
}

// checkImageBoot checks an appliance booted from an image serves at the
// address its configuration gave it (from the image's file, with conf).
func checkImageBoot(t *testing.T, a *appliance, n *netns, conf bool) {
	console, _ := os.ReadFile(a.console)
	// Where the time went: the firmware, the boot loader and loading the
	// kernel and initramfs, then the kernel to ready (init says), and
	// init's search for its configuration file within that.
	for _, line := range strings.Split(string(console), "\n") {
		if strings.Contains(line, "init: configuration ") || strings.Contains(line, "init: keepnet ready") {
			t.Logf("console: %s", strings.TrimSpace(line))
		}
	}
	t.Logf("QEMU start to ready: %v", a.ready)
	if conf && !strings.Contains(string(console), "configuration "+bootimg.ConfPath+" from ") {
		t.Errorf("the console does not say init read %s:\n%s", bootimg.ConfPath, tail(string(console), 60))
	}
	want := fmt.Sprintf("address %s/%d", n.GuestIP, n.Prefix)
	if strings.Contains(string(console), "address by DHCP") {
		want = "dhcp: leased " + n.GuestIP + "/"
	}
	if !strings.Contains(string(console), want) {
		t.Errorf("the console does not say %q", want)
	}
	if st := a.status(); !st.Ready || st.Stack != "keepnet" {
		t.Errorf("status: ready %v, stack %q; want ready on the keepnet stack", st.Ready, st.Stack)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := n.exec(ctx, nil, "ping", "-c", "3", "-W", "5", n.GuestIP); err != nil {
		t.Errorf("ping %s: %v\n%s", n.GuestIP, err, out)
	}
	page, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--retry", "3", "--max-time", "30", "http://"+n.GuestIP+"/status.json")
	if err != nil || !strings.Contains(string(page), `"stack"`) {
		t.Errorf("the status page at %s: %v\n%s", n.GuestIP, err, page)
	}
	size := imageDownloadBytes(t)
	rate := httpDownload(t, n, size, 17, floorMbps)
	t.Logf("%d MB download: %.0f Mbit/s", size/1e6, rate)
}

// imageDownloadBytes is how much checkImageBoot downloads: 20 MB, or
// KEEPNET_IMAGE_BYTES (issue 17's acceptance asks for 1 GB per boot path;
// make test keeps to 20 MB: KEEPNET_IMAGE_BYTES=1000000000 make matrix).
func imageDownloadBytes(t *testing.T) int64 {
	s := os.Getenv("KEEPNET_IMAGE_BYTES")
	if s == "" {
		return 20_000_000
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("KEEPNET_IMAGE_BYTES=%q: want a number of bytes", s)
	}
	return n
}

// TestBootPXE boots from the network: QEMU's e1000 ROM (iPXE) asks
// dnsmasq in the namespace for an address and a boot file, and gets
// pxe/'s keepnet.ipxe, whose kernel line carries the address (a network
// boot has no configuration file), then the kernel and initramfs by TFTP.
func TestBootPXE(t *testing.T) {
	requireImages(t)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq not installed (make deps installs dnsmasq-base)")
	}
	n := newNetns(t)
	tftp := t.TempDir()
	for _, f := range []string{"vmlinuz", "initramfs.zst"} {
		if err := os.Link(filepath.Join(root, "images/out/pxe", f), filepath.Join(tftp, f)); err != nil {
			run(t, "cp", filepath.Join(root, "images/out/pxe", f), filepath.Join(tftp, f))
		}
	}
	cmdline := fmt.Sprintf("%s keepnet.ip=dhcp keepnet.dns=%s keepnet.hang=10s", bootimg.PXECmdline, n.HostIP)
	if err := os.WriteFile(filepath.Join(tftp, "keepnet.ipxe"), []byte(bootimg.IPXEScript(cmdline)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--port=0", "--interface="+n.Tap, "--bind-interfaces", "--pid-file=", "--user=root", "--log-facility=-",
		"--dhcp-range=10.77.0.100,10.77.0.150,1h", "--dhcp-leasefile="+filepath.Join(tftp, "leases"),
		"--dhcp-boot=keepnet.ipxe", "--enable-tftp", "--tftp-root="+tftp)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", tail(log.String(), 40))
		}
	})
	a := boot(t, n.Name, "--net", "tap:"+n.Tap, "--pxe")
	n.GuestIP = leasedAddr(t, a, filepath.Join(tftp, "leases")) // the firmware's lease and keepnet's: one client, one address
	checkImageBoot(t, a, n, false)
}
