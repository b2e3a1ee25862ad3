package images

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// A kmod is one loadable kernel module found under a modules directory.
type kmod struct {
	path    string   // relative to the modules directory, e.g. kernel/drivers/uio/uio.ko
	depends []string // module names from its .modinfo "depends=" entry
}

// moduleName is the kernel's name for a module file: basename without .ko,
// with dashes folded to underscores.
func moduleName(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// modinfoDepends reads the "depends=" entry of a module's .modinfo section.
func modinfoDepends(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", file)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", file, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// indexModules maps module name to file for every .ko under dir.
func indexModules(dir string) (map[string]string, error) {
	idx := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		idx[moduleName(rel)] = rel
		return nil
	})
	return idx, err
}

// resolveModules returns the named modules and everything they depend on,
// sorted by path. Modules built into the kernel (listed in modules.builtin)
// are satisfied without a file.
func resolveModules(dir string, names []string) ([]kmod, error) {
	idx, err := indexModules(dir)
	if err != nil {
		return nil, fmt.Errorf("indexing modules in %s: %w", dir, err)
	}
	builtin := make(map[string]bool)
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			builtin[moduleName(line)] = true
		}
	}
	found := make(map[string]kmod)
	var visit func(name, wantedBy string) error
	visit = func(name, wantedBy string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if _, ok := found[name]; ok || builtin[name] {
			return nil
		}
		rel, ok := idx[name]
		if !ok {
			if wantedBy != "" {
				return fmt.Errorf("module %s (needed by %s) not found under %s", name, wantedBy, dir)
			}
			return fmt.Errorf("module %s not found under %s", name, dir)
		}
		deps, err := modinfoDepends(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		found[name] = kmod{path: rel, depends: deps}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	mods := make([]kmod, 0, len(found))
	for _, m := range found {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].path < mods[j].path })
	return mods, nil
}

// modulesDep renders a depmod-style modules.dep for mods: one line per module,
// "path: dep-path dep-path". Only direct dependencies are listed; the loader
// (u-root's kmodule) follows them recursively. Built-in dependencies are
// omitted, since there is no file to load.
func modulesDep(mods []kmod) []byte {
	byName := make(map[string]string, len(mods))
	for _, m := range mods {
		byName[moduleName(m.path)] = m.path
	}
	var b bytes.Buffer
	for _, m := range mods {
		b.WriteString(m.path)
		b.WriteString(":")
		for _, d := range m.depends {
			if p, ok := byName[strings.ReplaceAll(d, "-", "_")]; ok {
				b.WriteString(" ")
				b.WriteString(p)
			}
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}
