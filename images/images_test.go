package images

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/mkuimage/cpio"
)

// kernelModules is the modules directory `make kernel` left, required under
// `make test` (KEEPNET_ITEST=1).
func kernelModules(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("kernel/modules/*")
	if len(dirs) != 1 {
		if os.Getenv("KEEPNET_ITEST") == "1" {
			t.Fatal("no kernel modules under images/kernel/modules: run 'make kernel'")
		}
		t.Skip("no kernel under images/kernel (make kernel)")
	}
	return dirs[0]
}

func TestResolveModules(t *testing.T) {
	dir := kernelModules(t)
	mods, err := resolveModules(dir, Modules)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range mods {
		names[moduleName(m.path)] = true
	}
	// The wanted modules and their dependencies in Debian's 6.1 kernel.
	for _, want := range []string{"e1000", "uio_pci_generic", "uio", "virtio_pci", "virtio", "virtio_ring", "virtio_console", "vsock", "vmw_vsock_virtio_transport_common"} {
		if !names[want] {
			t.Errorf("resolveModules(%v) lacks %s; got %v", Modules, want, names)
		}
	}
	dep := string(modulesDep(mods))
	if !strings.Contains(dep, "kernel/drivers/uio/uio_pci_generic.ko: kernel/drivers/uio/uio.ko\n") {
		t.Errorf("modules.dep does not list uio as uio_pci_generic's dependency:\n%s", dep)
	}
	if _, err := resolveModules(dir, []string{"no_such_module"}); err == nil {
		t.Error("resolveModules(no_such_module) succeeded, want an error")
	}
}

// Two builds of the same tree give the same bytes, and the archive holds
// init, the components and the modules.
func TestBuildReproducible(t *testing.T) {
	mods := kernelModules(t)
	if testing.Short() {
		t.Skip("builds the image twice")
	}
	root, _ := filepath.Abs("..")
	var outs [][]byte
	for i := 0; i < 2; i++ {
		tmp := t.TempDir()
		out := filepath.Join(tmp, "initramfs.cpio")
		if err := Build(context.Background(), Options{Output: out, ModulesDir: mods, ModuleDir: root, TempDir: tmp}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b)
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Fatalf("two builds differ (%d and %d bytes)", len(outs[0]), len(outs[1]))
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(outs[0])))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.Name] = true
		if r.MTime != 0 || r.UID != 0 {
			t.Errorf("record %s has mtime %d uid %d, want zeros", r.Name, r.MTime, r.UID)
		}
	}
	release := filepath.Base(mods)
	for _, want := range []string{"init", "bin/store", "bin/httpd", "bin/echo", "dev/console", "lib/modules/" + release + "/modules.dep",
		"lib/modules/" + release + "/kernel/drivers/net/ethernet/intel/e1000/e1000.ko"} {
		if !have[want] {
			t.Errorf("initramfs lacks %s", want)
		}
	}
}
