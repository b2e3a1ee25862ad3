package pid1

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"path"
	"sync"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
	"keepnet/boot/supervisor"
	"keepnet/kernel/fault/sitelist"
	"keepnet/kernel/wiring"
)

// SiteList is where a faulty image holds its site list (images, `make
// image FAULTS=1`); a normal image has none.
const SiteList = "/" + sitelist.Path

// ErrNoFaultSites answers inject in an image without a site list.
var ErrNoFaultSites = errors.New("this image has no fault sites: build it with make image FAULTS=1")

// injector answers the control verb inject (issue 13): it finds the site
// asked for in the image's site list — by id, or one of a fault type chosen
// from the seed — checks that the component links that site's package, and
// has the hub send the component's running process an Arm (kernel/wiring,
// "Fault injection"), which arms it there.
//
// Unlike hook, inject is not gated by keepnet.testhooks. A test hook is
// code every image carries, so a production image needs a switch that
// keeps it off; a fault site exists only in a faulty image, which is built
// for experiments and nothing else, so building one is the opt-in. A normal
// image has no site list and inject refuses (ErrNoFaultSites); were an Arm
// sent anyway, its components would ignore it (they link no kernel/fault).
// The faults that need no faulty image, `keepnet inject --sigkill` and
// --sigstop, are the kill verb, allowed as kill always is.
type injector struct {
	path string
	// binary is the name the site list knows each component by, that of
	// its binary (e1000.0 runs /bin/nic: "nic").
	binary map[string]string
	// arm sends the Arm to the component's current generation and
	// returns that generation (hub.Arm); nil without a wiring.
	arm func(name string, a wiring.FaultArm) (generation int, err error)

	// journal, if not nil, gets an event for every arming and disarming.
	journal *journal.Journal

	once sync.Once // reads the site list, at the first inject
	list *sitelist.List
	err  error
}

// newInjector reads the site list at list, for the components of specs;
// set arm before the first Inject.
func newInjector(list string, specs []supervisor.Spec) *injector {
	in := &injector{path: list, binary: map[string]string{}}
	for _, s := range specs {
		in.binary[s.Name] = path.Base(s.Path)
	}
	return in
}

// sites is the site list, read once.
func (in *injector) sites() (*sitelist.List, error) {
	in.once.Do(func() {
		in.list, in.err = sitelist.Read(in.path)
		if errors.Is(in.err, fs.ErrNotExist) {
			in.err = ErrNoFaultSites
		}
	})
	return in.list, in.err
}

// Inject arms the site f names in the component name, or disarms it.
func (in *injector) Inject(name string, f ctl.Fault) (ctl.Armed, error) {
	list, err := in.sites()
	if err != nil {
		return ctl.Armed{}, err
	}
	if in.arm == nil {
		return ctl.Armed{}, errors.New("no component wiring")
	}
	bin, ok := in.binary[name]
	if !ok {
		return ctl.Armed{}, fmt.Errorf("unknown component %q", name)
	}
	who := name
	if bin != name {
		who = fmt.Sprintf("%s (/bin/%s)", name, bin)
	}
	if f.Disarm {
		gen, err := in.arm(name, wiring.FaultArm{})
		if err != nil {
			return ctl.Armed{}, err
		}
		log.Printf("fault injection: disarmed %s generation %d", name, gen)
		in.journal.Add(journal.Event{Component: name, Generation: gen, Kind: journal.Inject, Reason: "disarmed"})
		return ctl.Armed{Component: name, Generation: gen}, nil
	}
	var typ sitelist.Type
	if f.Type != "" {
		if typ, err = sitelist.ParseType(f.Type); err != nil {
			return ctl.Armed{}, err
		}
	}
	var s sitelist.Site
	if f.Site != 0 {
		s, err = list.Check(bin, f.Site)
		if err == nil && typ != "" && s.Type != typ {
			err = fmt.Errorf("site %d is a %s site, not %s", s.ID, s.Type, typ)
		}
	} else {
		s, err = list.Choose(bin, typ, f.Seed)
	}
	if err != nil {
		return ctl.Armed{}, fmt.Errorf("%s: %w", who, err)
	}
	gen, err := in.arm(name, wiring.FaultArm{Site: s.ID, After: f.After, Prob: f.Prob, Seed: f.Seed})
	if err != nil {
		return ctl.Armed{}, err
	}
	log.Printf("fault injection: armed site %d (%s, %s) in %s generation %d", s.ID, s.Type, s.Where(), name, gen)
	in.journal.Add(journal.Event{Component: name, Generation: gen, Kind: journal.Inject, Reason: fmt.Sprintf("armed site %d (%s, %s)%s", s.ID, s.Type, s.Where(), trigger(f))})
	return ctl.Armed{
		Component: name, Generation: gen,
		Site: s.ID, Type: string(s.Type), Variant: s.Variant, File: s.File, Line: s.Line, Func: s.Func,
		After: f.After, Prob: f.Prob, Seed: f.Seed,
	}, nil
}

// trigger says when an armed site fires, for the journal.
func trigger(f ctl.Fault) string {
	switch {
	case f.Prob != 0:
		return fmt.Sprintf(", firing with probability %g, seed %d", f.Prob, f.Seed)
	case f.After != 0:
		return fmt.Sprintf(", firing on hit %d", f.After)
	}
	return ", firing on the first hit"
}
