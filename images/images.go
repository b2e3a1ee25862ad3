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
// A faulty image (Options.FaultSrc, `make image FAULTS=1`) has the same
// layout, but its components are built from a copy of the module whose
// Instrumented packages carry fault sites (kernel/fault/rewrite), and it
// holds the site list as /etc/keepnet/sites.json (SiteList). Init is built
// from the module itself either way: it judges the runs, so it must stay
// sound. A normal image links no fault site at all (TestNoFaultSites).
//
// Builds are reproducible: binaries are built with -trimpath and no build id,
// the archive is written in sorted order with zeroed times and owners
// (mkuimage's cpio.MakeReproducible), so two builds of one tree give the same
// bytes.
package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"keepnet/kernel/fault/rewrite"
	"keepnet/kernel/fault/sitelist"

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
	"keepnet/cmd/pf",
	"keepnet/cmd/syscall",
	"keepnet/cmd/resolver",
	"keepnet/cmd/sshd",
	"keepnet/cmd/httpd",
	"keepnet/cmd/echo",
}

// Modules are the kernel modules the appliance may load; their dependencies
// come along.
var Modules = []string{
	"e1000",           // keepnet.stack=linux: the kernel's own driver (8254x)
	"e1000e",          // and for the 82574L (QEMU e1000e)
	"uio_pci_generic", // keepnet.stack=keepnet: INTx for the userspace driver
	// keepnet.stack=keepnet on a machine with an IOMMU: the driver takes
	// its NIC through VFIO (vfio_iommu_type1 is the kernel's to request,
	// through the modprobe the appliance does not have: so it is named).
	"vfio", "vfio_iommu_type1", "vfio_pci",
	"virtio_pci",                 // transport for the control channel devices
	"virtio_console",             // control channel over virtio-serial
	"vmw_vsock_virtio_transport", // control channel over vsock
	// keepnet.stack=linux with keepnet.pfrules: the rules as nftables
	// (boot/pid1, nftables.go). nft_ct brings nf_tables and conntrack;
	// crc32c_generic is what libcrc32c, which both need, asks the crypto
	// API for (a soft dependency, which modinfo's depends does not name).
	"nft_ct",
	"crc32c_generic",
	// Booted from keepnet.img, keepnet.iso or a stick: what init needs
	// to find its configuration file (boot/pid1.StorageModules, esp.go).
	"ata_piix", "ahci", "virtio_blk", "virtio_scsi", "nvme",
	"sd_mod", "sr_mod",
	"xhci_pci", "ehci_pci", "uhci_hcd", "ohci_pci", "usb_storage", "uas",
	"vfat", "nls_cp437", "nls_ascii", "nls_utf8", "isofs",
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
	// FaultSrc, if not empty, makes a faulty image: the instrumented copy of
	// the module is written there (it must not exist or be empty) and the
	// components are built from it.
	FaultSrc string
	// SiteList, with FaultSrc, is where the site list is written too.
	SiteList string
}

// Instrumented says which packages a faulty image instruments: the
// components' own code and the kernel primitives they link — never the
// fault runtime, boot/ (init and the supervisor judge the runs) or the
// applications.
func Instrumented(pkg string) bool {
	switch pkg {
	case "keepnet/e1000", "keepnet/kernel/channel", "keepnet/kernel/pool", "keepnet/kernel/loop", "keepnet/kernel/wiring":
		return true
	}
	return strings.HasPrefix(pkg, "keepnet/servers/") || strings.HasPrefix(pkg, "keepnet/drivers/")
}

// SiteList is what a faulty image carries as /etc/keepnet/sites.json: the
// sites, and which instrumented packages each component links (a site of
// kernel/channel is in every component; one of servers/udp only in udp).
// Its format is kernel/fault/sitelist's, which init reads.
type SiteList = sitelist.List

// SiteListPath is where a faulty image holds its site list.
const SiteListPath = sitelist.Path

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
	var sites []byte
	if o.FaultSrc == "" {
		if err := buildGo(ctx, o.ModuleDir, bin, append([]string{Init}, Components...)); err != nil {
			return err
		}
	} else {
		var err error
		if sites, err = buildFaulty(ctx, o, bin); err != nil {
			return err
		}
	}

	var extra []cpio.Record
	if sites != nil {
		extra = append(extra, cpio.Directory(path.Dir(SiteListPath), 0o755), cpio.StaticFile(SiteListPath, string(sites), 0o644))
	}
	base, err := baseArchive(o.ModulesDir, release, extra...)
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

// buildFaulty builds init from the module and the components from an
// instrumented copy of it (o.FaultSrc), and returns the site list (also
// written to o.SiteList).
func buildFaulty(ctx context.Context, o Options, bin string) ([]byte, error) {
	deps, err := listDeps(ctx, o.ModuleDir, Components)
	if err != nil {
		return nil, err
	}
	list := SiteList{Components: map[string][]string{}}
	var pkgs []string
	seen := map[string]bool{}
	for _, c := range Components {
		for _, d := range deps[c] {
			if !Instrumented(d) {
				continue
			}
			list.Components[path.Base(c)] = append(list.Components[path.Base(c)], d)
			if !seen[d] {
				seen[d] = true
				pkgs = append(pkgs, d)
			}
		}
	}
	sort.Strings(pkgs)
	list.Sites, err = rewrite.Module(rewrite.Options{ModuleDir: o.ModuleDir, OutDir: o.FaultSrc, Packages: pkgs})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.FaultSrc, armFile), []byte(armSource), 0o644); err != nil {
		return nil, err
	}
	if err := buildGo(ctx, o.ModuleDir, bin, []string{Init}); err != nil {
		return nil, err
	}
	if err := buildGo(ctx, o.FaultSrc, bin, Components); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if o.SiteList != "" {
		if err := os.WriteFile(o.SiteList, b, 0o644); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// armFile is added to the instrumented copy of kernel/wiring: with it, a
// component arms the sites init's Arm messages name (kernel/wiring, "Fault
// injection"). Not fault_arm.go: a name ending in _arm is built only for
// GOARCH=arm.
const (
	armFile   = "kernel/wiring/faultsites.go"
	armSource = `// Code generated by keepnet/images for a faulty image. DO NOT EDIT.

package wiring

import "keepnet/kernel/fault"

func init() {
	ArmFault = func(a FaultArm) { fault.ArmSeeded(a.Site, a.After, a.Prob, a.Seed) }
}
`
)

// listDeps is every package each of pkgs links, itself included, sorted.
func listDeps(ctx context.Context, moduleDir string, pkgs []string) (map[string][]string, error) {
	args := append([]string{"list", "-json=ImportPath,Deps"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("images: go list: %w", err)
	}
	deps := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("images: go list output: %w", err)
		}
		deps[p.ImportPath] = append(p.Deps, p.ImportPath)
		sort.Strings(deps[p.ImportPath])
	}
	return deps, nil
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
// the kernel modules; and extra.
func baseArchive(modulesDir, release string, extra ...cpio.Record) (*cpio.Archive, error) {
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
	recs = append(recs, extra...)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	return cpio.ArchiveFromRecords(recs)
}
