// Command mkimage builds the appliance's initramfs (see package images).
//
// With -faults it builds a faulty image, by default a file of its own
// (images/out/initramfs-faulty.cpio) so that a normal image and a faulty one
// live side by side (make test boots both; keepnet campaign boots the faulty
// one): the components are built from an instrumented copy of the module
// written to images/out/faulty-src, and the site list goes beside the image
// (sites.json) as well as into it. A normal build leaves that site list
// alone: it describes the faulty image, which a normal build does not touch.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"keepnet/images"
)

func main() {
	out := flag.String("o", "", "initramfs to write (default images/out/initramfs.cpio, with -faults images/out/initramfs-faulty.cpio)")
	mods := flag.String("modules", "", "the kernel's lib/modules/<release> directory (default: the one under images/kernel/modules)")
	faults := flag.Bool("faults", false, "build the components with fault sites (kernel/fault/rewrite); the site list goes beside the image as sites.json")
	flag.Parse()
	if *out == "" {
		*out = "images/out/initramfs.cpio"
		if *faults {
			*out = "images/out/initramfs-faulty.cpio"
		}
	}
	if err := run(*out, *mods, *faults); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, mods string, faults bool) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if mods == "" {
		matches, _ := filepath.Glob(filepath.Join(root, "images/kernel/modules/*"))
		if len(matches) != 1 {
			return fmt.Errorf("no kernel modules under images/kernel/modules (run 'make kernel' or pass -modules)")
		}
		mods = matches[0]
	}
	tmp, err := os.MkdirTemp("", "keepnet-mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	partial := out + ".partial"
	os.Remove(partial)
	sites := filepath.Join(filepath.Dir(out), "sites.json")
	o := images.Options{Output: partial, ModulesDir: mods, ModuleDir: root, TempDir: tmp}
	if faults {
		o.FaultSrc = filepath.Join(filepath.Dir(out), "faulty-src")
		o.SiteList = sites + ".partial"
		if err := os.RemoveAll(o.FaultSrc); err != nil {
			return err
		}
	}
	if err := images.Build(context.Background(), o); err != nil {
		os.Remove(partial)
		return err
	}
	if faults {
		if err := os.Rename(o.SiteList, sites); err != nil {
			return err
		}
	}
	return os.Rename(partial, out)
}
