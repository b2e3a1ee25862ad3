// Command keepnet boots and controls the keepnet appliance (see package cli).
package main

import (
	"os"

	"keepnet/qemu/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
