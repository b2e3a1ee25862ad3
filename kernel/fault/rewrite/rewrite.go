// Package rewrite is the build-time half of keepnet's fault injection: it
// copies the keepnet module and rewrites the packages it is asked to
// instrument so that chosen expressions and statements — fault sites — go
// through the helpers of kernel/fault, which change their behaviour only
// when that site is armed.
//
// It lives beside kernel/fault because the two are one contract: the helper
// each site type calls, its arguments and the variants the rewriter picks
// are defined there and written here, and the tests here run rewritten
// programs against that runtime. Nothing a component links imports this
// package (cmd/faultify and cmd/mkimage -faults do).
//
// # Sites
//
// Inside every function body of a package's non-test files (not files that
// import unsafe, not functions with a //go: directive, never package-level
// initialisers), in source order:
//
//	panic, block   function entry: fault.Panic(id), fault.Block(id)
//	loop           first statement of every for and range body: fault.Loop(id)
//	cond           if and for conditions of type bool: fault.Cond(id, c)
//	operand        a non-constant integer operand of a binary expression
//	               (the right one when it qualifies), and the integer
//	               right-hand sides of assignments: fault.Int(id, v, how)
//	drop           expression, assignment (not :=), ++/-- and send statements
//	               of a block: if !fault.Drop(id) { stmt }
//	zero           a returned pointer, slice, map, channel, func or interface
//	               value whose type is the result's own: fault.Zero(id, v)
//	wrong-buffer   a kernel/pool.Ref passed to a call or set in a composite
//	               literal: fault.Ref(id, r, how)
//	release-early  the Ref of p.Bytes(r), p a *pool.Pool named without a call:
//	               fault.ReleaseEarly(id, p, r)
//
// Ids count from 1 in the order packages are given, their files by name,
// and within a file in the order the rewriter walks it (a function's entry
// sites, then each block's drop sites, then the sites inside its statements),
// so the same source and the same package list give the same ids. The variant of an operand site (plus-one,
// minus-one, negate, flip-bit-N) and of a wrong-buffer site (other-buffer,
// other-pool) is a function of its id.
//
// The rewrite works on the source text: each site is a pair of insertions at
// the offsets go/ast gives, so everything else keeps its spelling and
// comments; the result is gofmt'd.
package rewrite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/format"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"keepnet/kernel/fault/sitelist"
)

// FaultPath is the import path of the runtime the rewritten code calls.
const FaultPath = "keepnet/kernel/fault"

// poolPath is the package whose Ref and *Pool the buffer faults look for.
const poolPath = "keepnet/kernel/pool"

// Type is a fault type; the site list's format is kernel/fault/sitelist's,
// which init reads without linking this package.
type Type = sitelist.Type

// The fault types, as the site list names them.
const (
	TypePanic        = sitelist.TypePanic
	TypeBlock        = sitelist.TypeBlock
	TypeLoop         = sitelist.TypeLoop
	TypeCond         = sitelist.TypeCond
	TypeOperand      = sitelist.TypeOperand
	TypeDrop         = sitelist.TypeDrop
	TypeZero         = sitelist.TypeZero
	TypeWrongBuffer  = sitelist.TypeWrongBuffer
	TypeReleaseEarly = sitelist.TypeReleaseEarly
)

// Types are all the fault types, in the order of the package doc.
var Types = sitelist.Types

// Site is one fault site, as the site list records it.
type Site = sitelist.Site

// Options are the inputs of Module.
type Options struct {
	// ModuleDir is the root of the keepnet module to copy.
	ModuleDir string
	// OutDir receives the copy; it is created, and must not exist or be
	// empty.
	OutDir string
	// Packages are the import paths to instrument.
	Packages []string
}

// skipDirs are never copied: build outputs, the kernel, git's metadata.
var skipDirs = map[string]bool{".git": true, "bin": true, "images/out": true, "images/kernel": true}

// Module copies the module to o.OutDir and rewrites o.Packages there. It
// returns the sites, in id order.
func Module(o Options) ([]Site, error) {
	if ents, err := os.ReadDir(o.OutDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("rewrite: %s is not empty", o.OutDir)
	}
	if err := copyTree(o.ModuleDir, o.OutDir); err != nil {
		return nil, err
	}
	pkgs, exports, err := list(o.ModuleDir, o.Packages)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	r := &rewriter{fset: fset, next: 1}
	for _, path := range o.Packages {
		p, ok := pkgs[path]
		if !ok {
			return nil, fmt.Errorf("rewrite: go list did not report %s", path)
		}
		if path == FaultPath {
			return nil, fmt.Errorf("rewrite: %s is the fault runtime itself", path)
		}
		out, err := r.pkg(imp, p, o.ModuleDir)
		if err != nil {
			return nil, err
		}
		for rel, src := range out {
			if err := os.WriteFile(filepath.Join(o.OutDir, rel), src, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return r.sites, nil
}

// WriteSites writes sites as indented JSON.
func WriteSites(w io.Writer, sites []Site) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(sites)
}

type listed struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Export     string
}

// list runs go list for pkgs and their dependencies: the packages to
// rewrite by path, and every dependency's export data for the type checker.
func list(moduleDir string, pkgs []string) (map[string]listed, map[string]string, error) {
	args := append([]string{"list", "-e=false", "-export", "-deps", "-json=ImportPath,Dir,GoFiles,Export"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("rewrite: go list: %v\n%s", err, stderr.Bytes())
	}
	byPath := map[string]listed{}
	exports := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			return nil, nil, fmt.Errorf("rewrite: go list output: %w", err)
		}
		byPath[p.ImportPath] = p
		exports[p.ImportPath] = p.Export
	}
	return byPath, exports, nil
}

func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if skipDirs[filepath.ToSlash(rel)] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
}

// rewriter numbers sites across packages.
type rewriter struct {
	fset  *token.FileSet
	next  uint32
	sites []Site
}

// pkg type-checks p and returns its rewritten files by module-relative path.
func (r *rewriter) pkg(imp types.Importer, p listed, moduleDir string) (map[string][]byte, error) {
	files := append([]string(nil), p.GoFiles...)
	sort.Strings(files)
	var asts []*ast.File
	srcs := map[*ast.File][]byte{}
	for _, name := range files {
		path := filepath.Join(p.Dir, name)
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(r.fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		asts = append(asts, f)
		srcs[f] = src
	}
	info := &types.Info{
		Types: map[ast.Expr]types.TypeAndValue{},
		Defs:  map[*ast.Ident]types.Object{},
		Uses:  map[*ast.Ident]types.Object{},
	}
	conf := types.Config{Importer: imp, GoVersion: "go1.26", Sizes: types.SizesFor("gc", "amd64")}
	if _, err := conf.Check(p.ImportPath, r.fset, asts, info); err != nil {
		return nil, fmt.Errorf("rewrite: type-checking %s: %w", p.ImportPath, err)
	}
	out := map[string][]byte{}
	for _, f := range asts {
		path := r.fset.File(f.Pos()).Name()
		rel, err := filepath.Rel(moduleDir, path)
		if err != nil {
			return nil, err
		}
		rel = filepath.ToSlash(rel)
		if importsUnsafe(f) {
			continue
		}
		fr := &fileRewrite{r: r, info: info, src: srcs[f], base: r.fset.File(f.Pos()).Base(), pkg: p.ImportPath, rel: rel}
		fr.file(f)
		if len(fr.edits) == 0 {
			continue
		}
		fr.insert(f.Name.End(), "\n\nimport \""+FaultPath+"\"\n")
		src, err := fr.apply()
		if err != nil {
			return nil, err
		}
		out[rel] = src
	}
	return out, nil
}

func importsUnsafe(f *ast.File) bool {
	for _, im := range f.Imports {
		if im.Path.Value == `"unsafe"` || im.Path.Value == `"C"` {
			return true
		}
	}
	return false
}

// edit is one insertion into a file's source. A wrap is a prefix edit and a
// suffix edit over the same span; nested wraps must open outer first and
// close inner first.
type edit struct {
	off    int
	text   string
	suffix bool
	span   int // length of the wrapped node
	seq    int // order of creation: among equal spans, earlier is outer
}

// fileRewrite collects the edits of one file.
type fileRewrite struct {
	r     *rewriter
	info  *types.Info
	src   []byte
	base  int
	pkg   string
	rel   string
	edits []edit
	seq   int
	fn    []funcCtx // enclosing functions, innermost last
}

type funcCtx struct {
	name string
	sig  *types.Signature
}

func (fr *fileRewrite) off(p token.Pos) int { return int(p) - fr.base }

func (fr *fileRewrite) insert(p token.Pos, text string) {
	fr.seq++
	fr.edits = append(fr.edits, edit{off: fr.off(p), text: text, span: 1 << 30, seq: fr.seq})
}

// wrap puts prefix before n and suffix after it.
func (fr *fileRewrite) wrap(n ast.Node, prefix, suffix string) {
	fr.seq++
	span := int(n.End() - n.Pos())
	fr.edits = append(fr.edits,
		edit{off: fr.off(n.Pos()), text: prefix, span: span, seq: fr.seq},
		edit{off: fr.off(n.End()), text: suffix, suffix: true, span: span, seq: fr.seq})
}

// site records a site at n and returns its id.
func (fr *fileRewrite) site(t Type, variant string, n ast.Node, snippet ast.Node) uint32 {
	id := fr.r.next
	fr.r.next++
	fn := ""
	if len(fr.fn) > 0 {
		fn = fr.fn[len(fr.fn)-1].name
	}
	fr.r.sites = append(fr.r.sites, Site{
		ID: id, Type: t, Variant: variant, Package: fr.pkg, File: fr.rel,
		Line: fr.r.fset.Position(n.Pos()).Line, Func: fn, Snippet: fr.snippet(snippet),
	})
	return id
}

func (fr *fileRewrite) snippet(n ast.Node) string {
	s := string(fr.src[fr.off(n.Pos()):fr.off(n.End())])
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

func (fr *fileRewrite) text(n ast.Node) string {
	return string(fr.src[fr.off(n.Pos()):fr.off(n.End())])
}

// apply makes the edits and gofmts the result.
func (fr *fileRewrite) apply() ([]byte, error) {
	es := fr.edits
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.off != b.off {
			return a.off < b.off
		}
		if a.suffix != b.suffix {
			return a.suffix // close what ends here before opening what starts here
		}
		if a.suffix {
			if a.span != b.span {
				return a.span < b.span // inner closes first
			}
			return a.seq > b.seq
		}
		if a.span != b.span {
			return a.span > b.span // outer opens first
		}
		return a.seq < b.seq
	})
	var b bytes.Buffer
	last := 0
	for _, e := range es {
		b.Write(fr.src[last:e.off])
		b.WriteString(e.text)
		last = e.off
	}
	b.Write(fr.src[last:])
	out, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("rewrite: %s: the rewritten source does not parse: %w", fr.rel, err)
	}
	return out, nil
}

// file walks every function body of f.
func (fr *fileRewrite) file(f *ast.File) {
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil || hasDirective(fd.Doc) {
			continue
		}
		sig, _ := fr.info.Defs[fd.Name].Type().(*types.Signature)
		name := fd.Name.Name
		if fd.Recv != nil && len(fd.Recv.List) == 1 {
			name = recvName(fd.Recv.List[0].Type) + "." + name
		}
		fr.fn = append(fr.fn, funcCtx{name: name, sig: sig})
		if fd.Name.Name != "init" {
			fr.entry(fd)
		}
		fr.walk(fd.Body)
		fr.fn = fr.fn[:len(fr.fn)-1]
	}
}

func recvName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return recvName(t.X)
	case *ast.IndexExpr:
		return recvName(t.X)
	case *ast.IndexListExpr:
		return recvName(t.X)
	case *ast.Ident:
		return t.Name
	}
	return "?"
}

func hasDirective(g *ast.CommentGroup) bool {
	if g == nil {
		return false
	}
	for _, c := range g.List {
		if strings.HasPrefix(c.Text, "//go:") {
			return true
		}
	}
	return false
}

// entry adds the function-entry sites of fd.
func (fr *fileRewrite) entry(fd *ast.FuncDecl) {
	sig := sigNode{fd.Pos(), fd.Body.Lbrace}
	p := fr.site(TypePanic, "", fd, sig)
	b := fr.site(TypeBlock, "", fd, sig)
	fr.insert(fd.Body.Lbrace+1, fmt.Sprintf("\nfault.Panic(%d)\nfault.Block(%d)\n", p, b))
}

// sigNode spans a function's signature, for its snippet.
type sigNode struct{ pos, end token.Pos }

func (s sigNode) Pos() token.Pos { return s.pos }
func (s sigNode) End() token.Pos { return s.end }

// walk visits n's subtree, keeping the stack of enclosing functions.
func (fr *fileRewrite) walk(n ast.Node) {
	ast.Inspect(n, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			sig, _ := fr.info.Types[n].Type.(*types.Signature)
			outer := fr.fn[len(fr.fn)-1].name
			fr.fn = append(fr.fn, funcCtx{name: outer + ".func", sig: sig})
			fr.walk(n.Body)
			fr.fn = fr.fn[:len(fr.fn)-1]
			return false
		case *ast.BlockStmt:
			fr.drops(n.List)
		case *ast.CaseClause:
			fr.drops(n.Body)
		case *ast.CommClause:
			fr.drops(n.Body)
		case *ast.IfStmt:
			fr.cond(n.Cond)
		case *ast.ForStmt:
			if n.Cond != nil {
				fr.cond(n.Cond)
			}
			fr.loop(n.Body)
		case *ast.RangeStmt:
			fr.loop(n.Body)
		case *ast.BinaryExpr:
			fr.binary(n)
		case *ast.AssignStmt:
			if len(n.Lhs) == len(n.Rhs) {
				for _, e := range n.Rhs {
					fr.operand(e)
				}
			}
		case *ast.ReturnStmt:
			fr.ret(n)
		case *ast.CallExpr:
			fr.call(n)
		case *ast.CompositeLit:
			for _, e := range n.Elts {
				if kv, ok := e.(*ast.KeyValueExpr); ok && fr.isRef(kv.Value) {
					fr.wrongBuffer(kv.Value)
				}
			}
		}
		return true
	})
}

// drops adds a drop site for every droppable statement of a block.
func (fr *fileRewrite) drops(list []ast.Stmt) {
	for _, s := range list {
		switch s := s.(type) {
		case *ast.ExprStmt:
			if fr.isPanic(s.X) || fr.isCancel(s.X) {
				// panic is a terminating statement: without it a function may
				// lack its return. A context's cancel left uncalled is a leak
				// go vet rejects.
				continue
			}
		case *ast.AssignStmt:
			if s.Tok == token.DEFINE {
				continue
			}
		case *ast.IncDecStmt, *ast.SendStmt:
		default:
			continue
		}
		id := fr.site(TypeDrop, "", s, s)
		fr.wrap(s, fmt.Sprintf("if !fault.Drop(%d) {\n", id), "\n}")
	}
}

func (fr *fileRewrite) isPanic(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	id, ok := ast.Unparen(call.Fun).(*ast.Ident)
	if !ok {
		return false
	}
	_, builtin := fr.info.Uses[id].(*types.Builtin)
	return builtin && id.Name == "panic"
}

func (fr *fileRewrite) isCancel(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	return ok && isNamed(fr.info.Types[call.Fun].Type, "context", "CancelFunc")
}

// cond adds a cond site for a plain bool, non-constant condition.
func (fr *fileRewrite) cond(e ast.Expr) {
	tv, ok := fr.info.Types[e]
	if !ok || tv.Value != nil {
		return
	}
	b, ok := tv.Type.(*types.Basic) // a named bool type would not pass as bool
	if !ok || b.Info()&types.IsBoolean == 0 {
		return
	}
	id := fr.site(TypeCond, "", e, e)
	fr.wrap(e, fmt.Sprintf("fault.Cond(%d, ", id), ")")
}

// loop adds a loop site at the start of a loop body.
func (fr *fileRewrite) loop(body *ast.BlockStmt) {
	id := fr.site(TypeLoop, "", body, body)
	fr.insert(body.Lbrace+1, fmt.Sprintf("\nfault.Loop(%d)\n", id))
}

// binary adds an operand site for one integer operand of e.
func (fr *fileRewrite) binary(e *ast.BinaryExpr) {
	switch e.Op {
	case token.LAND, token.LOR:
		return
	}
	if tv := fr.info.Types[e]; tv.Value != nil {
		return // a constant expression
	}
	if fr.intOperand(e.Y) {
		fr.corrupt(e.Y)
	} else if fr.intOperand(e.X) {
		fr.corrupt(e.X)
	}
}

// operand adds an operand site for e if it is an integer operand.
func (fr *fileRewrite) operand(e ast.Expr) {
	if fr.intOperand(e) {
		fr.corrupt(e)
	}
}

// intOperand: a typed, non-constant integer expression whose type Int can
// infer from it alone (no untyped constant shifted by a variable inside).
func (fr *fileRewrite) intOperand(e ast.Expr) bool {
	tv, ok := fr.info.Types[e]
	if !ok || tv.Value != nil || !tv.IsValue() {
		return false
	}
	b, ok := tv.Type.Underlying().(*types.Basic)
	if !ok || b.Info()&types.IsInteger == 0 || b.Info()&types.IsUntyped != 0 {
		return false
	}
	if _, isTP := tv.Type.(*types.TypeParam); isTP {
		return false
	}
	untypedShift := false
	ast.Inspect(e, func(n ast.Node) bool {
		if s, ok := n.(*ast.BinaryExpr); ok && (s.Op == token.SHL || s.Op == token.SHR) {
			if x, ok := fr.info.Types[s.X]; ok && x.Value != nil {
				untypedShift = true
			}
		}
		return !untypedShift
	})
	return !untypedShift
}

// corruptions are the operand variants, taken by site id.
var corruptions = []string{"plus-one", "minus-one", "negate", "flip-bit"}

func (fr *fileRewrite) corrupt(e ast.Expr) {
	id := fr.r.next
	how, variant := "", corruptions[id%uint32(len(corruptions))]
	switch variant {
	case "plus-one":
		how = "fault.PlusOne"
	case "minus-one":
		how = "fault.MinusOne"
	case "negate":
		how = "fault.Negate"
	default:
		bit := (id / 4) % 8 // a low bit: the values these operands hold are small
		variant = fmt.Sprintf("flip-bit-%d", bit)
		how = fmt.Sprintf("fault.FlipBit0+%d", bit)
	}
	fr.site(TypeOperand, variant, e, e)
	fr.wrap(e, fmt.Sprintf("fault.Int(%d, ", id), fmt.Sprintf(", %s)", how))
}

// ret adds a zero site for every nil-able result of r whose type is the
// function's result type (so that the zero value is the nil the caller
// would test for, never a typed nil in an interface).
func (fr *fileRewrite) ret(r *ast.ReturnStmt) {
	sig := fr.fn[len(fr.fn)-1].sig
	if sig == nil || len(r.Results) != sig.Results().Len() {
		return
	}
	for i, e := range r.Results {
		tv, ok := fr.info.Types[e]
		if !ok || tv.IsNil() || !nilable(tv.Type) || !types.Identical(tv.Type, sig.Results().At(i).Type()) {
			continue
		}
		id := fr.site(TypeZero, "", e, e)
		fr.wrap(e, fmt.Sprintf("fault.Zero(%d, ", id), ")")
	}
}

func nilable(t types.Type) bool {
	if _, ok := t.(*types.TypeParam); ok {
		return false
	}
	switch t.Underlying().(type) {
	case *types.Pointer, *types.Slice, *types.Map, *types.Chan, *types.Signature, *types.Interface:
		return true
	}
	return false
}

// call adds the buffer sites of a call: a wrong buffer for every pool.Ref
// argument, and a release-early for the Ref of pool.(*Pool).Bytes.
func (fr *fileRewrite) call(c *ast.CallExpr) {
	early := -1
	var pool ast.Expr
	if sel, ok := ast.Unparen(c.Fun).(*ast.SelectorExpr); ok && sel.Sel.Name == "Bytes" && len(c.Args) == 1 && fr.isPoolPtr(sel.X) && pure(sel.X) {
		early, pool = 0, sel.X
	}
	for i, a := range c.Args {
		if !fr.isRef(a) {
			continue
		}
		fr.wrongBuffer(a)
		if i == early {
			id := fr.site(TypeReleaseEarly, "", a, c)
			fr.wrap(a, fmt.Sprintf("fault.ReleaseEarly(%d, %s, ", id, fr.text(pool)), ")")
		}
	}
}

func (fr *fileRewrite) wrongBuffer(e ast.Expr) {
	id := fr.r.next
	variant, how := "other-buffer", "fault.OtherBuffer"
	if id%2 == 1 {
		variant, how = "other-pool", "fault.OtherPool"
	}
	fr.site(TypeWrongBuffer, variant, e, e)
	fr.wrap(e, fmt.Sprintf("fault.Ref(%d, ", id), fmt.Sprintf(", %s)", how))
}

// isRef reports whether e is a kernel/pool.Ref value.
func (fr *fileRewrite) isRef(e ast.Expr) bool {
	tv, ok := fr.info.Types[e]
	return ok && tv.IsValue() && isNamed(tv.Type, poolPath, "Ref")
}

func (fr *fileRewrite) isPoolPtr(e ast.Expr) bool {
	tv, ok := fr.info.Types[e]
	if !ok {
		return false
	}
	p, ok := tv.Type.(*types.Pointer)
	return ok && isNamed(p.Elem(), poolPath, "Pool")
}

func isNamed(t types.Type, pkg, name string) bool {
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == pkg && n.Obj().Name() == name
}

// pure: an identifier or a chain of field selections, which can be
// evaluated twice with no effect.
func pure(e ast.Expr) bool {
	switch e := ast.Unparen(e).(type) {
	case *ast.Ident:
		return true
	case *ast.SelectorExpr:
		return pure(e.X)
	}
	return false
}
