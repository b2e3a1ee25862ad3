package images

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"keepnet/boot/pid1"
	"keepnet/kernel/fault/rewrite"

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
	for _, want := range []string{"e1000", "uio_pci_generic", "uio", "virtio_pci", "virtio", "virtio_ring", "virtio_console", "vsock", "vmw_vsock_virtio_transport_common",
		"nft_ct", "nf_tables", "nf_conntrack", "nfnetlink", "libcrc32c", "crc32c_generic"} {
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

// A normal image has no fault site: neither init nor any component links
// the fault runtime, so no instruction of theirs can call into it. Init
// links only the site list's format (kernel/fault/sitelist), to answer
// inject in a faulty image.
func TestNoFaultSites(t *testing.T) {
	root, _ := filepath.Abs("..")
	deps, err := listDeps(context.Background(), root, append([]string{Init}, Components...))
	if err != nil {
		t.Fatal(err)
	}
	for pkg, ds := range deps {
		for _, d := range ds {
			if pkg == Init && d == "keepnet/kernel/fault/sitelist" {
				continue
			}
			if d == rewrite.FaultPath || strings.HasPrefix(d, rewrite.FaultPath+"/") {
				t.Errorf("%s links %s", pkg, d)
			}
		}
	}
	if len(deps) != 1+len(Components) {
		t.Errorf("go list reported %d packages, want %d", len(deps), 1+len(Components))
	}
}

// What a faulty image instruments: the components' own packages and the
// kernel primitives they link, never init's, the fault runtime's or the
// applications'.
func TestInstrumented(t *testing.T) {
	for pkg, want := range map[string]bool{
		"keepnet/servers/udp": true, "keepnet/drivers/nic": true, "keepnet/e1000": true,
		"keepnet/kernel/channel": true, "keepnet/kernel/wiring": true,
		"keepnet/kernel/fault": false, "keepnet/boot/pid1": false, "keepnet/boot/supervisor": false,
		"keepnet/apps/httpd": false, "keepnet/cmd/udp": false, "keepnet/kernel/sandbox": false,
	} {
		if got := Instrumented(pkg); got != want {
			t.Errorf("Instrumented(%s) = %v, want %v", pkg, got, want)
		}
	}
}

// A faulty image's components carry fault sites and the image its site
// list; the same tree built normally carries neither.
func TestBuildFaulty(t *testing.T) {
	mods := kernelModules(t)
	if testing.Short() {
		t.Skip("builds the image twice")
	}
	root, _ := filepath.Abs("..")
	// The fault runtime's panic message: in a binary only if it links the
	// runtime. The arming function: only if its wiring can arm a site
	// (function names stay in a stripped Go binary's pclntab).
	marker, arming := []byte("fault: injected panic at site"), []byte("keepnet/kernel/fault.ArmSeeded")
	for _, faulty := range []bool{false, true} {
		tmp := t.TempDir()
		o := Options{Output: filepath.Join(tmp, "initramfs.cpio"), ModulesDir: mods, ModuleDir: root, TempDir: tmp}
		if faulty {
			o.FaultSrc, o.SiteList = filepath.Join(tmp, "faulty-src"), filepath.Join(tmp, "sites.json")
		}
		if err := Build(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(o.Output)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		for _, r := range recs {
			if r.ReaderAt != nil {
				data, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
				files[r.Name] = data
			}
		}
		for _, c := range Components {
			name := "bin/" + path.Base(c)
			if got := bytes.Contains(files[name], marker); got != faulty {
				t.Errorf("faulty %v: %s links the fault runtime: %v, want %v", faulty, name, got, faulty)
			}
			if got := bytes.Contains(files[name], arming); got != faulty {
				t.Errorf("faulty %v: %s can arm a site: %v, want %v", faulty, name, got, faulty)
			}
		}
		if bytes.Contains(files["init"], marker) {
			t.Errorf("faulty %v: init links the fault runtime", faulty)
		}
		list, ok := files[SiteListPath]
		if ok != faulty {
			t.Fatalf("faulty %v: the image holds %s: %v", faulty, SiteListPath, ok)
		}
		if !faulty {
			continue
		}
		var sl SiteList
		if err := json.Unmarshal(list, &sl); err != nil {
			t.Fatal(err)
		}
		if len(sl.Sites) == 0 || len(sl.Components["udp"]) == 0 || !slices.Contains(sl.Components["tcp"], "keepnet/servers/tcp") {
			t.Errorf("site list: %d sites, udp links %v, tcp links %v", len(sl.Sites), sl.Components["udp"], sl.Components["tcp"])
		}
		if beside, err := os.ReadFile(o.SiteList); err != nil || !bytes.Equal(beside, list) {
			t.Errorf("the site list beside the image (%v) is not the one in it", err)
		}
	}
}

// The modules init loads to find its configuration file on a boot image
// are in the image.
func TestStorageModules(t *testing.T) {
	for _, m := range pid1.StorageModules {
		if !slices.Contains(Modules, m) {
			t.Errorf("Modules lacks %s, which boot/pid1 loads to find its configuration file", m)
		}
	}
}
