// Package sitelist is the site list of a faulty image: the fault sites its
// components carry (kernel/fault/rewrite writes them) and which instrumented
// packages each component links (images works that out). A faulty image
// holds it as /etc/keepnet/sites.json (Path), and keepnet's init reads it to
// answer `keepnet inject`: which site an id names, whether the component
// asked for links it, and, for a fault type without a site, which site of
// that type to arm (Choose, from a seed).
//
// It is the contract between the build and init, in a package of its own
// because init must read it without linking the rewriter (go/types) or the
// image builder (mkuimage): this one needs only encoding/json.
package sitelist

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
)

// Type is a fault type, as the site list names it (kernel/fault has one
// helper per type).
type Type string

// The fault types.
const (
	TypePanic        Type = "panic"         // the function panics on entry
	TypeBlock        Type = "block"         // the function blocks forever (a lock never released)
	TypeLoop         Type = "loop"          // a loop body spins forever
	TypeCond         Type = "cond"          // a branch condition, inverted
	TypeOperand      Type = "operand"       // an integer operand, corrupted
	TypeDrop         Type = "drop"          // a statement, not executed
	TypeZero         Type = "zero"          // a returned value, nil
	TypeWrongBuffer  Type = "wrong-buffer"  // a pool reference, another buffer's
	TypeReleaseEarly Type = "release-early" // a buffer, freed while in use
)

// Types are all the fault types, in the order of kernel/fault's doc.
var Types = []Type{TypePanic, TypeBlock, TypeLoop, TypeCond, TypeOperand, TypeDrop, TypeZero, TypeWrongBuffer, TypeReleaseEarly}

// ParseType checks that s names a fault type.
func ParseType(s string) (Type, error) {
	if t := Type(s); slices.Contains(Types, t) {
		return t, nil
	}
	names := make([]string, len(Types))
	for i, t := range Types {
		names[i] = string(t)
	}
	return "", fmt.Errorf("%w %q: want one of %s", ErrUnknownType, s, strings.Join(names, ", "))
}

// Site is one fault site.
type Site struct {
	ID      uint32 `json:"id"`
	Type    Type   `json:"type"`
	Variant string `json:"variant,omitempty"`
	Package string `json:"package"`
	File    string `json:"file"` // relative to the module root
	Line    int    `json:"line"` // in the original file
	Func    string `json:"func"`
	Snippet string `json:"snippet"` // the original code, its first line
}

// Where is the site's file:line.
func (s Site) Where() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// List is the whole site list.
type List struct {
	// Components are the instrumented packages each component links, by
	// the name of its binary (/bin/udp: "udp"; the driver's is "nic"). A
	// site of kernel/channel is in every component, one of servers/udp
	// only in udp.
	Components map[string][]string `json:"components"`
	// Sites are in the order of their ids, which count from 1.
	Sites []Site `json:"sites"`
}

// Path is where a faulty image holds its site list, relative to its root.
const Path = "etc/keepnet/sites.json"

// Errors of Check and Choose, each wrapped with what it is about.
var (
	ErrUnknownComponent = errors.New("no such component in the site list")
	ErrUnknownSite      = errors.New("no such fault site")
	ErrNotInComponent   = errors.New("fault site not in that component")
	ErrNoSiteOfType     = errors.New("no fault site of that type")
	ErrUnknownType      = errors.New("unknown fault type")
)

// Read reads a site list file. A missing file is an error that
// errors.Is(err, fs.ErrNotExist): a normal image has none.
func Read(path string) (*List, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l List
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("site list %s: %w", path, err)
	}
	return &l, nil
}

// Site is the site with id, or false.
func (l *List) Site(id uint32) (Site, bool) {
	for _, s := range l.Sites {
		if s.ID == id {
			return s, true
		}
	}
	return Site{}, false
}

// Check returns the site with id if binary (a key of Components) links
// its package.
func (l *List) Check(binary string, id uint32) (Site, error) {
	pkgs, ok := l.Components[binary]
	if !ok {
		return Site{}, fmt.Errorf("%w: %s", ErrUnknownComponent, binary)
	}
	s, ok := l.Site(id)
	if !ok {
		return Site{}, fmt.Errorf("%w: %d (the list has %d)", ErrUnknownSite, id, len(l.Sites))
	}
	if !slices.Contains(pkgs, s.Package) {
		return Site{}, fmt.Errorf("%w: site %d is in %s, which %s does not link", ErrNotInComponent, id, s.Package, binary)
	}
	return s, nil
}

// Choose picks a site of type t among those binary links, from seed: the
// same list, binary, type and seed choose the same site.
func (l *List) Choose(binary string, t Type, seed uint64) (Site, error) {
	pkgs, ok := l.Components[binary]
	if !ok {
		return Site{}, fmt.Errorf("%w: %s", ErrUnknownComponent, binary)
	}
	var of []Site
	for _, s := range l.Sites {
		if s.Type == t && slices.Contains(pkgs, s.Package) {
			of = append(of, s)
		}
	}
	if len(of) == 0 {
		return Site{}, fmt.Errorf("%w: %s links no %s site", ErrNoSiteOfType, binary, t)
	}
	r := rand.New(rand.NewPCG(seed, uint64(len(of))))
	return of[r.IntN(len(of))], nil
}
