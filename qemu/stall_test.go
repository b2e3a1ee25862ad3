package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/ctl/ctltest"
)

// fakeQEMU is a script standing in for QEMU: it prints a console line
// (firstLine) to the -serial file, counts its runs in dir/runs and, from run
// readyFrom on (0: never), touches dir/serve so the test answers on the
// control socket. Then it sleeps, as a stalled guest would.
const fakeQEMU = `#!/bin/sh
for a; do case $a in file:*) console=${a#file:};; esac; done
n=$(cat "$KN_FAKE_DIR/runs" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$KN_FAKE_DIR/runs"
echo "$KN_FAKE_LINE" > "$console"
if [ "$KN_FAKE_READY_FROM" -gt 0 ] && [ $n -ge "$KN_FAKE_READY_FROM" ]; then touch "$KN_FAKE_DIR/serve"; fi
exec sleep 60
`

// fakeMachine is a Machine whose QEMU is fakeQEMU, with a short stall bound.
func fakeMachine(t *testing.T, firstLine string, readyFrom int) (Machine, string) {
	dir := t.TempDir()
	script := filepath.Join(dir, "qemu")
	for name, data := range map[string]string{script: fakeQEMU, "kernel": "", "initrd": ""} {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := os.WriteFile(name, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("KN_FAKE_DIR", dir)
	t.Setenv("KN_FAKE_LINE", firstLine)
	t.Setenv("KN_FAKE_READY_FROM", strconv.Itoa(readyFrom))
	m := Machine{
		QEMU: script, Kernel: filepath.Join(dir, "kernel"), Initrd: filepath.Join(dir, "initrd"),
		Console: filepath.Join(dir, "console"), Ctl: filepath.Join(dir, "ctl"),
		SMP: 1, MemMiB: 64, Stack: "keepnet", stallWait: 300 * time.Millisecond,
	}
	return m, dir
}

// readyInit answers status requests as a booted guest's init would.
type readyInit struct{ ctl.Handler } // only Status is called

func (readyInit) Status() ctl.Status { return ctl.Status{Ready: true} }

// serveReady answers on path once dir/serve exists.
func serveReady(t *testing.T, dir, path string) {
	go func() {
		for {
			if _, err := os.Stat(filepath.Join(dir, "serve")); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		ctltest.Serve(t, path, readyInit{})
	}()
}

func runs(t *testing.T, dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, "runs"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

func TestStartRetriesAStalledKernelOnce(t *testing.T) {
	m, dir := fakeMachine(t, "[    0.000000] Linux version 6.1.0 (fake)", 2)
	serveReady(t, dir, m.Ctl)
	var progress strings.Builder
	s, err := m.Start(context.Background(), 30*time.Second, &progress)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer func() { p, _ := os.FindProcess(s.PID); p.Kill() }()
	if n := runs(t, dir); n != 2 {
		t.Errorf("QEMU ran %d times, want 2 (the stalled boot, then one that answered)", n)
	}
	if !strings.Contains(progress.String(), "stalled while booting") || !strings.Contains(progress.String(), "starting QEMU again") {
		t.Errorf("progress does not say the boot stalled and is tried again:\n%s", progress.String())
	}
}

func TestStartGivesUpAfterTwoStalls(t *testing.T) {
	m, dir := fakeMachine(t, "[    0.000000] Linux version 6.1.0 (fake)", 0)
	_, err := m.Start(context.Background(), 30*time.Second, nil)
	if !errors.Is(err, errStalled) || !strings.Contains(err.Error(), "console has been silent") {
		t.Fatalf("Start = %v, want the stall error", err)
	}
	if n := runs(t, dir); n != 2 {
		t.Errorf("QEMU ran %d times, want 2", n)
	}
}

func TestStartSilenceBeforeTheKernelIsNoStall(t *testing.T) {
	m, dir := fakeMachine(t, "BdsDxe: loading Boot0001", 0) // firmware, no kernel yet
	_, err := m.Start(context.Background(), 2*time.Second, nil)
	if err == nil || errors.Is(err, errStalled) || !strings.Contains(err.Error(), "did not become ready within 2s") {
		t.Fatalf("Start = %v, want a plain timeout", err)
	}
	if n := runs(t, dir); n != 1 {
		t.Errorf("QEMU ran %d times, want 1", n)
	}
}
