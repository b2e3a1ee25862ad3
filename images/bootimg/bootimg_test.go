package bootimg

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGrub returns a boot.img and a core.img of n sectors shaped like
// grub-mkimage's: a boot signature, and a block list that loads n-1 sectors
// from the default start 2.
func fakeGrub(n int) (boot, core []byte) {
	boot = make([]byte, sectorSize)
	for i := range boot[:bootPartStart] {
		boot[i] = 0xb0
	}
	binary.LittleEndian.PutUint16(boot[bootSignature:], 0xaa55)
	core = make([]byte, n*sectorSize-100) // the last sector partly used
	for i := range core {
		core[i] = 0xc0
	}
	binary.LittleEndian.PutUint64(core[blocklistStart:], 2)
	binary.LittleEndian.PutUint16(core[blocklistStart+8:], uint16(n-1))
	binary.LittleEndian.PutUint16(core[blocklistStart+10:], 0x820)
	return boot, core
}

func TestEmbedBIOSCore(t *testing.T) {
	boot, core := fakeGrub(5)
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 64 * sectorSize
	f.Truncate(size)
	// The protective MBR sfdisk writes: a disk signature, one 0xee entry.
	mbr := make([]byte, sectorSize)
	copy(mbr[bootPartStart:], []byte{1, 2, 3, 4})
	mbr[0x1c2] = 0xee
	binary.LittleEndian.PutUint16(mbr[bootSignature:], 0xaa55)
	f.WriteAt(mbr, 0)

	if err := EmbedBIOSCore(f, size, boot, core, 34); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	f.ReadAt(got, 0)
	if !bytes.Equal(got[:bootKernelSector], boot[:bootKernelSector]) {
		t.Errorf("MBR code before the kernel sector differs from boot.img")
	}
	if lba := binary.LittleEndian.Uint64(got[bootKernelSector:]); lba != 34 {
		t.Errorf("MBR kernel sector = %d, want 34", lba)
	}
	if !bytes.Equal(got[bootDriveCheck:bootDriveCheck+2], []byte{0x90, 0x90}) {
		t.Errorf("drive check = % x, want two NOPs", got[bootDriveCheck:bootDriveCheck+2])
	}
	if !bytes.Equal(got[bootPartStart:sectorSize], mbr[bootPartStart:]) {
		t.Errorf("the disk's signature and partition table were not kept")
	}
	c := got[34*sectorSize:]
	if start := binary.LittleEndian.Uint64(c[blocklistStart:]); start != 35 {
		t.Errorf("core block list start = %d, want 35", start)
	}
	if n := binary.LittleEndian.Uint16(c[blocklistStart+8:]); n != 4 {
		t.Errorf("core block list length = %d, want 4 (grub-mkimage's)", n)
	}
	if !bytes.Equal(c[sectorSize:len(core)], core[sectorSize:]) {
		t.Errorf("core.img after its first sector was not written as is")
	}
}

func TestEmbedBIOSCoreRefuses(t *testing.T) {
	boot, core := fakeGrub(5)
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(64 * sectorSize)
	bad := append([]byte(nil), core...)
	binary.LittleEndian.PutUint16(bad[blocklistStart+8:], 9)
	for _, c := range []struct {
		name       string
		boot, core []byte
		lba        int64
	}{
		{"a boot.img of two sectors", append(boot, boot...), core, 34},
		{"a core.img whose block list is not its length", boot, bad, 34},
		{"a core.img past the disk's end", boot, core, 62},
		{"a core.img over the MBR", boot, core, 0},
		{"a disk with no partition table", boot, core, 34},
	} {
		if err := EmbedBIOSCore(f, 64*sectorSize, c.boot, c.core, c.lba); err == nil {
			t.Errorf("EmbedBIOSCore with %s succeeded", c.name)
		}
	}
}

func TestGrubConfig(t *testing.T) {
	cfg := GrubConfig(Cmdline)
	for _, want := range []string{"linux " + kernelPath + " console=tty0 console=ttyS0,115200 ", "keepnet.conf=" + ConfPath, "initrd " + initrdPath, "serial --unit=0"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg has no %q:\n%s", want, cfg)
		}
	}
}

// TestDisk builds a disk image from stand-in kernel and initramfs with the
// real tools, when they are installed, and reads it back with them.
func TestDisk(t *testing.T) {
	o := DefaultOptions()
	if err := CheckTools(o); err != nil {
		if os.Getenv("KEEPNET_ITEST") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	o.Kernel, o.Initrd, o.Out, o.Tmp = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd"), dir, dir
	os.WriteFile(o.Kernel, bytes.Repeat([]byte("k"), 3<<20), 0o644)
	os.WriteFile(o.Initrd, bytes.Repeat([]byte("i"), 5<<20), 0o644)
	if err := Disk(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "keepnet.img")
	out, err := exec.Command("sfdisk", "--dump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	for _, want := range []string{"label: gpt", "start=        2048, size=        2048, type=" + typeBIOSBoot, "start=        4096, size=       81920, type=" + typeESP} {
		if !strings.Contains(string(out), want) {
			t.Errorf("partition table has no %q:\n%s", want, out)
		}
	}
	cmd := exec.Command("mtype", "-i", img+"@@"+"2097152", "::"+ConfPath)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != DefaultConf {
		t.Errorf("mtype %s: %v\n%s", ConfPath, err, out)
	}
	cmd = exec.Command("mdir", "-b", "-/", "-i", img+"@@"+"2097152", "::")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, want := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/boot/grub/grub.cfg", "::" + kernelPath, "::" + initrdPath} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the ESP has no %s:\n%s", want, out)
		}
	}
}
