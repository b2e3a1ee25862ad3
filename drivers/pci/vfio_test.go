package pci

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The ioctl numbers, as the kernel's uapi header computes them
// (include/uapi/linux/vfio.h, _IO(';', 100 + n)), and as strace prints them.
func TestVFIOIoctlNumbers(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"VFIO_GET_API_VERSION", vfioGetAPIVersion, 0x3b64},
		{"VFIO_CHECK_EXTENSION", vfioCheckExtension, 0x3b65},
		{"VFIO_SET_IOMMU", vfioSetIOMMU, 0x3b66},
		{"VFIO_GROUP_GET_STATUS", vfioGroupGetStatus, 0x3b67},
		{"VFIO_GROUP_SET_CONTAINER", vfioGroupSetContainer, 0x3b68},
		{"VFIO_GROUP_GET_DEVICE_FD", vfioGroupGetDeviceFD, 0x3b6a},
		{"VFIO_DEVICE_GET_INFO", vfioDeviceGetInfo, 0x3b6b},
		{"VFIO_DEVICE_GET_REGION_INFO", vfioDeviceGetRegionInfo, 0x3b6c},
		{"VFIO_DEVICE_GET_IRQ_INFO", vfioDeviceGetIRQInfo, 0x3b6d},
		{"VFIO_DEVICE_SET_IRQS", vfioDeviceSetIRQs, 0x3b6e},
		{"VFIO_DEVICE_RESET", vfioDeviceReset, 0x3b6f},
		{"VFIO_IOMMU_MAP_DMA", vfioIOMMUMapDMA, 0x3b71},
		{"VFIO_IOMMU_UNMAP_DMA", vfioIOMMUUnmapDMA, 0x3b72},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// The argsz each ioctl is given: the kernel refuses less than the struct's
// first published size (its minsz).
func TestVFIOArgsz(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"vfio_group_status", sizeofGroupStatus, 8},
		{"vfio_device_info", sizeofDeviceInfo, 16},
		{"vfio_region_info", sizeofRegionInfo, 32},
		{"vfio_irq_info", sizeofIRQInfo, 16},
		{"vfio_irq_set (no data)", sizeofIRQSetNone, 20},
		{"vfio_irq_set (one eventfd)", sizeofIRQSetEventfd, 24},
		{"vfio_iommu_type1_dma_map", sizeofDMAMap, 32},
		{"vfio_iommu_type1_dma_unmap", sizeofDMAUnmap, 24},
	} {
		if c.got != c.want {
			t.Errorf("sizeof(%s) = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// regionOf reads the kernel's region flags.
func TestRegionOf(t *testing.T) {
	for _, c := range []struct {
		in   vfioRegionInfo
		want Region
	}{
		// BAR0 of QEMU's e1000: 128 KiB, read, write, mmap, at index 0.
		{vfioRegionInfo{Flags: 7, Index: 0, Size: 128 << 10, Offset: 0},
			Region{Size: 128 << 10, Offset: 0, Read: true, Write: true, Mappable: true}},
		// Configuration space: read and write, no mmap, at index 7
		// (vfio-pci puts region i at i << 40 in the device file).
		{vfioRegionInfo{Flags: 3, Index: 7, Size: 256, Offset: 7 << 40},
			Region{Size: 256, Offset: 7 << 40, Read: true, Write: true}},
		// An I/O BAR: no mmap; an absent BAR: nothing.
		{vfioRegionInfo{Flags: 3, Index: 2, Size: 64, Offset: 2 << 40}, Region{Size: 64, Offset: 2 << 40, Read: true, Write: true}},
		{vfioRegionInfo{Index: 3}, Region{}},
	} {
		if got := regionOf(c.in); got != c.want {
			t.Errorf("regionOf(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// BindVFIO gives the function to vfio-pci through driver_override and waits
// for its group's node, /dev/vfio/N with N from the iommu_group link.
func TestBindVFIO(t *testing.T) {
	root := fakeSysfs(t)
	d := Device{Addr: "0000:00:03.0"}
	if _, err := d.BindVFIO(10 * time.Millisecond); !errors.Is(err, ErrNoIOMMUGroup) {
		t.Fatalf("BindVFIO without an IOMMU group = %v, want ErrNoIOMMUGroup", err)
	}
	groups := filepath.Join(root, "kernel", "iommu_groups", "5")
	os.MkdirAll(groups, 0o755)
	os.Symlink(groups, d.path("iommu_group"))
	dev := t.TempDir()
	old := VFIODevDir
	VFIODevDir = dev
	t.Cleanup(func() { VFIODevDir = old })
	// The kernel: once drivers_probe is written, vfio-pci holds the
	// function and the group's node appears.
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for i := 0; i < 2000; i++ {
			if b, _ := os.ReadFile(filepath.Join(root, "drivers_probe")); string(b) == d.Addr {
				drv := filepath.Join(root, "drivers", "vfio-pci")
				os.MkdirAll(drv, 0o755)
				os.Remove(d.path("driver"))
				os.Symlink(drv, d.path("driver"))
				os.WriteFile(filepath.Join(dev, "5"), nil, 0o600)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { <-probed }()
	group, err := d.BindVFIO(2 * time.Second)
	if err != nil || group != 5 {
		t.Fatalf("BindVFIO = %d, %v; want group 5", group, err)
	}
	if b, _ := os.ReadFile(d.path("driver_override")); string(b) != "vfio-pci" {
		t.Errorf("driver_override = %q, want vfio-pci", b)
	}
}

func TestHasIOMMU(t *testing.T) {
	dir := t.TempDir()
	if HasIOMMU(dir) || HasIOMMU(filepath.Join(dir, "absent")) {
		t.Errorf("HasIOMMU of an empty or absent class = true")
	}
	os.Mkdir(filepath.Join(dir, "dmar0"), 0o755)
	if !HasIOMMU(dir) {
		t.Errorf("HasIOMMU with dmar0 = false")
	}
}
