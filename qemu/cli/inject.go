package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"keepnet/boot/ctl"
	"keepnet/kernel/fault/sitelist"
)

const injectUsage = `usage: keepnet inject NAME (--site ID | --type T) [--after N | --prob P] [--seed S] [--ctl PATH]
       keepnet inject --disarm NAME
       keepnet inject --sigkill NAME
       keepnet inject --sigstop NAME`

// inject arms a fault site in a component (the control verb inject), or
// disarms it; --sigkill and --sigstop are the kill verb with that signal,
// for the faults that need no faulty image.
func inject(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inject", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	site := fs.Uint("site", 0, "the fault site's id, from the image's site list (images/out/sites.json)")
	typ := fs.String("type", "", "a fault type ("+typeNames()+"); without --site, a site of it in the component, chosen by --seed")
	after := fs.Uint64("after", 0, "fire on the site's N-th hit (default: the first)")
	prob := fs.Float64("prob", 0, "fire on each hit with probability P instead (0 < P <= 1)")
	seed := fs.Uint64("seed", 0, "the seed that chooses a site of --type and draws --prob's hits (default: a random one, printed)")
	disarm := fs.Bool("disarm", false, "disarm the component's armed site")
	sigkill := fs.Bool("sigkill", false, "SIGKILL the component instead (the supervisor restarts it); needs no faulty image")
	sigstop := fs.Bool("sigstop", false, "SIGSTOP the component instead (hang detection restarts it); needs no faulty image")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), injectUsage)
		fs.PrintDefaults()
	}
	words, err := parseWords(fs, args)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case len(words) > 1:
		return usageError{fmt.Errorf("unexpected argument %q", words[1])}
	case len(words) == 0:
		return usageError{errors.New(injectUsage)}
	}
	name := words[0]

	modes := 0
	for _, m := range []bool{*disarm, *sigkill, *sigstop} {
		if m {
			modes++
		}
	}
	fault := set["site"] || set["type"] || set["after"] || set["prob"] || set["seed"]
	switch {
	case modes > 1:
		return usageError{errors.New("--disarm, --sigkill and --sigstop: one at a time")}
	case modes == 1 && fault:
		return usageError{errors.New("--disarm, --sigkill and --sigstop take no --site, --type, --after, --prob or --seed")}
	case *sigkill || *sigstop:
		sig := "KILL"
		if *sigstop {
			sig = "STOP"
		}
		return injectSignal(ctx, *ctlPath, name, sig, stdout)
	}

	req := ctl.Request{Verb: ctl.VerbInject, Name: name, Fault: ctl.Fault{Disarm: *disarm}}
	if !*disarm {
		switch {
		case *site == 0 && *typ == "":
			return usageError{errors.New("--site or --type is needed\n" + injectUsage)}
		case *site > 1<<32-1:
			return usageError{fmt.Errorf("--site %d: no such site", *site)}
		case set["after"] && set["prob"]:
			return usageError{errors.New("--after or --prob, not both")}
		case set["prob"] && !(*prob > 0 && *prob <= 1):
			return usageError{fmt.Errorf("--prob %g: want 0 < P <= 1", *prob)}
		case set["after"] && *after == 0:
			return usageError{errors.New("--after 0: hits count from 1")}
		}
		if *typ != "" {
			if _, err := sitelist.ParseType(*typ); err != nil {
				return usageError{fmt.Errorf("--type: %w", err)}
			}
		}
		if !set["seed"] {
			*seed = rand.Uint64()
		}
		req.Fault = ctl.Fault{Site: uint32(*site), Type: *typ, After: *after, Prob: *prob, Seed: *seed}
	}
	resp, err := ctl.Do(ctx, *ctlPath, req)
	if err != nil {
		return err
	}
	if !resp.OK || resp.Armed == nil {
		return errors.New(resp.Error)
	}
	fmt.Fprintln(stdout, "keepnet: inject "+name+": "+describeArmed(*resp.Armed, *site == 0 || set["prob"]))
	return nil
}

// injectSignal sends sig to the component through the kill verb.
func injectSignal(ctx context.Context, ctlPath, name, sig string, stdout io.Writer) error {
	resp, err := ctl.Do(ctx, ctlPath, ctl.Request{Verb: ctl.VerbKill, Name: name, Signal: sig})
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	then := "the supervisor restarts it"
	if sig == "STOP" {
		then = "hang detection restarts it"
	}
	fmt.Fprintf(stdout, "keepnet: inject %s: sent SIG%s; %s\n", name, sig, then)
	return nil
}

// describeArmed says in one line what inject armed; withSeed when the
// seed chose the site or draws the hits, so the run can be replayed.
func describeArmed(a ctl.Armed, withSeed bool) string {
	if a.Site == 0 {
		return fmt.Sprintf("disarmed generation %d", a.Generation)
	}
	kind := a.Type
	if a.Variant != "" {
		kind += " " + a.Variant
	}
	var b strings.Builder
	fmt.Fprintf(&b, "armed site %d (%s) at %s:%d", a.Site, kind, a.File, a.Line)
	if a.Func != "" {
		fmt.Fprintf(&b, " in %s", a.Func)
	}
	fmt.Fprintf(&b, ", generation %d; fires ", a.Generation)
	switch {
	case a.Prob > 0:
		fmt.Fprintf(&b, "on each hit with probability %g", a.Prob)
	case a.After > 1:
		fmt.Fprintf(&b, "on hit %d", a.After)
	default:
		b.WriteString("on the first hit")
	}
	if withSeed {
		fmt.Fprintf(&b, " (seed %d)", a.Seed)
	}
	return b.String()
}

func typeNames() string {
	names := make([]string, len(sitelist.Types))
	for i, t := range sitelist.Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}
