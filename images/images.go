// Package images says what goes into the appliance's initramfs and builds it
// with u-root's mkuimage (uimage), never by shelling out to cpio.
//
// The image holds:
//
//	/init                the PID-1 init (cmd/init)
//	/bin/<component>     one static binary per component (cmd/store, cmd/httpd, ...)
//	/lib/modules/<rel>/  the kernel modules the appliance loads, their
//	                     dependencies, and a modules.dep generated from their
//	                     .modinfo (the Debian package ships none: depmod
//	                     normally runs at install time)
//	/dev/console, /dev/null and the empty mount points
//
// Builds are reproducible: binaries are built with -trimpath and no build id,
// the archive is written in sorted order with zeroed times and owners
// (mkuimage's cpio.MakeReproducible), so two builds of one tree give the same
// bytes.
package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// Init is the package built as /init.
const Init = "keepnet/cmd/init"

// Components are the packages built into /bin, each named after its
// directory. The supervisor's table (boot/pid1) refers to them by path.
var Components = []string{
	"keepnet/cmd/store",
	"keepnet/cmd/nic",
	"keepnet/cmd/ip",
	"keepnet/cmd/udp",
	"keepnet/cmd/tcp",
	"keepnet/cmd/syscall",
	"keepnet/cmd/resolver",
	"keepnet/cmd/sshd",
	"keepnet/cmd/httpd",
	"keepnet/cmd/echo",
}

// Modules are the kernel modules the appliance may load; their dependencies
// come along.
var Modules = []string{
	"e1000",                      // keepnet.stack=linux: the kernel's own driver
	"uio_pci_generic",            // keepnet.stack=keepnet: INTx for the userspace driver
	"virtio_pci",                 // transport for the control channel devices
	"virtio_console",             // control channel over virtio-serial
	"vmw_vsock_virtio_transport", // control channel over vsock
}

// Options are the inputs of one image build.
type Options struct {
	// Output is the initramfs (a newc cpio archive) to write.
	Output string
	// ModulesDir is the kernel's lib/modules/<release> directory.
	ModulesDir string
	// ModuleDir is the root of the keepnet module (where go.mod is).
	ModuleDir string
	// TempDir holds intermediate binaries; it must exist.
	TempDir string
}

// Build compiles the components and writes the initramfs.
func Build(ctx context.Context, o Options) error {
	if o.Output == "" || o.ModulesDir == "" || o.ModuleDir == "" || o.TempDir == "" {
		return errors.New("images: Output, ModulesDir, ModuleDir and TempDir are all required")
	}
	release := filepath.Base(filepath.Clean(o.ModulesDir))
	if _, err := os.Stat(filepath.Join(o.ModulesDir, "kernel")); err != nil {
		return fmt.Errorf("images: %s does not look like lib/modules/<release> (no kernel/ inside); run 'make kernel'", o.ModulesDir)
	}

	bin := filepath.Join(o.TempDir, "bin")
	if err := buildGo(ctx, o.ModuleDir, bin, append([]string{Init}, Components...)); err != nil {
		return err
	}

	base, err := baseArchive(o.ModulesDir, release)
	if err != nil {
		return err
	}
	files := []string{filepath.Join(bin, path.Base(Init)) + ":init"}
	for _, c := range Components {
		name := path.Base(c)
		files = append(files, filepath.Join(bin, name)+":bin/"+name)
	}
	logger := llog.New(slog.LevelWarn, func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "mkuimage: "+format+"\n", args...)
	})
	return uimage.Create(logger,
		uimage.WithTempDir(o.TempDir),
		uimage.WithBaseArchive(base),
		uimage.WithFiles(files...),
		uimage.WithSkipLDD(), // every binary is static (CGO_ENABLED=0)
		uimage.WithCPIOOutput(o.Output),
	)
}

// buildGo builds pkgs as static, reproducible linux/amd64 binaries into dir.
// GOAMD64=v1 so the image runs on any x86-64 CPU QEMU emulates.
func buildGo(ctx context.Context, moduleDir, dir string, pkgs []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", dir + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1", "GOFLAGS=-buildvcs=false")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("images: go build %s: %w", strings.Join(pkgs, " "), err)
	}
	return nil
}

// baseArchive holds what is not a Go binary: device nodes, mount points and
// the kernel modules.
func baseArchive(modulesDir, release string) (*cpio.Archive, error) {
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.Directory("etc", 0o755),
		cpio.Directory("proc", 0o555),
		cpio.Directory("run", 0o755),
		cpio.Directory("sys", 0o555),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("lib", 0o755),
		cpio.Directory("lib/modules", 0o755),
	}
	mods, err := resolveModules(modulesDir, Modules)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	root := "lib/modules/" + release
	dirs := map[string]bool{}
	var addDir func(string)
	addDir = func(d string) {
		if d == "lib/modules" || dirs[d] {
			return
		}
		addDir(path.Dir(d))
		dirs[d] = true
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	addDir(root)
	for _, m := range mods {
		data, err := os.ReadFile(filepath.Join(modulesDir, m.path))
		if err != nil {
			return nil, err
		}
		dst := root + "/" + filepath.ToSlash(m.path)
		addDir(path.Dir(dst))
		recs = append(recs, cpio.StaticFile(dst, string(data), 0o644))
	}
	recs = append(recs, cpio.StaticFile(root+"/modules.dep", string(modulesDep(mods)), 0o644))
	if b, err := os.ReadFile(filepath.Join(modulesDir, "modules.builtin")); err == nil {
		recs = append(recs, cpio.StaticFile(root+"/modules.builtin", string(b), 0o644))
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	return cpio.ArchiveFromRecords(recs)
}
