package campaign

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"keepnet/kernel/fault/sitelist"
)

// How a fault is injected.
const (
	ModeSite    = "site"    // a compiled-in fault site, armed (keepnet inject --site)
	ModeSIGKILL = "sigkill" // the process killed (keepnet inject --sigkill)
	ModeSIGSTOP = "sigstop" // the process stopped: a hang (keepnet inject --sigstop)
)

// DefaultComponents are the components a campaign faults by default: the
// network path, the packet filter (the appliance then boots with Rules)
// and the store.
var DefaultComponents = []string{"e1000.0", "ip", "pf", "udp", "tcp", "syscall", "store"}

// Fault is one planned injection.
type Fault struct {
	Component string
	Mode      string
	Site      sitelist.Site // ModeSite
}

// Kind is the fault's type as the report shows it: the site's fault type,
// or the signal.
func (f Fault) Kind() string {
	if f.Mode == ModeSite {
		return string(f.Site.Type)
	}
	return f.Mode
}

func (f Fault) String() string {
	if f.Mode != ModeSite {
		return f.Component + " " + f.Mode
	}
	return fmt.Sprintf("%s %s site %d (%s)", f.Component, f.Site.Type, f.Site.ID, f.Site.Where())
}

// Plan says which faults a campaign injects.
type Plan struct {
	Components []string
	// Faults is how many in all; PerComponent, if set, is how many each
	// component gets instead (Faults = PerComponent × components).
	Faults, PerComponent int
	// Types limits the site faults to these fault types (all if empty).
	Types []sitelist.Type
	// Seed chooses every site and signal: the same plan, site list and
	// seed give the same faults in the same order.
	Seed uint64
	// Signals is the share of faults that are SIGKILL or SIGSTOP instead of
	// a fault site (1: signals only, no faulty image needed). A signal
	// fault is a SIGSTOP one time in four.
	Signals float64
	// Sites, if set, are the sites to arm, in turn, instead of sites chosen
	// at random (each in the components in turn that link it).
	Sites []uint32
	// Home is the share of site faults drawn from the component's own
	// packages (HomePackages) rather than from everything it links. A
	// component links much code it never runs — syscall links the store's
	// server along with its client, udp the TCP header parser — so without
	// it most faults are never activated.
	Home float64
}

// HomePackages are a component's own packages, by its binary's name: the
// code the paper injected its faults into.
func HomePackages(bin string) []string {
	switch bin {
	case "nic":
		return []string{"keepnet/drivers/nic", "keepnet/drivers/link", "keepnet/drivers/pci", "keepnet/e1000"}
	case "syscall":
		return []string{"keepnet/servers/syscallsrv"}
	case "httpd", "echo", "resolver", "sshd":
		return []string{"keepnet/servers/socket"}
	}
	return []string{"keepnet/servers/" + bin}
}

// Total is how many faults the plan has.
func (p Plan) Total() int {
	if p.PerComponent > 0 {
		return p.PerComponent * len(p.Components)
	}
	return p.Faults
}

// Faults lists the plan's faults, round-robin over the components: for
// each, with the Signals share a signal, else a fault type drawn uniformly
// from Types (so that rare types such as a loop get their share, as in
// EDFI's campaigns), then a site of that type drawn uniformly from those the
// component links. list may be nil when Signals is 1.
func (p Plan) List(list *sitelist.List) ([]Fault, error) {
	if len(p.Components) == 0 {
		return nil, errors.New("no components to fault")
	}
	r := rand.New(rand.NewPCG(p.Seed, 0x6b65_65706e6574)) // "keepnet"
	var out []Fault
	for i := 0; i < p.Total(); i++ {
		comp := p.Components[i%len(p.Components)]
		f, err := p.next(r, list, comp, i)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// next is fault number i, in comp.
func (p Plan) next(r *rand.Rand, list *sitelist.List, comp string, i int) (Fault, error) {
	// Draw every number every time, so that fault i does not depend on
	// the kinds of the faults before it.
	signal, stop, typeDraw, siteDraw := r.Float64() < p.Signals, r.IntN(4) == 0, r.Uint64(), r.Uint64()
	home := r.Float64() < p.Home
	if signal {
		mode := ModeSIGKILL
		if stop {
			mode = ModeSIGSTOP
		}
		return Fault{Component: comp, Mode: mode}, nil
	}
	if list == nil {
		return Fault{}, errors.New("site faults need the faulty image's site list")
	}
	bin := BinaryOf(list, comp)
	if home && len(p.Sites) == 0 {
		list = restrict(list, bin, HomePackages(bin))
	}
	if len(p.Sites) > 0 {
		id := p.Sites[i%len(p.Sites)]
		s, err := list.Check(bin, id)
		if err != nil {
			return Fault{}, fmt.Errorf("%s: %w", comp, err)
		}
		return Fault{Component: comp, Mode: ModeSite, Site: s}, nil
	}
	types := p.Types
	if len(types) == 0 {
		types = sitelist.Types
	}
	// Only the types the component has a site of: a type it lacks would
	// otherwise end the campaign.
	var have []sitelist.Type
	for _, t := range types {
		if _, err := list.Choose(bin, t, 0); err == nil {
			have = append(have, t)
		}
	}
	if len(have) == 0 {
		return Fault{}, fmt.Errorf("%s (/bin/%s) has no fault site of type %s", comp, bin, joinTypes(types))
	}
	s, err := list.Choose(bin, have[typeDraw%uint64(len(have))], siteDraw)
	if err != nil {
		return Fault{}, fmt.Errorf("%s: %w", comp, err)
	}
	return Fault{Component: comp, Mode: ModeSite, Site: s}, nil
}

// restrict is list with bin linking only those of pkgs it links; list
// itself if that leaves it no package.
func restrict(list *sitelist.List, bin string, pkgs []string) *sitelist.List {
	var keep []string
	for _, p := range list.Components[bin] {
		if slices.Contains(pkgs, p) {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return list
	}
	return &sitelist.List{Components: map[string][]string{bin: keep}, Sites: list.Sites}
}

// BinaryOf is the name the site list knows a component by, that of its
// binary: the drivers e1000.0, e1000.1... all run /bin/nic.
func BinaryOf(list *sitelist.List, comp string) string {
	if _, ok := list.Components[comp]; ok {
		return comp
	}
	if strings.HasPrefix(comp, "e1000.") {
		return "nic"
	}
	return comp
}

// ParseTypes reads a comma-separated list of fault types.
func ParseTypes(s string) ([]sitelist.Type, error) {
	var out []sitelist.Type
	for _, w := range splitList(s) {
		t, err := sitelist.ParseType(w)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func joinTypes(ts []sitelist.Type) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, w := range strings.Split(s, ",") {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, w)
		}
	}
	return out
}
