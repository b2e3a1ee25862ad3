// Command mkboot writes the boot images (see package images/bootimg):
// images/out/keepnet.img, images/out/keepnet.iso and images/out/pxe/, from
// the kernel and initramfs `make kernel image` left. `make images` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"keepnet/images/bootimg"
)

func main() {
	o := bootimg.DefaultOptions()
	flag.StringVar(&o.Kernel, "kernel", o.Kernel, "the kernel: a bzImage with an EFI stub")
	flag.StringVar(&o.Initrd, "initrd", o.Initrd, "the initramfs")
	flag.StringVar(&o.Out, "o", o.Out, "the directory keepnet.img, keepnet.iso and pxe/ go to")
	flag.StringVar(&o.Conf, "conf", "", "the configuration file the disk image and the ISO carry as "+bootimg.ConfPath+" (default: every setting commented out)")
	only := flag.String("only", "", "build only one of img, iso, pxe")
	flag.Parse()
	if err := run(o, *only); err != nil {
		fmt.Fprintln(os.Stderr, "mkboot:", err)
		os.Exit(1)
	}
}

func run(o bootimg.Options, only string) error {
	if err := bootimg.CheckTools(o); err != nil {
		return fmt.Errorf("%w (apt-get install grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools fdisk)", err)
	}
	tmp, err := os.MkdirTemp("", "keepnet-mkboot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	o.Tmp = tmp
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	if err := o.Compress(); err != nil {
		return err
	}
	ctx := context.Background()
	steps := []struct {
		name string
		do   func() error
	}{
		{"img", func() error { return bootimg.Disk(ctx, o) }},
		{"iso", func() error { return bootimg.ISO(ctx, o) }},
		{"pxe", func() error { return bootimg.PXE(o) }},
	}
	done := false
	for _, s := range steps {
		if only != "" && only != s.name {
			continue
		}
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		done = true
	}
	if !done {
		return fmt.Errorf("-only %q: want img, iso or pxe", only)
	}
	return nil
}
