package pid1

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Finding the configuration file. A boot image's command line names it
// (keepnet.conf=/keepnet/keepnet.conf) but not the device it is on: the
// same image boots from a SATA disk, a virtio disk, NVMe, a USB stick or a
// CD, whose names nobody knows in advance. So init loads the drivers of
// all of them (StorageModules), and tries each block device as it appears:
// it mounts it read-only as FAT (the ESP of keepnet.img, and of the ISO
// written to a stick) or ISO 9660 (the ISO on a CD), reads the file if it
// is there, and unmounts it again; the first file found is the one. Nothing
// else on those file systems is used, and nothing is ever written.
//
// Without keepnet.conf (every `keepnet up` boot) none of this happens.

// StorageModules are the kernel modules init loads to look for the
// configuration file: disk controllers (IDE/SATA, AHCI, virtio with its PCI
// transport, which no virtio driver names as a dependency, NVMe, USB host
// controllers and mass storage), disks and CD-ROMs, and the file
// systems with the code pages FAT needs (Debian's kernel mounts FAT with
// code page 437, the ascii I/O charset and UTF-8 names). images.Modules
// must carry them.
var StorageModules = []string{
	"ata_piix", "ahci", "virtio_pci", "virtio_blk", "virtio_scsi", "nvme",
	"sd_mod", "sr_mod",
	"xhci_pci", "ehci_pci", "uhci_hcd", "ohci_pci", "usb_storage", "uas",
	"vfat", "nls_cp437", "nls_ascii", "nls_utf8", "isofs",
}

// confSearch bounds the search: a USB stick takes seconds to appear after
// its host controller's driver loads, and a machine without the file must
// still boot (with the command line's configuration and the defaults).
const confSearch = 15 * time.Second

// confMount is where init mounts each candidate file system.
const confMount = "/run/keepnet/conf"

// A confDevice is what the search needs from the machine.
type confDevice interface {
	// Devices lists the block devices present now, by kernel name.
	Devices() []string
	// Read reads file from dev's file system. found is false when dev has
	// no file system init can mount or no such file; retry says a later
	// attempt may succeed (no medium yet, a device still settling).
	Read(dev, file string) (text string, fstype string, found, retry bool)
}

// findConf looks for file on the devices until within has passed, trying
// each device until it has answered for good. It returns the file's text
// and where it was found.
func findConf(m confDevice, file string, within time.Duration, sleep func(time.Duration)) (text, where string, err error) {
	done := map[string]bool{}
	for waited := time.Duration(0); ; waited += confPoll {
		devs := m.Devices()
		slices.Sort(devs)
		for _, dev := range devs {
			if done[dev] {
				continue
			}
			text, fstype, found, retry := m.Read(dev, file)
			if found {
				return text, dev + " (" + fstype + ")", nil
			}
			done[dev] = !retry
		}
		if waited >= within {
			return "", "", fmt.Errorf("configuration file %s not found on %d block devices within %v", file, len(done), within)
		}
		sleep(confPoll)
	}
}

// confPoll is how often the search looks for new devices.
const confPoll = 100 * time.Millisecond

// sysDevices is the machine's confDevice.
type sysDevices struct{}

func (sysDevices) Devices() []string {
	entries, _ := os.ReadDir("/sys/class/block")
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		names = append(names, n)
	}
	return names
}

func (sysDevices) Read(dev, file string) (text, fstype string, found, retry bool) {
	if err := os.MkdirAll(confMount, 0o755); err != nil {
		return "", "", false, false
	}
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, fs := range []string{"vfat", "iso9660"} {
		err := unix.Mount("/dev/"+dev, confMount, fs, flags, "")
		if err != nil {
			// No medium in a CD drive yet, a node not created yet, a
			// device still busy: try again. Anything else (EINVAL: not
			// this file system) is for good.
			if errors.Is(err, unix.ENOMEDIUM) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EBUSY) {
				retry = true
			}
			continue
		}
		data, rerr := os.ReadFile(filepath.Join(confMount, file))
		unix.Unmount(confMount, 0)
		if rerr == nil {
			return string(data), fs, true, false
		}
		return "", "", false, false
	}
	return "", "", false, retry
}
