package bootimg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// GRUB modules in the core images; grub-mkimage adds what they depend on.
// normal reads grub.cfg; linux boots a bzImage (through the EFI handover on
// UEFI); serial and terminal give the menu on ttyS0 as well as the screen.
var (
	grubCommon = []string{"part_gpt", "part_msdos", "fat", "iso9660", "normal", "linux", "configfile", "echo", "search", "serial", "terminal", "test", "boot"}
	grubBIOS   = append([]string{"biosdisk"}, grubCommon...)
	grubEFI    = append([]string{"efi_gop", "efi_uga", "all_video"}, grubCommon...)
)

// The disk image's layout, in 512-byte sectors: everything aligned to 1 MiB.
const (
	mib          = 1 << 20
	sectorsMiB   = mib / sectorSize
	biosBootLBA  = 1 * sectorsMiB // partition 1: GRUB's core.img
	biosBootSize = 1 * sectorsMiB // core.img must fit here
	espLBA       = biosBootLBA + biosBootSize
	// minESPMiB keeps the ESP FAT32 with one-sector clusters (at least
	// 65525 clusters), the file system UEFI's specification names.
	minESPMiB = 40
	// espSlackMiB is room on the ESP beyond the files: for what a user
	// adds (rules, keys) and for a larger initramfs written over the old.
	espSlackMiB = 16
)

// Partition type GUIDs.
const (
	typeBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
	typeESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
)

// ESPLabel is the FAT volume label of the ESP and the ISO's volume id.
const ESPLabel = "KEEPNET"

// ESPOffset is the byte offset of the disk image's ESP, for mtools
// (mcopy -i keepnet.img@@ESPOffset).
const ESPOffset = espLBA * sectorSize

// Disk writes o.Out/keepnet.img.
func Disk(ctx context.Context, o Options) error {
	tmp := filepath.Join(o.Tmp, "disk")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	core, efi := filepath.Join(tmp, "core.img"), filepath.Join(tmp, "bootx64.efi")
	// The BIOS core finds its grub.cfg on the ESP of the disk it was
	// loaded from ("(,gpt2)": the BIOS's boot drive); the UEFI one on the
	// partition it was loaded from.
	if err := run(ctx, "grub-mkimage", append([]string{"-d", filepath.Join(o.GrubDir, "i386-pc"), "-O", "i386-pc", "-o", core, "-p", "(,gpt2)/boot/grub"}, grubBIOS...)...); err != nil {
		return err
	}
	if err := run(ctx, "grub-mkimage", append([]string{"-d", filepath.Join(o.GrubDir, "x86_64-efi"), "-O", "x86_64-efi", "-o", efi, "-p", "/boot/grub"}, grubEFI...)...); err != nil {
		return err
	}
	cfg := filepath.Join(tmp, "grub.cfg")
	if err := os.WriteFile(cfg, []byte(GrubConfig(Cmdline)), 0o644); err != nil {
		return err
	}
	confText, err := o.conf()
	if err != nil {
		return err
	}
	conf := filepath.Join(tmp, "keepnet.conf")
	if err := os.WriteFile(conf, confText, 0o644); err != nil {
		return err
	}
	files := []struct{ src, dst string }{
		{efi, "/EFI/BOOT/BOOTX64.EFI"},
		{cfg, "/boot/grub/grub.cfg"},
		{o.Kernel, kernelPath},
		{o.initrd(), initrdPath},
		{conf, ConfPath},
	}
	var bytes int64
	for _, f := range files {
		fi, err := os.Stat(f.src)
		if err != nil {
			return err
		}
		bytes += fi.Size()
	}
	coreImg, err := os.ReadFile(core)
	if err != nil {
		return err
	}
	if len(coreImg) > biosBootSize*sectorSize {
		return fmt.Errorf("GRUB's core.img is %d bytes, more than the %d-byte BIOS boot partition", len(coreImg), biosBootSize*sectorSize)
	}
	bootImg, err := os.ReadFile(filepath.Join(o.GrubDir, "i386-pc", "boot.img"))
	if err != nil {
		return err
	}

	espMiB := max(minESPMiB, int64(bytes/mib)*21/20+espSlackMiB)
	espSectors := espMiB * sectorsMiB
	// The backup GPT takes the last 33 sectors: a MiB after the ESP.
	size := (espLBA + espSectors + sectorsMiB) * sectorSize

	out := filepath.Join(o.Out, "keepnet.img")
	part := out + ".partial"
	os.Remove(part)
	f, err := os.Create(part)
	if err != nil {
		return err
	}
	defer os.Remove(part)
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	table := fmt.Sprintf("label: gpt\nfirst-lba: 34\n"+
		"start=%d, size=%d, type=%s, name=\"BIOS boot\"\n"+
		"start=%d, size=%d, type=%s, name=\"EFI system\"\n",
		biosBootLBA, biosBootSize, typeBIOSBoot, espLBA, espSectors, typeESP)
	if err := runIn(ctx, []byte(table), "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", part); err != nil {
		return err
	}
	esp := part + "@@" + strconv.Itoa(ESPOffset)
	// -F: FAT32; -c 1: one-sector clusters (FAT32 needs 65525 of them);
	// -H: the sectors before the partition, as a FAT on a disk records.
	if err := run(ctx, "mformat", "-i", esp, "-F", "-c", "1", "-T", strconv.FormatInt(espSectors, 10),
		"-H", strconv.Itoa(espLBA), "-h", "64", "-s", "32", "-v", ESPLabel, "::"); err != nil {
		return err
	}
	if err := run(ctx, "mmd", "-i", esp, "::/EFI", "::/EFI/BOOT", "::/boot", "::/boot/grub", "::/keepnet"); err != nil {
		return err
	}
	for _, c := range files {
		if err := run(ctx, "mcopy", "-i", esp, c.src, "::"+c.dst); err != nil {
			return err
		}
	}
	if err := EmbedBIOSCore(f, size, bootImg, coreImg, biosBootLBA); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(part, out)
}
