// Command faultify copies the keepnet module and instruments packages of it
// with fault sites (see kernel/fault/rewrite), writing the site list as JSON.
//
//	faultify -o DIR [-sites FILE] PACKAGE...
//
// Run it at the module root; PACKAGE is an import path (keepnet/servers/udp).
// `make image FAULTS=1` does the same through cmd/mkimage -faults.
package main

import (
	"flag"
	"fmt"
	"os"

	"keepnet/kernel/fault/rewrite"
)

func main() {
	out := flag.String("o", "", "directory to write the instrumented copy of the module to (new or empty)")
	sites := flag.String("sites", "", "file to write the site list to (default: standard output)")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: faultify -o DIR [-sites FILE] PACKAGE...")
		os.Exit(2)
	}
	if err := run(*out, *sites, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "faultify:", err)
		os.Exit(1)
	}
}

func run(out, sitesFile string, pkgs []string) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	sites, err := rewrite.Module(rewrite.Options{ModuleDir: root, OutDir: out, Packages: pkgs})
	if err != nil {
		return err
	}
	w := os.Stdout
	if sitesFile != "" {
		f, err := os.Create(sitesFile)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if err := rewrite.WriteSites(w, sites); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "faultify: %d sites in %d packages, written to %s\n", len(sites), len(pkgs), out)
	return nil
}
