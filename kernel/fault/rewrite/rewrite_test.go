package rewrite

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const (
	progPath    = "keepnet/kernel/fault/rewrite/testdata/prog"
	subjectPath = progPath + "/subject"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s", root)
	}
	return root
}

// build builds pkg in the module at dir and returns the binary.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "prog")
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s in %s: %v\n%s", pkg, dir, err, out)
	}
	return bin
}

// lines runs the test program, arming site (0: none), and returns its
// output by function name.
func lines(t *testing.T, bin string, site uint32) map[string]string {
	t.Helper()
	out, err := exec.Command(bin, "-site", strconv.Itoa(int(site))).Output()
	if err != nil {
		t.Fatalf("%s -site %d: %v\n%s", bin, site, err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		if k == "activated false" || k == "activated true" {
			k, v = "activated", strings.TrimPrefix(k, "activated ")
		}
		m[k] = v
	}
	return m
}

// Each fault type really changes what the instrumented code does when its
// site is armed, and nothing when none is.
func TestFaultTypesChangeBehaviour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs")
	}
	root := moduleRoot(t)
	out := filepath.Join(t.TempDir(), "src")
	sites, err := Module(Options{ModuleDir: root, OutDir: out, Packages: []string{subjectPath}})
	if err != nil {
		t.Fatal(err)
	}
	orig := lines(t, build(t, root, "./kernel/fault/rewrite/testdata/prog"), 0)
	bin := build(t, out, "./kernel/fault/rewrite/testdata/prog")
	disarmed := lines(t, bin, 0)
	if got, want := strings.Join(sortedPairs(disarmed), "\n"), strings.Join(sortedPairs(orig), "\n"); got != want {
		t.Fatalf("instrumented, no site armed:\n%s\nwant the original's:\n%s", got, want)
	}

	for _, c := range []struct {
		typ  Type
		fn   string // the function the site is in
		line string // the output line that changes
		want string // what it says then
	}{
		{TypeCond, "Max", "max", "3"},
		{TypeOperand, "Sum", "sum", ""}, // a corrupted operand: anything but 6 (the variant goes by id)
		{TypeLoop, "Sum", "sum", "hang"},
		{TypeDrop, "Sum", "sum", "0"},
		{TypeZero, "Table.Find", "find", "panic: runtime error: invalid memory address or nil pointer dereference"},
		{TypeZero, "Check", "check", "<nil>"},
		{TypePanic, "Hello", "hello", "panic: fault: injected panic at site "},
		{TypeBlock, "Hello", "hello", "hang"},
		{TypeWrongBuffer, "Read", "read", ""},
		{TypeReleaseEarly, "Read", "read", "packet A; free: pool 1: free {Pool:1 Off:2048 Len:8}: buffer is already free"},
	} {
		s, ok := find(sites, c.typ, c.fn)
		if !ok {
			t.Errorf("no %s site in %s; sites: %+v", c.typ, c.fn, sites)
			continue
		}
		got := lines(t, bin, s.ID)
		if got["activated"] != "true" {
			t.Errorf("site %d (%s in %s) armed: not activated", s.ID, c.typ, c.fn)
		}
		switch {
		case got[c.line] == disarmed[c.line]:
			t.Errorf("site %d (%s %s in %s, %q) armed: %s = %q, the same as disarmed", s.ID, c.typ, s.Variant, c.fn, s.Snippet, c.line, got[c.line])
		case c.want != "" && !strings.HasPrefix(got[c.line], c.want):
			t.Errorf("site %d (%s in %s, %q) armed: %s = %q, want %q", s.ID, c.typ, c.fn, s.Snippet, c.line, got[c.line], c.want)
		}
		for k, v := range disarmed {
			if k != c.line && k != "activated" && got[k] != v {
				t.Errorf("site %d (%s in %s) armed: %s = %q, want %q as disarmed: a fault leaked into another function", s.ID, c.typ, c.fn, k, got[k], v)
			}
		}
	}
}

func find(sites []Site, typ Type, fn string) (Site, bool) {
	for _, s := range sites {
		if s.Type == typ && s.Func == fn {
			return s, true
		}
	}
	return Site{}, false
}

func sortedPairs(m map[string]string) []string {
	var s []string
	for k, v := range m {
		s = append(s, k+": "+v)
	}
	sort.Strings(s)
	return s
}

// The rewritten real packages build and vet, and two rewrites of the same
// source give the same sites and the same files.
func TestRealPackagesBuildAndIdsAreStable(t *testing.T) {
	if testing.Short() {
		t.Skip("rewrites and builds servers/udp")
	}
	root := moduleRoot(t)
	pkgs := []string{"keepnet/kernel/channel", "keepnet/kernel/pool", "keepnet/servers/transport", "keepnet/servers/udp"}
	var outs []string
	var lists [][]byte
	for range 2 {
		out := filepath.Join(t.TempDir(), "src")
		sites, err := Module(Options{ModuleDir: root, OutDir: out, Packages: pkgs})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := WriteSites(&b, sites); err != nil {
			t.Fatal(err)
		}
		outs, lists = append(outs, out), append(lists, b.Bytes())
		have := map[Type]int{}
		for _, s := range sites {
			have[s.Type]++
		}
		for _, typ := range Types {
			if have[typ] == 0 {
				t.Errorf("no %s site in %v", typ, pkgs)
			}
		}
	}
	if !bytes.Equal(lists[0], lists[1]) {
		t.Error("two rewrites of the same source gave different site lists")
	}
	for _, rel := range []string{"kernel/channel/endpoint.go", "servers/udp/table.go"} {
		a, _ := os.ReadFile(filepath.Join(outs[0], rel))
		b, _ := os.ReadFile(filepath.Join(outs[1], rel))
		if !bytes.Equal(a, b) {
			t.Errorf("two rewrites of %s differ", rel)
		}
		if !bytes.Contains(a, []byte("fault.")) {
			t.Errorf("rewritten %s has no site", rel)
		}
	}
	for _, args := range [][]string{{"build", "./cmd/udp"}, {"vet", "./kernel/channel", "./kernel/pool", "./servers/transport", "./servers/udp"}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = outs[0]
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go %s in the rewritten tree: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cmd := exec.Command("gofmt", "-l", "kernel/channel", "kernel/pool", "servers/transport", "servers/udp")
	cmd.Dir = outs[0]
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("gofmt -l in the rewritten tree: %v\n%s", err, out)
	}
}

// The fault runtime is never instrumented.
func TestRefusesFaultItself(t *testing.T) {
	_, err := Module(Options{ModuleDir: moduleRoot(t), OutDir: filepath.Join(t.TempDir(), "src"), Packages: []string{FaultPath}})
	if err == nil {
		t.Errorf("Module(%s) succeeded, want an error", FaultPath)
	}
}
