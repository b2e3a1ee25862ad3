package bootimg

import (
	"os"
	"path/filepath"
)

// IPXEScript is pxe/keepnet.ipxe: iPXE fetches the kernel and initramfs
// beside it (relative URIs: TFTP or HTTP, whichever brought the script).
// A network boot has no ESP, so the configuration is on the command line:
// add keepnet.ip=, keepnet.gw=, keepnet.dns= (boot/pid1's Config) after
// the kernel's name. initrd= on the kernel line is for UEFI: an iPXE
// older than 2022 (Debian 12's) hands a kernel's EFI stub its initramfs
// only as a file the stub loads by that name; a BIOS boot ignores it.
func IPXEScript(cmdline string) string {
	return `#!ipxe
# keepnet by network (images/bootimg). A network boot has no configuration
# file: add keepnet.ip=CIDR keepnet.gw=ADDR keepnet.dns=ADDR ... to the
# kernel line.
kernel vmlinuz initrd=initramfs.zst ` + cmdline + `
initrd initramfs.zst
boot
`
}

// PXECmdline is Cmdline without keepnet.conf: a network boot has no file to look for.
const PXECmdline = "console=tty0 console=ttyS0,115200 panic=-1 tsc=reliable keepnet.stack=keepnet"

// DnsmasqConf is pxe/dnsmasq.conf, an example: a PXE ROM that is iPXE
// already (QEMU's, or after the chain load) gets the script; other BIOS
// ROMs get undionly.kpxe, UEFI ones snponly.efi, which are iPXE and come
// back for the script.
const DnsmasqConf = `# Serve keepnet by PXE with dnsmasq (images/bootimg): run
#   dnsmasq --conf-file=dnsmasq.conf --tftp-root=$PWD --dhcp-range=...
# from this directory (add interface= and dhcp-range= for your network).
enable-tftp
dhcp-match=set:ipxe,175
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:ipxe,keepnet.ipxe
dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi
dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe
`

// PXE writes o.Out/pxe/.
func PXE(o Options) error {
	dir := filepath.Join(o.Out, "pxe")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{o.Kernel: "vmlinuz", o.initrd(): "initramfs.zst"} {
		if err := copyFile(src, filepath.Join(dir, dst)); err != nil {
			return err
		}
	}
	for name, text := range map[string]string{"keepnet.ipxe": IPXEScript(PXECmdline), "dnsmasq.conf": DnsmasqConf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	// Debian's ipxe package, if there: the chain loaders for PXE ROMs
	// that are not iPXE. QEMU's NICs carry iPXE and need neither.
	for _, name := range []string{"undionly.kpxe", "snponly.efi"} {
		if _, err := os.Stat(filepath.Join(o.IPXEDir, name)); err == nil {
			if err := copyFile(filepath.Join(o.IPXEDir, name), filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}
