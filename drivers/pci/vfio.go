package pci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// VFIO: a userspace driver's device behind an IOMMU
// (Documentation/driver-api/vfio.rst).
//
// The kernel's vfio-pci driver holds the function; the driver process opens
// three things: a container (/dev/vfio/vfio), which is one IOMMU address
// space; the function's IOMMU group (/dev/vfio/N, N from the function's
// iommu_group link), which must be viable (every function in it bound to
// vfio-pci or to no driver) and is attached to the container; and the
// device, a file descriptor from the group. Through the device the driver
// reads region information and maps BAR0, reads and writes configuration
// space (a region too), asks the kernel to signal interrupts on an eventfd
// and resets the function. Through the container it maps DMA: a range of
// its own memory at an I/O virtual address (IOVA) it picks; the device
// reaches that memory at that IOVA, and nothing else.
//
// A mapping pins its pages. The container goes when its last descriptor
// closes (the process exits, or crashes): the kernel then removes every
// mapping, and vfio-pci disables the function. A device that was still
// writing into a dead driver's buffers is thus blocked by the IOMMU, not
// writing into memory that was given to someone else.

// VFIODevDir is where the VFIO device nodes are.
var VFIODevDir = "/dev/vfio"

// vfioDriver is the kernel driver a function is bound to for VFIO.
const vfioDriver = "vfio-pci"

// ErrNoIOMMUGroup: the function is in no IOMMU group (the machine has no
// IOMMU, or it is off).
var ErrNoIOMMUGroup = errors.New("no IOMMU group (is there an IOMMU, and is it on?)")

// IOMMUGroup is the number of d's IOMMU group.
func (d Device) IOMMUGroup() (int, error) {
	target, err := os.Readlink(d.path("iommu_group"))
	if err != nil {
		return 0, fmt.Errorf("pci %s: %w", d.Addr, ErrNoIOMMUGroup)
	}
	return strconv.Atoi(filepath.Base(target))
}

// HasIOMMU tells whether the machine has an IOMMU the kernel drives: one
// entry or more under /sys/class/iommu.
func HasIOMMU(classDir string) bool {
	entries, err := os.ReadDir(classDir)
	return err == nil && len(entries) > 0
}

// BindVFIO gives d to vfio-pci (the module must be loaded), unbinding
// whatever kernel driver holds it, and waits for its group's device node;
// it returns the group's number. As BindUIO, through driver_override.
func (d Device) BindVFIO(timeout time.Duration) (int, error) {
	group, err := d.IOMMUGroup()
	if err != nil {
		return 0, err
	}
	if err := d.bind(vfioDriver); err != nil {
		return 0, err
	}
	node := filepath.Join(VFIODevDir, strconv.Itoa(group))
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(node); err == nil && d.Driver() == vfioDriver {
			return group, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("pci %s: no %s within %v (driver is %q)", d.Addr, node, timeout, d.Driver())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// GiveVFIOTo makes d's group node belong to uid and gid, so that the
// driver opens it without privilege (the container node is open to all).
func (d Device) GiveVFIOTo(group, uid, gid int) error {
	node := filepath.Join(VFIODevDir, strconv.Itoa(group))
	if err := os.Chown(node, uid, gid); err != nil {
		return fmt.Errorf("pci %s: giving the driver %s: %w", d.Addr, node, err)
	}
	return nil
}

// VFIO is a function opened through vfio-pci: its container, group and
// device, and the eventfd its interrupts are signalled on. It gives the
// driver what uio and sysfs give it otherwise (a BAR, configuration space,
// an interrupt to wait on) and what they cannot: DMA mappings in an IOMMU,
// and a reset through the kernel.
type VFIO struct {
	addr                     string
	container, group, device *os.File
	info                     vfioDeviceInfo
	config                   vfioRegionInfo // configuration space

	irq      *os.File // the eventfd the kernel signals
	irqFd    int      // irq's descriptor, taken once (UIO says why)
	irqIndex uint32   // vfioPCIINTxIRQIndex or vfioPCIMSIIRQIndex
	count    uint32   // interrupts so far
}

// OpenVFIO opens d through VFIO: a new container with a type 1 IOMMU
// (v2 where the kernel has it), d's group attached to it, and d's device.
// d must be bound to vfio-pci (BindVFIO).
func (d Device) OpenVFIO() (_ *VFIO, err error) {
	v := &VFIO{addr: d.Addr}
	defer func() {
		if err != nil {
			v.Close()
			err = fmt.Errorf("vfio %s: %w", d.Addr, err)
		}
	}()
	if v.container, err = os.OpenFile(filepath.Join(VFIODevDir, "vfio"), os.O_RDWR, 0); err != nil {
		return nil, err
	}
	cfd := int(v.container.Fd())
	if ver, err := ioctlArg(cfd, vfioGetAPIVersion, 0); err != nil || ver != vfioAPIVersion {
		return nil, fmt.Errorf("API version %d (%v), want %d", ver, err, vfioAPIVersion)
	}
	iommu := uintptr(vfioType1v2IOMMU)
	if ok, _ := ioctlArg(cfd, vfioCheckExtension, vfioType1v2IOMMU); ok == 0 {
		if ok, _ := ioctlArg(cfd, vfioCheckExtension, vfioType1IOMMU); ok == 0 {
			return nil, errors.New("the kernel has no type 1 IOMMU for VFIO (is vfio_iommu_type1 loaded?)")
		}
		iommu = vfioType1IOMMU
	}
	group, err := d.IOMMUGroup()
	if err != nil {
		return nil, err
	}
	if v.group, err = os.OpenFile(filepath.Join(VFIODevDir, strconv.Itoa(group)), os.O_RDWR, 0); err != nil {
		return nil, err
	}
	gfd := int(v.group.Fd())
	st := vfioGroupStatus{Argsz: uint32(sizeofGroupStatus)}
	if err := ioctlPtr(gfd, vfioGroupGetStatus, &st); err != nil {
		return nil, fmt.Errorf("group %d status: %w", group, err)
	}
	if st.Flags&vfioGroupFlagsViable == 0 {
		return nil, fmt.Errorf("group %d is not viable: a function in it is bound to a driver other than vfio-pci", group)
	}
	cfd32 := int32(cfd)
	if err := ioctlPtr(gfd, vfioGroupSetContainer, &cfd32); err != nil {
		return nil, fmt.Errorf("group %d into the container: %w", group, err)
	}
	if _, err := ioctlArg(cfd, vfioSetIOMMU, iommu); err != nil {
		return nil, fmt.Errorf("setting the IOMMU type %d: %w", iommu, err)
	}
	dfd, err := ioctlString(gfd, vfioGroupGetDeviceFD, d.Addr)
	if err != nil {
		return nil, fmt.Errorf("device from group %d: %w", group, err)
	}
	v.device = os.NewFile(uintptr(dfd), "vfio-device "+d.Addr)
	v.info = vfioDeviceInfo{Argsz: uint32(sizeofDeviceInfo)}
	if err := ioctlPtr(dfd, vfioDeviceGetInfo, &v.info); err != nil {
		return nil, fmt.Errorf("device info: %w", err)
	}
	if v.info.Flags&vfioDeviceFlagsPCI == 0 {
		return nil, errors.New("not a PCI device")
	}
	if v.config, err = v.region(vfioPCIConfigRegionIndex); err != nil {
		return nil, fmt.Errorf("configuration space: %w", err)
	}
	return v, nil
}

// region reads the information of region index.
func (v *VFIO) region(index uint32) (vfioRegionInfo, error) {
	r := vfioRegionInfo{Argsz: uint32(sizeofRegionInfo), Index: index}
	if err := ioctlPtr(int(v.device.Fd()), vfioDeviceGetRegionInfo, &r); err != nil {
		return r, err
	}
	return r, nil
}

// Region is what the kernel says of one region of a VFIO device.
type Region struct {
	Size, Offset          uint64 // its length, and where it is in the device file
	Read, Write, Mappable bool
}

func regionOf(r vfioRegionInfo) Region {
	return Region{Size: r.Size, Offset: r.Offset, Read: r.Flags&vfioRegionInfoFlagRead != 0,
		Write: r.Flags&vfioRegionInfoFlagWrite != 0, Mappable: r.Flags&vfioRegionInfoFlagMmap != 0}
}

// MapBAR maps memory BAR n.
func (v *VFIO) MapBAR(n int) (*BAR, error) {
	info, err := v.region(uint32(n))
	if err != nil {
		return nil, fmt.Errorf("vfio %s: BAR%d: %w", v.addr, n, err)
	}
	r := regionOf(info)
	switch {
	case r.Size == 0:
		return nil, fmt.Errorf("vfio %s: BAR%d: %w", v.addr, n, ErrNoBAR)
	case !r.Mappable || !r.Read || !r.Write:
		return nil, fmt.Errorf("vfio %s: BAR%d: the kernel does not let it be mapped read-write (%+v)", v.addr, n, r)
	}
	mem, err := unix.Mmap(int(v.device.Fd()), int64(r.Offset), int(r.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("vfio %s: mapping BAR%d: %w", v.addr, n, err)
	}
	return &BAR{mem: mem}, nil
}

// configFile is configuration space as a file: reads and writes at the
// region's offset in the device file. vfio-pci virtualizes parts of it
// (the BARs, MSI), and passes the command register through.
type configFile struct{ v *VFIO }

func (c configFile) ReadAt(b []byte, off int64) (int, error) {
	return c.v.device.ReadAt(b, int64(c.v.config.Offset)+off)
}

func (c configFile) WriteAt(b []byte, off int64) (int, error) {
	return c.v.device.WriteAt(b, int64(c.v.config.Offset)+off)
}

// EnableBusMaster sets memory space decoding and bus mastering in the
// command register, through the configuration region.
func (v *VFIO) EnableBusMaster() error {
	if err := updateCommand(configFile{v}, cmdMemorySpace|cmdBusMaster, 0); err != nil {
		return fmt.Errorf("vfio %s: %w", v.addr, err)
	}
	return nil
}

// CanReset tells whether the kernel can reset the function (a function
// level reset, or a reset of the slot or bus it has alone). QEMU's e1000e
// can; its 8254x models cannot.
func (v *VFIO) CanReset() bool { return v.info.Flags&vfioDeviceFlagsReset != 0 }

// Reset resets the function through the kernel (VFIO_DEVICE_RESET). The
// command register is restored afterwards by the kernel; interrupts set
// up with SetUpInterrupts stay.
func (v *VFIO) Reset() error {
	if !v.CanReset() {
		return fmt.Errorf("vfio %s: the function offers no reset", v.addr)
	}
	if _, err := ioctlArg(int(v.device.Fd()), vfioDeviceReset, 0); err != nil {
		return fmt.Errorf("vfio %s: reset: %w", v.addr, err)
	}
	return nil
}

// MapDMA makes mem reachable by the device at iova: read, and written too
// when write is set. mem must be page-aligned memory of this process that
// stays mapped while the mapping lasts; the kernel pins it.
func (v *VFIO) MapDMA(mem []byte, iova uint64, write bool) error {
	m := vfioDMAMap{Argsz: uint32(sizeofDMAMap), Flags: vfioDMAMapFlagRead, Vaddr: addrOf(mem), IOVA: iova, Size: uint64(len(mem))}
	if write {
		m.Flags |= vfioDMAMapFlagWrite
	}
	if err := ioctlPtr(int(v.container.Fd()), vfioIOMMUMapDMA, &m); err != nil {
		return fmt.Errorf("vfio %s: mapping %d bytes at IOVA %#x: %w", v.addr, len(mem), iova, err)
	}
	return nil
}

// UnmapDMA removes the mapping of size bytes at iova.
func (v *VFIO) UnmapDMA(iova, size uint64) error {
	u := vfioDMAUnmap{Argsz: uint32(sizeofDMAUnmap), IOVA: iova, Size: size}
	if err := ioctlPtr(int(v.container.Fd()), vfioIOMMUUnmapDMA, &u); err != nil {
		return fmt.Errorf("vfio %s: unmapping IOVA %#x: %w", v.addr, iova, err)
	}
	return nil
}

// SetUpInterrupts has the kernel signal the function's interrupt on an
// eventfd: MSI when the function has it and msi is set, else INTx, which
// the kernel masks when it fires (Enable unmasks it). It returns which.
func (v *VFIO) SetUpInterrupts(msi bool) (string, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return "", fmt.Errorf("vfio %s: eventfd: %w", v.addr, err)
	}
	v.irq = os.NewFile(uintptr(fd), "vfio-irq "+v.addr)
	v.irqFd = int(v.irq.Fd())
	kinds := []uint32{vfioPCIINTxIRQIndex}
	if msi {
		kinds = []uint32{vfioPCIMSIIRQIndex, vfioPCIINTxIRQIndex}
	}
	var errs error
	for _, index := range kinds {
		info := vfioIRQInfo{Argsz: uint32(sizeofIRQInfo), Index: index}
		if err := ioctlPtr(int(v.device.Fd()), vfioDeviceGetIRQInfo, &info); err != nil || info.Count == 0 || info.Flags&vfioIRQInfoEventfd == 0 {
			errs = errors.Join(errs, fmt.Errorf("%s: not offered (%d, %v)", irqName(index), info.Count, err))
			continue
		}
		set := vfioIRQSet{Argsz: uint32(sizeofIRQSetEventfd), Flags: vfioIRQSetDataEventfd | vfioIRQSetActionTrigger,
			Index: index, Start: 0, Count: 1, FD: int32(fd)}
		if err := ioctlPtr(int(v.device.Fd()), vfioDeviceSetIRQs, &set); err != nil {
			errs = errors.Join(errs, fmt.Errorf("%s: %w", irqName(index), err))
			continue
		}
		v.irqIndex = index
		return irqName(index), nil
	}
	return "", fmt.Errorf("vfio %s: no interrupt: %w", v.addr, errs)
}

func irqName(index uint32) string {
	if index == vfioPCIMSIIRQIndex {
		return "MSI"
	}
	return "INTx"
}

// Fd is the interrupt's eventfd, for a poll loop.
func (v *VFIO) Fd() int { return v.irqFd }

// Enable unmasks INTx, which the kernel masked when it fired (one ioctl);
// MSI is never masked.
func (v *VFIO) Enable() error {
	if v.irqIndex != vfioPCIINTxIRQIndex {
		return nil
	}
	set := vfioIRQSet{Argsz: uint32(sizeofIRQSetNone), Flags: vfioIRQSetDataNone | vfioIRQSetActionUnmask,
		Index: vfioPCIINTxIRQIndex, Start: 0, Count: 1}
	if err := ioctlPtr(int(v.device.Fd()), vfioDeviceSetIRQs, &set); err != nil {
		return fmt.Errorf("vfio %s: unmasking INTx: %w", v.addr, err)
	}
	return nil
}

// Wait blocks until an interrupt or the timeout, and returns how many
// interrupts came so far (the eventfd's counts, added up).
func (v *VFIO) Wait(timeout time.Duration) (uint32, error) {
	fd := v.irqFd
	if err := awaitInterrupt(fd, timeout); err == ErrTimeout {
		return 0, err
	} else if err != nil {
		return 0, fmt.Errorf("vfio: %w", err)
	}
	n, errno := read64(fd)
	runtime.KeepAlive(v.irq)
	if errno != 0 {
		return 0, fmt.Errorf("vfio: eventfd: %w", errno)
	}
	v.count += uint32(n)
	return v.count, nil
}

// Close releases the device, the group and the container: the kernel
// removes every DMA mapping and disables the function.
func (v *VFIO) Close() error {
	for _, f := range []*os.File{v.irq, v.device, v.group, v.container} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}
