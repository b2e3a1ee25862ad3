package bootimg

import (
	"context"
	"os"
	"path/filepath"
)

// ISO writes o.Out/keepnet.iso with grub-mkrescue, which builds GRUB's
// BIOS and UEFI images and has xorriso lay out a hybrid: El Torito boot
// entries for a CD (BIOS and EFI), and an MBR and GPT with the EFI image as
// a partition for a USB stick. The configuration file is in the ISO's own
// file system, where init looks for it as it does on the disk image's ESP;
// to change it, rebuild the ISO (cmd/mkboot -conf) or use keepnet.img.
func ISO(ctx context.Context, o Options) error {
	tree := filepath.Join(o.Tmp, "iso")
	if err := os.RemoveAll(tree); err != nil {
		return err
	}
	for _, d := range []string{"boot/grub", "keepnet"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return err
		}
	}
	conf, err := o.conf()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, "boot/grub/grub.cfg"), []byte(GrubConfig(Cmdline)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, ConfPath), conf, 0o644); err != nil {
		return err
	}
	// Copies: a symbolic link would go into the ISO as one.
	for src, dst := range map[string]string{o.Kernel: kernelPath, o.initrd(): initrdPath} {
		if err := copyFile(src, filepath.Join(tree, dst)); err != nil {
			return err
		}
	}
	out := filepath.Join(o.Out, "keepnet.iso")
	part := out + ".partial"
	defer os.Remove(part)
	if err := run(ctx, "grub-mkrescue", "-o", part, tree, "--", "-volid", ESPLabel); err != nil {
		return err
	}
	return os.Rename(part, out)
}
