// Package bootimg writes the images keepnet boots from outside QEMU's
// -kernel: a disk image for USB sticks, disks and hypervisors, a hybrid ISO
// and a directory for network boot, all from the one kernel
// (images/kernel) and initramfs (images/out/initramfs.cpio) `keepnet up`
// boots.
//
// It writes no boot loader: it drives what Debian packages. GRUB 2 boots
// every one of them, with one menu (GrubConfig) on BIOS and UEFI alike:
//
//	keepnet.img   GPT: partition 1 the BIOS boot partition holding GRUB's
//	              i386-pc core.img (grub-mkimage; the MBR code and the
//	              core's block list patched here, EmbedBIOSCore, which is
//	              what grub-bios-setup would do on a device), partition 2 the
//	              EFI system partition, FAT32 labelled KEEPNET (mtools'
//	              mformat and mcopy at an offset into the image):
//	                /EFI/BOOT/BOOTX64.EFI   GRUB for x86_64 UEFI (grub-mkimage)
//	                /boot/grub/grub.cfg     the menu
//	                /keepnet/vmlinuz        the kernel (Debian's, an EFI stub)
//	                /keepnet/initramfs.zst  the initramfs, zstd-compressed
//	                /keepnet/keepnet.conf   the configuration init reads
//	              The partition table is sfdisk's, on the image file.
//	keepnet.iso   grub-mkrescue (xorriso, mtools): El Torito for BIOS and
//	              UEFI on a CD, and an isohybrid MBR and GPT with an EFI
//	              partition for a USB stick; the same /boot/grub/grub.cfg
//	              and /keepnet/ tree.
//	pxe/          vmlinuz, initramfs.zst, keepnet.ipxe (the command line
//	              lives there: a network boot has no ESP), and iPXE's
//	              undionly.kpxe (BIOS) and snponly.efi (UEFI) for PXE ROMs
//	              that are not iPXE already, with dnsmasq.conf saying which
//	              client gets which.
//
// Nothing needs root or a loop device: the file systems are written by
// mtools and xorriso into files.
//
// The images carry the initramfs compressed with zstd (the kernel
// decompresses it; CONFIG_RD_ZSTD): a firmware reads it through its
// disk services, one emulated disk request at a time under QEMU, and the
// 57 MiB cpio took most of a boot; compressed it is 2.5 times smaller.
package bootimg

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Cmdline is the kernel command line of every image: the console on the
// screen and on the first serial port (the last console= is init's
// /dev/console), a panic reboots at once (an appliance should come back),
// tsc=reliable as under `keepnet up` (qemu.Machine.KernelCmdline says why),
// keepnet's own stack, and where init finds its configuration file
// (boot/pid1's keepnet.conf).
const Cmdline = "console=tty0 console=ttyS0,115200 panic=-1 tsc=reliable keepnet.stack=keepnet keepnet.conf=" + ConfPath

// ConfPath is where the configuration file lies on the ESP (and on the
// ISO's file system).
const ConfPath = "/keepnet/keepnet.conf"

// Paths of the kernel and initramfs inside the images.
const (
	kernelPath = "/keepnet/vmlinuz"
	initrdPath = "/keepnet/initramfs.zst"
)

// GrubConfig is the boot menu of the disk image and the ISO. GRUB talks on
// the screen and on the serial port, and boots keepnet after a second.
func GrubConfig(cmdline string) string {
	return `# keepnet's boot menu (images/bootimg), on BIOS and UEFI alike.
# The appliance's configuration is not here: see ` + ConfPath + `.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
menuentry "keepnet" {
	linux ` + kernelPath + ` ` + cmdline + `
	initrd ` + initrdPath + `
}
`
}

// DefaultConf is the configuration file the images carry: every setting
// commented out, so the appliance boots with its defaults until edited.
const DefaultConf = `# keepnet's configuration (boot/pid1, ParseConfFile). One setting a line,
# NAME=VALUE, the names of the keepnet.* kernel parameters; a parameter on
# the kernel command line wins over the same setting here.
#
# The first NIC's address, the default gateway and the DNS server:
#ip=192.168.1.2/24
#gw=192.168.1.1
#dns=192.168.1.1
#
# More NICs (e1000.1, e1000.2, ... in PCI order), each with its address:
#nic=10.78.0.1/24
#
# Which NICs to drive, by PCI address (lspci -D), the first NIC's first;
# without it the supported Intel NICs in PCI address order:
#nics=0000:02:00.0,0000:03:00.0
#
# The host name:
#hostname=keepnet
#
# SSH: one authorized key a line (starts the SSH server):
#authorized_key=ssh-ed25519 AAAAC3Nza... me@laptop
`

// Options are the inputs of a build.
type Options struct {
	Kernel string // a bzImage with an EFI stub (images/kernel/bzImage)
	Initrd string // images/out/initramfs.cpio
	Out    string // the directory keepnet.img, keepnet.iso and pxe/ go to
	Conf   string // the configuration file to carry; empty: DefaultConf
	// GrubDir is where grub-pc-bin and grub-efi-amd64-bin put their
	// modules (/usr/lib/grub).
	GrubDir string
	// IPXEDir holds Debian's ipxe binaries (/usr/lib/ipxe); when they are
	// missing pxe/ has only what QEMU's own iPXE ROM needs.
	IPXEDir string
	// Tmp is a directory for intermediate files.
	Tmp string
	// initrdZst is the compressed initramfs, once made (Compress).
	initrdZst string
}

// DefaultOptions are Debian's paths.
func DefaultOptions() Options {
	return Options{Kernel: "images/kernel/bzImage", Initrd: "images/out/initramfs.cpio", Out: "images/out",
		GrubDir: "/usr/lib/grub", IPXEDir: "/usr/lib/ipxe"}
}

// Tools are the programs a build runs, by Debian package.
var Tools = map[string]string{
	"grub-mkimage":  "grub-common (with grub-pc-bin and grub-efi-amd64-bin)",
	"grub-mkrescue": "grub-common (with grub-pc-bin and grub-efi-amd64-bin)",
	"xorriso":       "xorriso",
	"mformat":       "mtools",
	"mcopy":         "mtools",
	"sfdisk":        "fdisk",
}

// CheckTools says which packages are missing.
func CheckTools(o Options) error {
	var missing []string
	for tool, pkg := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" ("+pkg+")")
		}
	}
	for _, d := range []struct{ dir, pkg string }{{"i386-pc", "grub-pc-bin"}, {"x86_64-efi", "grub-efi-amd64-bin"}} {
		if _, err := os.Stat(filepath.Join(o.GrubDir, d.dir, "moddep.lst")); err != nil {
			missing = append(missing, filepath.Join(o.GrubDir, d.dir)+" ("+d.pkg+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

// conf is the configuration file's content.
func (o Options) conf() ([]byte, error) {
	if o.Conf == "" {
		return []byte(DefaultConf), nil
	}
	return os.ReadFile(o.Conf)
}

// run runs a tool, its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	return runIn(ctx, nil, name, args...)
}

func runIn(ctx context.Context, stdin []byte, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	// mtools reads ~/.mtoolsrc and warns about FAT geometry it dislikes;
	// neither belongs in a build.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Compress writes the zstd-compressed initramfs the images carry into
// o.Tmp; the builds after it use it.
func (o *Options) Compress() error {
	in, err := os.Open(o.Initrd)
	if err != nil {
		return err
	}
	defer in.Close()
	dst := filepath.Join(o.Tmp, "initramfs.zst")
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	// One goroutine: the same input gives the same bytes. The kernel
	// decompresses with a window of at most 8 MiB in view (the encoder's
	// default).
	zw, err := zstd.NewWriter(out, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		zw.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	o.initrdZst = dst
	return out.Close()
}

// initrd is the initramfs file the images carry: the compressed one when
// Compress has run, else the cpio as is (the kernel takes either).
func (o Options) initrd() string {
	if o.initrdZst != "" {
		return o.initrdZst
	}
	return o.Initrd
}

// copyFile copies src to dst.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}
