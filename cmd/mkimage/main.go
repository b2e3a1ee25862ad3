// Command mkimage builds the appliance's initramfs (see package images).
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
	out := flag.String("o", "images/out/initramfs.cpio", "initramfs to write")
	mods := flag.String("modules", "", "the kernel's lib/modules/<release> directory (default: the one under images/kernel/modules)")
	flag.Parse()
	if err := run(*out, *mods); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, mods string) error {
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
	if err := images.Build(context.Background(), images.Options{
		Output: partial, ModulesDir: mods, ModuleDir: root, TempDir: tmp,
	}); err != nil {
		os.Remove(partial)
		return err
	}
	return os.Rename(partial, out)
}
