package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSysfs lays out a sysfs PCI tree with an e1000 (bound to the kernel's
// e1000 driver) and an unrelated device, and points Root at it.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	old := Root
	Root = root
	t.Cleanup(func() { Root = old })
	mk := func(addr, vendor, device string) string {
		dir := filepath.Join(root, "devices", addr)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "vendor"), []byte(vendor+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "device"), []byte(device+"\n"), 0o644)
		cfg := make([]byte, 256)
		binary.LittleEndian.PutUint16(cfg[cfgCommand:], 0x0003) // I/O + memory decoding
		os.WriteFile(filepath.Join(dir, "config"), cfg, 0o644)
		os.WriteFile(filepath.Join(dir, "driver_override"), nil, 0o644)
		return dir
	}
	e1000 := mk("0000:00:03.0", "0x8086", "0x100e")
	mk("0000:00:04.0", "0x1af4", "0x1003")
	drv := filepath.Join(root, "drivers", "e1000")
	os.MkdirAll(drv, 0o755)
	os.WriteFile(filepath.Join(drv, "unbind"), nil, 0o644)
	os.Symlink(drv, filepath.Join(e1000, "driver"))
	os.WriteFile(filepath.Join(root, "drivers_probe"), nil, 0o644)
	os.WriteFile(filepath.Join(e1000, "resource0"), make([]byte, 128<<10), 0o644)
	return root
}

func TestFindAndDriver(t *testing.T) {
	fakeSysfs(t)
	devs, err := Find(0x8086, 0x100e)
	if err != nil || len(devs) != 1 || devs[0].Addr != "0000:00:03.0" {
		t.Fatalf("Find(8086:100e) = %v, %v; want 0000:00:03.0", devs, err)
	}
	if got := devs[0].Driver(); got != "e1000" {
		t.Errorf("Driver() = %q, want e1000", got)
	}
	if devs, _ := Find(0x8086, 0x10d3); len(devs) != 0 {
		t.Errorf("Find(8086:10d3) = %v, want none", devs)
	}
}

func TestList(t *testing.T) {
	fakeSysfs(t)
	got, err := List()
	want := []Device{{"0000:00:03.0", 0x8086, 0x100e}, {"0000:00:04.0", 0x1af4, 0x1003}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List() = %v, %v; want %v", got, err, want)
	}
}

func TestBindUIO(t *testing.T) {
	root := fakeSysfs(t)
	d := Device{Addr: "0000:00:03.0"}
	// The kernel would create uio/uio0 when uio_pci_generic binds; do it
	// here once drivers_probe has been written.
	uioDir := filepath.Join(root, "devices", d.Addr, "uio", "uio0")
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for i := 0; i < 2000; i++ {
			if b, _ := os.ReadFile(filepath.Join(root, "drivers_probe")); string(b) == d.Addr {
				os.MkdirAll(uioDir, 0o755)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { <-probed }()
	name, err := d.BindUIO(2 * time.Second)
	if err != nil || name != "uio0" {
		t.Fatalf("BindUIO = %q, %v; want uio0", name, err)
	}
	for file, want := range map[string]string{
		filepath.Join(root, "drivers", "e1000", "unbind"): d.Addr,
		d.path("driver_override"):                         "uio_pci_generic",
		filepath.Join(root, "drivers_probe"):              d.Addr,
	} {
		if b, _ := os.ReadFile(file); string(b) != want {
			t.Errorf("%s = %q, want %q", file, b, want)
		}
	}
}

func TestBindUIOTimesOut(t *testing.T) {
	fakeSysfs(t)
	_, err := (Device{Addr: "0000:00:03.0"}).BindUIO(50 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no uio device within 50ms") {
		t.Fatalf("BindUIO with no uio device appearing = %v, want it to give up after its 50ms", err)
	}
}

func TestEnableBusMaster(t *testing.T) {
	fakeSysfs(t)
	d := Device{Addr: "0000:00:03.0"}
	if err := d.EnableBusMaster(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(d.path("config"))
	if got := binary.LittleEndian.Uint16(cfg[cfgCommand:]); got != 0x0007 {
		t.Errorf("command register = %#04x, want %#04x (I/O, memory, bus master)", got, 0x0007)
	}
}

func TestMapBAR(t *testing.T) {
	fakeSysfs(t)
	d := Device{Addr: "0000:00:03.0"}
	bar, err := d.MapBAR(0)
	if err != nil {
		t.Fatal(err)
	}
	defer bar.Close()
	bar.Write32(0x2818, 0xdeadbeef) // TDT
	if got := bar.Read32(0x2818); got != 0xdeadbeef {
		t.Errorf("Read32(0x2818) = %#x, want 0xdeadbeef", got)
	}
	if _, err := d.MapBAR(1); err == nil {
		t.Error("MapBAR(1) of a device without BAR1 succeeded")
	}
	defer func() {
		if recover() == nil {
			t.Error("Read32 past the BAR did not panic")
		}
	}()
	bar.Read32(uint32(bar.Len()))
}

// Enable unmasks INTx the way uio_pci_generic needs (it has no irqcontrol:
// writing 1 to /dev/uioN fails): INTx Disable cleared in the command
// register, memory decoding and bus mastering left alone. It does so the
// first time (a previous driver may have left the bit set) and after each
// interrupt Wait read, and leaves configuration space alone otherwise. The
// configuration space is a file, the device a pipe carrying the count.
func TestUIOEnable(t *testing.T) {
	const memBusMaster = cmdMemorySpace | cmdBusMaster
	cfg, err := os.OpenFile(filepath.Join(t.TempDir(), "config"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	u := newUIO(r, cfg)
	defer u.Close()
	defer w.Close()
	setCommand := func(v uint16) {
		t.Helper()
		if _, err := cfg.WriteAt(binary.LittleEndian.AppendUint16(nil, v), cfgCommand); err != nil {
			t.Fatal(err)
		}
	}
	command := func() uint16 {
		t.Helper()
		var b [2]byte
		if _, err := cfg.ReadAt(b[:], cfgCommand); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint16(b[:])
	}

	setCommand(memBusMaster | cmdInterruptDisable)
	if err := u.Enable(); err != nil || command() != memBusMaster {
		t.Fatalf("first Enable: %v, command %#04x, want %#04x", err, command(), memBusMaster)
	}
	// No interrupt was read since: the bit set behind Enable's back (no
	// kernel does that) stays, which shows Enable did not look.
	setCommand(memBusMaster | cmdInterruptDisable)
	if err := u.Enable(); err != nil || command() != memBusMaster|cmdInterruptDisable {
		t.Fatalf("Enable with no interrupt since the last: %v, command %#04x, want it untouched", err, command())
	}
	// An interrupt (the kernel counted it; it masked the line too, the
	// second time behind Enable's back): Wait reads the count, Enable
	// unmasks; the second time it writes what it read the first, INTx
	// Disable cleared, without reading again.
	for _, count := range []uint32{7, 8} {
		setCommand(memBusMaster | cmdInterruptDisable)
		if _, err := w.Write(binary.NativeEndian.AppendUint32(nil, count)); err != nil {
			t.Fatal(err)
		}
		if c, err := u.Wait(0); err != nil || c != count {
			t.Fatalf("Wait: %d, %v; want the count %d", c, err, count)
		}
		if err := u.Enable(); err != nil || command() != memBusMaster {
			t.Fatalf("Enable after interrupt %d: %v, command %#04x, want %#04x", count, err, command(), memBusMaster)
		}
	}
	// Wait with nothing to read times out.
	if _, err := u.Wait(0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait with no interrupt: %v, want ErrTimeout", err)
	}
}

// GiveTo hands the device's files to the driver's uid (to our own when the
// test cannot chown to another).
func TestGiveTo(t *testing.T) {
	root := fakeSysfs(t)
	old := DevDir
	DevDir = t.TempDir()
	t.Cleanup(func() { DevDir = old })
	os.WriteFile(filepath.Join(DevDir, "uio0"), nil, 0o600)
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 101, 101
	}
	d := Device{Addr: "0000:00:03.0"}
	if err := d.GiveTo("uio0", uid, gid); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "devices", d.Addr)
	for _, f := range []string{filepath.Join(dir, "config"), filepath.Join(dir, "resource0"), filepath.Join(DevDir, "uio0")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s belongs to %d:%d, want %d:%d", f, st.Uid, st.Gid, uid, gid)
		}
	}
	if err := d.GiveTo("uio9", uid, gid); err == nil {
		t.Error("GiveTo a missing uio device: no error")
	}
}

// TestSteerIRQs: the INTx line and the MSI vectors are each delivered to
// the processors named; a device with neither is left alone.
func TestSteerIRQs(t *testing.T) {
	root := fakeSysfs(t)
	proc := t.TempDir()
	old := ProcIRQ
	ProcIRQ = proc
	t.Cleanup(func() { ProcIRQ = old })
	dir := filepath.Join(root, "devices", "0000:00:03.0")
	os.WriteFile(filepath.Join(dir, "irq"), []byte("11\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "msi_irqs", "25"), 0o755)
	os.MkdirAll(filepath.Join(dir, "msi_irqs", "24"), 0o755)
	for _, n := range []string{"11", "24", "25"} {
		os.MkdirAll(filepath.Join(proc, n), 0o755)
		os.WriteFile(filepath.Join(proc, n, "smp_affinity_list"), []byte("0-1\n"), 0o644)
	}
	d := Device{Addr: "0000:00:03.0"}
	if got := d.IRQs(); fmt.Sprint(got) != "[11 24 25]" {
		t.Fatalf("IRQs() = %v, want [11 24 25]", got)
	}
	if err := d.SteerIRQs([]int{0, 2}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"11", "24", "25"} {
		if b, _ := os.ReadFile(filepath.Join(proc, n, "smp_affinity_list")); string(b) != "0,2\n" {
			t.Errorf("irq %s: smp_affinity_list %q, want \"0,2\\n\"", n, b)
		}
	}
	if got := (Device{Addr: "0000:00:04.0"}).IRQs(); len(got) != 0 {
		t.Errorf("IRQs() of a device with none = %v", got)
	}
	os.RemoveAll(filepath.Join(proc, "25"))
	if err := d.SteerIRQs([]int{0}); err == nil || !strings.Contains(err.Error(), "25") {
		t.Errorf("SteerIRQs with irq 25 gone = %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(filepath.Join(proc, "11", "smp_affinity_list")); string(b) != "0\n" {
		t.Errorf("irq 11 not steered when another could not be: %q", b)
	}
}
