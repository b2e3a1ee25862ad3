package pid1

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/hub"
	"keepnet/boot/journal"
	"keepnet/boot/supervisor"
	"keepnet/kernel/fault/sitelist"
	"keepnet/kernel/wiring"
)

// testSites is a site list: udp links kernel/channel and servers/udp, the
// driver (/bin/nic) kernel/channel and e1000.
var testSites = sitelist.List{
	Components: map[string][]string{
		"udp": {"keepnet/kernel/channel", "keepnet/servers/udp"},
		"nic": {"keepnet/e1000", "keepnet/kernel/channel"},
	},
	Sites: []sitelist.Site{
		{ID: 1, Type: sitelist.TypePanic, Package: "keepnet/kernel/channel", File: "kernel/channel/channel.go", Line: 100, Func: "Send"},
		{ID: 2, Type: sitelist.TypeCond, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 20, Func: "deliver"},
		{ID: 3, Type: sitelist.TypeCond, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 30, Func: "deliver"},
		{ID: 4, Type: sitelist.TypeOperand, Variant: "plus-one", Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 40, Func: "send"},
		{ID: 5, Type: sitelist.TypeCond, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 50, Func: "send"},
		{ID: 6, Type: sitelist.TypeDrop, Package: "keepnet/e1000", File: "e1000/dev.go", Line: 60, Func: "Reset"},
	},
}

var testSpecs = []supervisor.Spec{
	{Name: "store", Path: "/bin/store"},
	{Name: "e1000.0", Path: "/bin/nic"},
	{Name: "udp", Path: "/bin/udp"},
}

// armed is one Arm the fake hub was asked to send.
type armed struct {
	name string
	arm  wiring.FaultArm
}

// testInjector reads testSites from a file and arms through a fake hub
// whose components are all in generation 4.
func testInjector(t *testing.T) (*injector, *[]armed) {
	t.Helper()
	b, err := json.Marshal(testSites)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "sites.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	in := newInjector(p, testSpecs)
	var sent []armed
	in.arm = func(name string, a wiring.FaultArm) (int, error) {
		sent = append(sent, armed{name, a})
		return 4, nil
	}
	return in, &sent
}

func TestInjectArmsSite(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fault    ctl.Fault
		wantArm  wiring.FaultArm
		wantSite ctl.Armed
	}{
		{"udp", ctl.Fault{Site: 4, After: 2, Seed: 7}, wiring.FaultArm{Site: 4, After: 2, Seed: 7},
			ctl.Armed{Component: "udp", Generation: 4, Site: 4, Type: "operand", Variant: "plus-one", File: "servers/udp/udp.go", Line: 40, Func: "send", After: 2, Seed: 7}},
		{"udp", ctl.Fault{Site: 1, Type: "panic", Prob: 0.5}, wiring.FaultArm{Site: 1, Prob: 0.5}, // kernel/channel: in every component
			ctl.Armed{Component: "udp", Generation: 4, Site: 1, Type: "panic", File: "kernel/channel/channel.go", Line: 100, Func: "Send", Prob: 0.5}},
		{"e1000.0", ctl.Fault{Type: "drop"}, wiring.FaultArm{Site: 6}, // the driver's binary is nic
			ctl.Armed{Component: "e1000.0", Generation: 4, Site: 6, Type: "drop", File: "e1000/dev.go", Line: 60, Func: "Reset"}},
		{"udp", ctl.Fault{Disarm: true}, wiring.FaultArm{},
			ctl.Armed{Component: "udp", Generation: 4}},
	} {
		in, sent := testInjector(t)
		got, err := in.Inject(tt.name, tt.fault)
		if err != nil {
			t.Errorf("Inject(%s, %+v): %v", tt.name, tt.fault, err)
			continue
		}
		if got != tt.wantSite {
			t.Errorf("Inject(%s, %+v) = %+v, want %+v", tt.name, tt.fault, got, tt.wantSite)
		}
		if want := []armed{{tt.name, tt.wantArm}}; len(*sent) != 1 || (*sent)[0] != want[0] {
			t.Errorf("Inject(%s, %+v) sent %+v, want %+v", tt.name, tt.fault, *sent, want)
		}
	}
}

// Each error names what is wrong, and nothing is armed.
func TestInjectErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fault   ctl.Fault
		wantErr string
		is      error
	}{
		{"pf", ctl.Fault{Site: 1}, `unknown component "pf"`, nil},
		{"store", ctl.Fault{Site: 1}, "store", sitelist.ErrUnknownComponent}, // in the table, not in the list
		{"udp", ctl.Fault{Site: 99}, "99", sitelist.ErrUnknownSite},
		{"udp", ctl.Fault{Site: 6}, "keepnet/e1000", sitelist.ErrNotInComponent},
		{"e1000.0", ctl.Fault{Site: 2}, "e1000.0 (/bin/nic)", sitelist.ErrNotInComponent},
		{"e1000.0", ctl.Fault{Type: "cond"}, "no cond site", sitelist.ErrNoSiteOfType},
		{"udp", ctl.Fault{Site: 2, Type: "drop"}, "site 2 is a cond site, not drop", nil},
		{"udp", ctl.Fault{Type: "bitrot"}, `"bitrot"`, sitelist.ErrUnknownType},
	} {
		in, sent := testInjector(t)
		_, err := in.Inject(tt.name, tt.fault)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("Inject(%s, %+v) = %v, want an error with %q (%v)", tt.name, tt.fault, err, tt.wantErr, tt.is)
		}
		if len(*sent) != 0 {
			t.Errorf("Inject(%s, %+v) armed %+v, want nothing", tt.name, tt.fault, *sent)
		}
	}
}

// A normal image has no site list: inject says how to build one that has.
func TestInjectWithoutSites(t *testing.T) {
	in := newInjector(filepath.Join(t.TempDir(), "sites.json"), testSpecs)
	in.arm = func(string, wiring.FaultArm) (int, error) { t.Fatal("armed without a site list"); return 0, nil }
	for _, f := range []ctl.Fault{{Site: 1}, {Disarm: true}} {
		if _, err := in.Inject("udp", f); !errors.Is(err, ErrNoFaultSites) || !strings.Contains(err.Error(), "make image FAULTS=1") {
			t.Errorf("Inject(udp, %+v) in a normal image = %v, want ErrNoFaultSites", f, err)
		}
	}
}

// With a type and no site, the seed chooses: the same seed the same site
// (and that seed is the fault's too), other seeds the other sites.
func TestInjectTypeSameSeedSameSite(t *testing.T) {
	in, sent := testInjector(t)
	seen := map[uint32]bool{}
	for seed := range uint64(32) {
		a, err := in.Inject("udp", ctl.Fault{Type: "cond", Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		again, _ := in.Inject("udp", ctl.Fault{Type: "cond", Seed: seed})
		if a.Site != again.Site || a.Type != "cond" {
			t.Fatalf("seed %d chose site %d (%s), then site %d", seed, a.Site, a.Type, again.Site)
		}
		if last := (*sent)[len(*sent)-1]; last.arm != (wiring.FaultArm{Site: a.Site, Seed: seed}) {
			t.Fatalf("seed %d sent %+v, want site %d with seed %d", seed, last.arm, a.Site, seed)
		}
		seen[a.Site] = true
	}
	if len(seen) != 3 {
		t.Errorf("32 seeds chose sites %v, want each of udp's cond sites 2, 3 and 5", seen)
	}
}

// The whole way in one process: inject, through the hub, reaches the
// component's wiring as a TypeArm, which its reader hands to ArmFault (a
// faulty image's kernel/fault) with the site and its trigger.
func TestInjectReachesComponent(t *testing.T) {
	got := make(chan wiring.FaultArm, 1)
	wiring.ArmFault = func(a wiring.FaultArm) { got <- a }
	defer func() { wiring.ArmFault = nil }()

	h, err := hub.New([]hub.Node{{Name: "udp"}}, hub.Shared(), func(string, ...any) {}) // its goroutines outlive the test
	if err != nil {
		t.Fatal(err)
	}
	files, err := h.ExtraFiles("udp")(func() {})
	if err != nil {
		t.Fatal(err)
	}
	c, err := wiring.FromFile(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wiring.Join(c, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	w, err := wiring.Watch(c)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); w.Close() }() // the socket first: Close waits for the reader

	in, _ := testInjector(t)
	in.arm = h.Arm
	a, err := in.Inject("udp", ctl.Fault{Site: 3, Prob: 0.25, Seed: 11})
	if err != nil || a.Generation != 1 || a.Line != 30 {
		t.Fatalf("Inject(udp, site 3) = %+v, %v; want site 3 (line 30) in generation 1", a, err)
	}
	select {
	case arm := <-got:
		if want := (wiring.FaultArm{Site: 3, Prob: 0.25, Seed: 11}); arm != want {
			t.Errorf("the component armed %+v, want %+v", arm, want)
		}
	case <-time.After(time.Minute): // only a lost message takes this long
		t.Fatal("the Arm never reached the component's ArmFault")
	}
}

// Every arming and disarming is an event in init's journal, with the site
// and its trigger.
func TestInjectJournal(t *testing.T) {
	in, _ := testInjector(t)
	j := journal.New(nil)
	in.journal = j
	if _, err := in.Inject("udp", ctl.Fault{Site: 4, After: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Inject("udp", ctl.Fault{Disarm: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Inject("udp", ctl.Fault{Site: 99}); err == nil {
		t.Fatal("Inject(udp, site 99) armed a site the list lacks")
	}
	evs, _ := j.Events(0, 1<<20)
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s %d %s %s", e.Component, e.Generation, e.Kind, e.Reason))
	}
	want := []string{
		"udp 4 inject armed site 4 (operand, servers/udp/udp.go:40), firing on hit 2",
		"udp 4 inject disarmed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("journal:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
