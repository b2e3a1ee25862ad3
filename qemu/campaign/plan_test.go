package campaign

import (
	"slices"
	"testing"

	"keepnet/kernel/fault/sitelist"
)

// testList has a few sites in udp's, ip's and the driver's packages, and
// one in the channel package everyone links.
func testList() *sitelist.List {
	return &sitelist.List{
		Components: map[string][]string{
			"udp": {"keepnet/servers/udp", "keepnet/kernel/channel"},
			"ip":  {"keepnet/servers/ip", "keepnet/kernel/channel"},
			"nic": {"keepnet/drivers/nic", "keepnet/kernel/channel"},
		},
		Sites: []sitelist.Site{
			{ID: 1, Type: sitelist.TypePanic, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 10},
			{ID: 2, Type: sitelist.TypeCond, Package: "keepnet/servers/udp", File: "servers/udp/udp.go", Line: 20},
			{ID: 3, Type: sitelist.TypePanic, Package: "keepnet/servers/ip", File: "servers/ip/ip.go", Line: 5},
			{ID: 4, Type: sitelist.TypeDrop, Package: "keepnet/kernel/channel", File: "kernel/channel/channel.go", Line: 7},
			{ID: 5, Type: sitelist.TypePanic, Package: "keepnet/drivers/nic", File: "drivers/nic/run.go", Line: 3},
		},
	}
}

func TestPlanRoundRobinAndLinkedSites(t *testing.T) {
	l := testList()
	p := Plan{Components: []string{"udp", "ip", "e1000.0"}, Faults: 30, Seed: 7}
	faults, err := p.List(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(faults) != 30 {
		t.Fatalf("%d faults, want 30", len(faults))
	}
	for i, f := range faults {
		if want := p.Components[i%3]; f.Component != want {
			t.Errorf("fault %d is in %s, want %s (round robin)", i, f.Component, want)
		}
		if f.Mode != ModeSite {
			t.Errorf("fault %d: mode %s, want site", i, f.Mode)
		}
		if _, err := l.Check(BinaryOf(l, f.Component), f.Site.ID); err != nil {
			t.Errorf("fault %d: %v", i, err)
		}
	}
}

func TestPlanReproducible(t *testing.T) {
	l := testList()
	p := Plan{Components: []string{"udp", "ip"}, Faults: 20, Seed: 3, Signals: 0.3}
	a, _ := p.List(l)
	b, _ := p.List(l)
	if !slices.Equal(a, b) {
		t.Errorf("the same plan and seed gave two lists:\n%v\n%v", a, b)
	}
	p.Seed = 4
	c, _ := p.List(l)
	if slices.Equal(a, c) {
		t.Errorf("seeds 3 and 4 gave the same list: %v", a)
	}
	signals := 0
	for _, f := range a {
		if f.Mode != ModeSite {
			signals++
		}
	}
	if signals == 0 || signals == len(a) {
		t.Errorf("%d signal faults of %d with Signals 0.3", signals, len(a))
	}
}

func TestPlanTypesAndSites(t *testing.T) {
	l := testList()
	faults, err := Plan{Components: []string{"udp"}, Faults: 10, Types: []sitelist.Type{sitelist.TypeCond}}.List(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range faults {
		if f.Site.ID != 2 {
			t.Errorf("--types cond chose %v", f)
		}
	}
	faults, err = Plan{Components: []string{"udp"}, Faults: 3, Sites: []uint32{1, 4}}.List(l)
	if err != nil {
		t.Fatal(err)
	}
	if got := []uint32{faults[0].Site.ID, faults[1].Site.ID, faults[2].Site.ID}; !slices.Equal(got, []uint32{1, 4, 1}) {
		t.Errorf("--sites 1,4 armed %v, want [1 4 1]", got)
	}
	if _, err := (Plan{Components: []string{"ip"}, Faults: 1, Sites: []uint32{1}}).List(l); err == nil {
		t.Error("a udp site planned in ip: no error")
	}
	if _, err := (Plan{Components: []string{"ip"}, Faults: 1, Types: []sitelist.Type{sitelist.TypeLoop}}).List(l); err == nil {
		t.Error("a type ip has no site of: no error")
	}
}

func TestPlanSignalsOnly(t *testing.T) {
	faults, err := Plan{Components: DefaultComponents, PerComponent: 4, Signals: 1}.List(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(faults) != 4*len(DefaultComponents) {
		t.Fatalf("%d faults, want %d", len(faults), 4*len(DefaultComponents))
	}
	for _, f := range faults {
		if f.Mode != ModeSIGKILL && f.Mode != ModeSIGSTOP {
			t.Errorf("signals only planned %v", f)
		}
	}
	if _, err := (Plan{Components: []string{"udp"}, Faults: 1}).List(nil); err == nil {
		t.Error("site faults without a site list: no error")
	}
}

func TestPlanHome(t *testing.T) {
	faults, err := Plan{Components: []string{"udp", "e1000.0"}, Faults: 20, Home: 1, Seed: 2}.List(testList())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range faults {
		if f.Site.Package == "keepnet/kernel/channel" {
			t.Errorf("Home 1 chose a site outside %s's own packages: %v", f.Component, f)
		}
	}
}
