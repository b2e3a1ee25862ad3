package pci

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The VFIO ioctls (include/uapi/linux/vfio.h): _IO(VFIO_TYPE, VFIO_BASE +
// n) with VFIO_TYPE ';' and VFIO_BASE 100. Each takes a struct whose first
// field, argsz, is its size; the kernel checks it against the least size
// it knows (the struct as first published), so the structs here are those.
const (
	vfioType = ';'
	vfioBase = 100

	vfioGetAPIVersion        = vfioType<<8 | (vfioBase + 0)
	vfioCheckExtension       = vfioType<<8 | (vfioBase + 1)
	vfioSetIOMMU             = vfioType<<8 | (vfioBase + 2)
	vfioGroupGetStatus       = vfioType<<8 | (vfioBase + 3)
	vfioGroupSetContainer    = vfioType<<8 | (vfioBase + 4)
	vfioGroupGetDeviceFD     = vfioType<<8 | (vfioBase + 6)
	vfioDeviceGetInfo        = vfioType<<8 | (vfioBase + 7)
	vfioDeviceGetRegionInfo  = vfioType<<8 | (vfioBase + 8)
	vfioDeviceGetIRQInfo     = vfioType<<8 | (vfioBase + 9)
	vfioDeviceSetIRQs        = vfioType<<8 | (vfioBase + 10)
	vfioDeviceReset          = vfioType<<8 | (vfioBase + 11)
	vfioIOMMUMapDMA          = vfioType<<8 | (vfioBase + 13)
	vfioIOMMUUnmapDMA        = vfioType<<8 | (vfioBase + 14)
	vfioAPIVersion           = 0
	vfioType1IOMMU           = 1
	vfioType1v2IOMMU         = 3
	vfioGroupFlagsViable     = 1 << 0
	vfioDeviceFlagsReset     = 1 << 0
	vfioDeviceFlagsPCI       = 1 << 1
	vfioRegionInfoFlagRead   = 1 << 0
	vfioRegionInfoFlagWrite  = 1 << 1
	vfioRegionInfoFlagMmap   = 1 << 2
	vfioIRQInfoEventfd       = 1 << 0
	vfioIRQSetDataNone       = 1 << 0
	vfioIRQSetDataEventfd    = 1 << 2
	vfioIRQSetActionUnmask   = 1 << 4
	vfioIRQSetActionTrigger  = 1 << 5
	vfioDMAMapFlagRead       = 1 << 0
	vfioDMAMapFlagWrite      = 1 << 1
	vfioPCIConfigRegionIndex = 7 // VFIO_PCI_CONFIG_REGION_INDEX, after BAR0-5 and the ROM
	vfioPCIINTxIRQIndex      = 0
	vfioPCIMSIIRQIndex       = 1
)

// struct vfio_group_status
type vfioGroupStatus struct {
	Argsz, Flags uint32
}

// struct vfio_device_info, as first published (cap_offset came later and
// is not needed)
type vfioDeviceInfo struct {
	Argsz, Flags, NumRegions, NumIRQs uint32
}

// struct vfio_region_info
type vfioRegionInfo struct {
	Argsz, Flags, Index, CapOffset uint32
	Size, Offset                   uint64
}

// struct vfio_irq_info
type vfioIRQInfo struct {
	Argsz, Flags, Index, Count uint32
}

// struct vfio_irq_set with one eventfd as its data (data[] is a flexible
// array: the header is 20 bytes, an eventfd 4 more).
type vfioIRQSet struct {
	Argsz, Flags, Index, Start, Count uint32
	FD                                int32
}

// struct vfio_iommu_type1_dma_map
type vfioDMAMap struct {
	Argsz, Flags uint32
	Vaddr, IOVA  uint64
	Size         uint64
}

// struct vfio_iommu_type1_dma_unmap, without its later flexible data[]
type vfioDMAUnmap struct {
	Argsz, Flags uint32
	IOVA, Size   uint64
}

// The argsz of each struct.
const (
	sizeofGroupStatus   = unsafe.Sizeof(vfioGroupStatus{})
	sizeofDeviceInfo    = unsafe.Sizeof(vfioDeviceInfo{})
	sizeofRegionInfo    = unsafe.Sizeof(vfioRegionInfo{})
	sizeofIRQInfo       = unsafe.Sizeof(vfioIRQInfo{})
	sizeofIRQSetNone    = unsafe.Offsetof(vfioIRQSet{}.FD) // the header alone
	sizeofIRQSetEventfd = unsafe.Sizeof(vfioIRQSet{})
	sizeofDMAMap        = unsafe.Sizeof(vfioDMAMap{})
	sizeofDMAUnmap      = unsafe.Sizeof(vfioDMAUnmap{})
)

// The layouts the kernel's uapi header gives (checked at compile time).
var (
	_ [unsafe.Sizeof(vfioGroupStatus{}) - 8]byte
	_ [8 - unsafe.Sizeof(vfioGroupStatus{})]byte
	_ [unsafe.Sizeof(vfioDeviceInfo{}) - 16]byte
	_ [16 - unsafe.Sizeof(vfioDeviceInfo{})]byte
	_ [unsafe.Sizeof(vfioRegionInfo{}) - 32]byte
	_ [32 - unsafe.Sizeof(vfioRegionInfo{})]byte
	_ [unsafe.Offsetof(vfioRegionInfo{}.Size) - 16]byte
	_ [unsafe.Sizeof(vfioIRQInfo{}) - 16]byte
	_ [16 - unsafe.Sizeof(vfioIRQInfo{})]byte
	_ [unsafe.Offsetof(vfioIRQSet{}.FD) - 20]byte
	_ [20 - unsafe.Offsetof(vfioIRQSet{}.FD)]byte
	_ [unsafe.Sizeof(vfioDMAMap{}) - 32]byte
	_ [32 - unsafe.Sizeof(vfioDMAMap{})]byte
	_ [unsafe.Sizeof(vfioDMAUnmap{}) - 24]byte
	_ [24 - unsafe.Sizeof(vfioDMAUnmap{})]byte
)

// ioctlPtr issues an ioctl whose argument is the struct at p.
func ioctlPtr[T any](fd int, req uintptr, p *T) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(p)))
	if errno != 0 {
		return errno
	}
	return nil
}

// ioctlArg issues an ioctl whose argument is a plain integer, and returns
// its result.
func ioctlArg(fd int, req, arg uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}

// ioctlString issues an ioctl whose argument is a NUL-terminated string.
func ioctlString(fd int, req uintptr, s string) (int, error) {
	b, err := unix.BytePtrFromString(s)
	if err != nil {
		return -1, err
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(b)))
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}

// addrOf is the virtual address of b's first byte: memory a DMA mapping
// names. b must be an mmap'ed region (the garbage collector never moves
// it).
func addrOf(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
