package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// probeSector is a 512-byte boot sector that proves a guest really runs:
//
//	mov al, 0x42   ; B0 42
//	out 0xf4, al   ; E6 F4   -> isa-debug-exit: QEMU exits with (0x42<<1)|1
//	hlt            ; F4
//	jmp $-1        ; EB FD
//
// followed by the 0x55AA boot signature.
func probeSector() []byte {
	b := make([]byte, 512)
	copy(b, []byte{0xB0, 0x42, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD})
	b[510], b[511] = 0x55, 0xAA
	return b
}

// probeExit is QEMU's exit status when the probe sector ran.
const probeExit = 0x42<<1 | 1

// ProbeAccel boots the probe sector with the given accelerator and the
// processor model the appliance gets under it (cpuFor), and reports
// whether it ran within timeout. A /dev/kvm that opens is not enough: under
// nested virtualisation QEMU may start and the guest never execute, or a
// guest of QEMU's default model may run where one of the host's model
// cannot start (QEMU 7.2 aborts when the host's KVM refuses an MSR that
// model has, "failed to set MSR 0x10a": seen on a nested host).
func ProbeAccel(ctx context.Context, qemuPath, accel string, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "keepnet-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "probe.img")
	if err := os.WriteFile(img, probeSector(), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuPath,
		"-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc,accel="+accel,
		"-cpu", cpuFor(accel), "-m", "16", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-drive", "file="+img+",format=raw,if=ide", "-boot", "c")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == probeExit:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: the probe guest did not run within %v", accel, timeout)
	case err == nil:
		return fmt.Errorf("%s: QEMU exited without running the probe guest", accel)
	default:
		// One line: the verdict is cached, and printed, as one.
		return fmt.Errorf("%s: %v: %s", accel, err, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; "))
	}
}

// ChooseAccel resolves "auto" to "kvm" when /dev/kvm exists and a probe guest
// really runs under it, else "tcg"; the reason says why. The verdict is
// cached per host boot, since it does not change while the host runs.
func ChooseAccel(ctx context.Context, qemuPath, want string) (accel, reason string) {
	if want != "auto" {
		return want, "asked for"
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		return "tcg", "no usable /dev/kvm"
	} else {
		f.Close()
	}
	cache := accelCachePath()
	if b, err := os.ReadFile(cache); err == nil {
		if v, r, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok && (v == "kvm" || v == "tcg") {
			return v, r + " (cached for this host boot)"
		}
	}
	accel, reason = "kvm", "a probe guest ran under KVM"
	if err := ProbeAccel(ctx, qemuPath, "kvm", 3*time.Second); err != nil {
		accel, reason = "tcg", "KVM is present but "+err.Error()
	}
	os.WriteFile(cache, []byte(accel+" "+reason+"\n"), 0o644)
	return accel, reason
}

func accelCachePath() string {
	id, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return filepath.Join(os.TempDir(), fmt.Sprintf("keepnet-accel-%d-%s", os.Getuid(), strings.TrimSpace(string(id))))
}
