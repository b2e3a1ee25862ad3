package itest

import (
	"maps"
	"slices"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/qemu/report"
)

// permbStatus is a status with the guest's busy time, its context
// switches and tcp's (generation gen) and ip's figures.
func permbStatus(busyMs, ctxt int64, gen int, tcpMs, tcpSw, ipMs, ipSw int64) ctl.Status {
	return ctl.Status{
		CPU: &ctl.CPUTimes{User: busyMs / 2, System: busyMs / 4, IRQ: busyMs / 4, Idle: 99999, Ctxt: ctxt},
		Components: []ctl.Component{
			{Name: "tcp", Generation: gen, CPUMillis: tcpMs, Switches: &ctl.Switches{Voluntary: tcpSw - 1, Involuntary: 1}},
			{Name: "ip", Generation: 1, CPUMillis: ipMs, Switches: &ctl.Switches{Voluntary: ipSw}},
		},
	}
}

func TestTallyPerMB(t *testing.T) {
	before := permbStatus(1000, 5000, 1, 300, 700, 100, 200)
	after := permbStatus(3000, 9000, 1, 900, 1500, 400, 1200)
	for _, tc := range []struct {
		name string
		k    tally
		want usage
	}{
		{"cpu", cpuTime, usage{guest: 1000, comps: map[string]float64{"tcp": 300, "ip": 150}}},
		{"switches", ctxSwitches, usage{guest: 2000, comps: map[string]float64{"tcp": 400, "ip": 500}}},
	} {
		got := tc.k.perMB(before, after, 2_000_000)
		if got.guest != tc.want.guest || !maps.Equal(got.comps, tc.want.comps) {
			t.Errorf("%s: perMB over 2 MB = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestTallyPerMBLeavesOut(t *testing.T) {
	before := permbStatus(1000, 5000, 1, 300, 700, 100, 200)
	after := permbStatus(3000, 9000, 2, 50, 30, 400, 1200) // tcp restarted
	after.Components = append(after.Components, ctl.Component{Name: "e1000.0", Generation: 1, CPUMillis: 70})
	got := ctxSwitches.perMB(before, after, 1_000_000)
	if want := map[string]float64{"ip": 1000}; !maps.Equal(got.comps, want) {
		t.Errorf("switches of a restarted tcp and of a component seen once: comps %v, want %v", got.comps, want)
	}
	before.CPU = nil
	if got := cpuTime.perMB(before, after, 1_000_000); got.guest != 0 {
		t.Errorf("guest CPU without the machine's times before: %v, want 0", got.guest)
	}
}

func TestUsageInto(t *testing.T) {
	m := map[string]float64{"upload: guest": 1}
	usage{guest: 20, comps: map[string]float64{"tcp": 5}}.into("download", m)
	want := map[string]float64{"upload: guest": 1, "download: guest": 20, "download: tcp": 5}
	if !maps.Equal(m, want) {
		t.Errorf("into = %v, want %v", m, want)
	}
}

func TestPerUnitSection(t *testing.T) {
	like := &report.Comparison{GroupBy: "direction", Groups: []string{"download", "upload"},
		Stacks: [2]string{"keepnet", "linux"}, Date: time.Unix(0, 0), HostCPUs: 2}
	s := newPerUnitSection(like, "Switches", "switches/MB", "What.", "switches/MB of each process")
	for _, v := range []float64{10, 30, 20} {
		s.add("download", "keepnet", usage{guest: v, comps: map[string]float64{"tcp": v / 10, "ip": v / 5}})
	}
	s.add("download", "linux", usage{guest: 4, comps: map[string]float64{"httpd": 1}})
	s.add("upload", "linux", usage{guest: 8})
	if got := s.c.Ratio("download"); got != 5 {
		t.Errorf("download ratio %v, want 5", got)
	}
	want := []string{
		"keepnet's components, download (median switches/MB of each process): ip 4.00, tcp 2.00.",
		"keepnet's components, upload (median switches/MB of each process): .",
		"linux's processes, download (median switches/MB of each process): httpd 1.00.",
	}
	if got := s.notes(); !slices.Equal(got, want) {
		t.Errorf("notes = %q, want %q", got, want)
	}
}

func TestAddKeyed(t *testing.T) {
	c := &report.Comparison{}
	addKeyed(c, "new", map[string]float64{"upload: tcp": 1, "download: tcp": 2})
	addKeyed(c, "old", map[string]float64{"download: ip": 3, "upload: tcp": 4})
	if want := []string{"download: ip", "download: tcp", "upload: tcp"}; !slices.Equal(c.Groups, want) {
		t.Errorf("groups %q, want %q", c.Groups, want)
	}
	if got := c.Median("upload: tcp", "old"); got != 4 {
		t.Errorf("old's upload: tcp = %v, want 4", got)
	}
}
