package pid1

import (
	"errors"
	"strings"
	"testing"

	"keepnet/boot/hub"
	"keepnet/servers/pf"
)

// Init writes the boot rules where pf reads them; a rule set the parser
// refuses is answered with its line and column and changes nothing; a
// good one replaces the rules in force.
func TestPFLoad(t *testing.T) {
	h, err := hub.New([]hub.Node{{Name: "pf", Kept: []hub.KeptSpec{{Name: pf.RulesName, Size: pf.RulesBytes}}}}, hub.Shared(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	const boot = "set default block\npass in proto tcp to any port 80\n"
	r, err := setUpPF(h, boot)
	if err != nil {
		t.Fatal(err)
	}
	inForce := func() string {
		text, _, ok := pf.ReadRules(r.mem)
		if !ok {
			t.Fatal("no whole rule set in pf's memory")
		}
		return text
	}
	if got := inForce(); got != boot {
		t.Fatalf("rules after boot = %q, want %q", got, boot)
	}
	err = r.load("set default block\npass in proto tcp to any port 80\npass in proto udp port 7\n")
	var pe *pf.ParseError
	if !errors.As(err, &pe) || pe.Line != 3 || !strings.Contains(err.Error(), "line 3, column") {
		t.Errorf("load of a bad line 3 = %v, want a *pf.ParseError at line 3", err)
	}
	if got := inForce(); got != boot {
		t.Errorf("rules after a refused load = %q, want those in force before, %q", got, boot)
	}
	const next = "pass all\n"
	if err := r.load(next); err != nil {
		t.Fatalf("load(%q) = %v", next, err)
	}
	if got := inForce(); got != next {
		t.Errorf("rules after a load = %q, want %q", got, next)
	}
	if err := (*pfRules)(nil).load(next); !errors.Is(err, errNoPF) {
		t.Errorf("load without a packet filter = %v, want errNoPF", err)
	}
}
