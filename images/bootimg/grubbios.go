package bootimg

import (
	"encoding/binary"
	"fmt"
	"io"
)

// GRUB's BIOS boot path, which grub-install (grub-bios-setup) normally sets
// up on a block device. Debian ships grub-bios-setup only in grub-pc, whose
// installation takes over the host's boot loader, and it wants a device:
// so the two patches it makes are done here, on bytes. The offsets are
// GRUB 2's (include/grub/i386/pc/boot.h, boot/i386/pc/diskboot.S); they
// have not changed since 2.00.
//
// boot.img is the 512-byte MBR code. It loads one sector, the first of
// core.img, from the LBA at BootKernelSector. That sector is diskboot.img,
// which loads the rest of core.img along the block list at its end: a start
// LBA, a count of sectors and a segment. grub-mkimage fills the count; the
// start is where the image lies on the disk, which only the installer knows.
const (
	sectorSize = 512

	// bootKernelSector is boot.img's field holding core.img's first LBA
	// (GRUB_BOOT_MACHINE_KERNEL_SECTOR, 8 bytes, little endian).
	bootKernelSector = 0x5c
	// bootDriveCheck is boot.img's "jmp" over the code that takes the boot
	// drive from DL only when it looks like a hard disk
	// (GRUB_BOOT_MACHINE_DRIVE_CHECK). grub-bios-setup replaces it with
	// two NOPs for hard disks (a USB stick is one to the BIOS), so that
	// BIOSes that pass a wrong DL still boot: we do the same.
	bootDriveCheck = 0x66
	// bootPartStart..bootSignature is what the MBR keeps from the disk: the
	// disk signature at 0x1b8 (GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC), the
	// partition table (here the GPT's protective entry) and nothing after.
	bootPartStart = 0x1b8
	bootSignature = 0x1fe

	// blocklistStart is where diskboot.img's first block list entry lies,
	// at the end of its sector: start LBA (8 bytes), sectors (2), segment
	// (2) (struct grub_pc_bios_boot_blocklist).
	blocklistStart = sectorSize - 12
)

// DiskFile is a disk image being written.
type DiskFile interface {
	io.ReaderAt
	io.WriterAt
}

// EmbedBIOSCore makes disk (a whole disk image of size bytes whose partition
// table is already written) boot GRUB on a BIOS: boot.img goes into the MBR,
// keeping the disk's own partition table, and core.img at sector lba,
// normally the start of the GPT's BIOS boot partition (the caller sees that
// it fits there).
func EmbedBIOSCore(disk DiskFile, size int64, bootImg, coreImg []byte, lba int64) error {
	if len(bootImg) != sectorSize || binary.LittleEndian.Uint16(bootImg[bootSignature:]) != 0xaa55 {
		return fmt.Errorf("boot.img: want one boot sector, got %d bytes", len(bootImg))
	}
	if len(coreImg) < sectorSize {
		return fmt.Errorf("core.img: %d bytes, less than a sector", len(coreImg))
	}
	sectors := (len(coreImg) + sectorSize - 1) / sectorSize
	bl := coreImg[blocklistStart:sectorSize]
	if n := int(binary.LittleEndian.Uint16(bl[8:])); n != sectors-1 {
		return fmt.Errorf("core.img: its block list loads %d sectors after the first, the image has %d: not a grub-mkimage -O i386-pc image", n, sectors-1)
	}
	if end := (lba + int64(sectors)) * sectorSize; lba < 1 || end > size {
		return fmt.Errorf("core.img at sector %d does not fit in the %d-byte disk", lba, size)
	}
	mbr := make([]byte, sectorSize)
	if _, err := disk.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading the MBR: %w", err)
	}
	copy(mbr[:bootPartStart], bootImg)
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], uint64(lba))
	mbr[bootDriveCheck], mbr[bootDriveCheck+1] = 0x90, 0x90
	if binary.LittleEndian.Uint16(mbr[bootSignature:]) != 0xaa55 {
		return fmt.Errorf("the disk's MBR has no boot signature: write the partition table first")
	}

	core := append([]byte(nil), coreImg...)
	binary.LittleEndian.PutUint64(core[blocklistStart:], uint64(lba+1))
	if _, err := disk.WriteAt(mbr, 0); err != nil {
		return err
	}
	_, err := disk.WriteAt(core, lba*sectorSize)
	return err
}
