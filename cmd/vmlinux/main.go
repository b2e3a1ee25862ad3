// Command vmlinux extracts the PVH-bootable kernel from a bzImage (see
// package bzimage): vmlinux BZIMAGE OUT.
package main

import (
	"fmt"
	"os"

	"keepnet/kernel/bzimage"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: vmlinux BZIMAGE OUT")
		os.Exit(2)
	}
	img, err := os.ReadFile(os.Args[1])
	if err == nil {
		var out []byte
		if out, err = bzimage.Extract(img); err == nil {
			err = os.WriteFile(os.Args[2], out, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmlinux:", err)
		os.Exit(1)
	}
}
