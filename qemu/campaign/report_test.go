package campaign

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testRuns() []Record {
	return []Record{
		{Run: 1, Component: "udp", Mode: ModeSite, Type: "panic", Site: 1, Where: "servers/udp/udp.go:10", Activated: true, Fired: true,
			Detection: DetectPanic, Restarted: []string{"udp"}, Outcome: OutcomeTransparent, UDPTransparent: true, RecoveryMS: 300, At: 10},
		{Run: 2, Component: "tcp", Mode: ModeSIGKILL, Type: "sigkill", Activated: true, Detection: DetectKilled,
			Outcome: OutcomeTCPBroken, UDPTransparent: true, TCPBroken: true, RecoveryMS: 900, Incidents: []string{"broken echo: EOF"}, At: 20},
		{Run: 3, Component: "ip", Mode: ModeSite, Type: "cond", Site: 3, Where: "servers/ip/ip.go:5", Activated: false,
			Detection: DetectNone, Outcome: OutcomeTransparent, UDPTransparent: true, RecoveryMS: 100, At: 30},
		{Run: 4, Component: "httpd", Mode: ModeSite, Type: "drop", Site: 4, Where: "servers/socket/sock.go:217", Activated: true, Fired: true,
			Detection: DetectNone, Outcome: OutcomeCorrupted, UDPTransparent: true, Corruption: true, RecoveryMS: 50,
			Incidents: []string{"wrong bytes in download: offset 7"}, At: 40},
		{Run: 5, Component: "e1000.0", Mode: ModeSIGSTOP, Type: "sigstop", Activated: true, Detection: DetectHang,
			Outcome: OutcomeReboot, RecoveryMS: -1, Note: "rebooted", At: 50},
	}
}

func TestSum(t *testing.T) {
	got := Sum(testRuns())
	if got.Runs != 5 || got.Activated != 4 || got.Crashed != 3 || got.Corruption != 1 || got.Reboots != 1 || got.TCPBroken != 1 || got.UDPTransparent != 2 {
		t.Errorf("Sum = %+v", got)
	}
	if got.CrashesBy["udp"] != 1 || got.CrashesBy["ip"] != 0 || got.CrashesBy["e1000.0"] != 1 {
		t.Errorf("crashes by component = %v", got.CrashesBy)
	}
	if got.Outcomes["transparent"] != 1 || got.Outcomes["tcp-broken"] != 1 || got.Outcomes["reboot"] != 1 {
		t.Errorf("outcomes of the crashes = %v (the corrupted run crashed nothing)", got.Outcomes)
	}
}

func TestReportSave(t *testing.T) {
	dir := t.TempDir()
	r := &Report{
		Settings: Settings{Seed: 9, Components: DefaultComponents, Faults: 5, Image: "initramfs-faulty.cpio", Accel: "tcg", HostCPUs: 2},
		Started:  time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), Seconds: 61, Runs: testRuns(),
		Throughput: []Sample{{0.5, 100}, {1.5, 120}, {2.5, 0}, {3.5, 110}},
	}
	if err := r.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 5 || back.Totals.Crashed != 3 || back.Runs[3].Where != "servers/socket/sock.go:217" {
		t.Errorf("report.json read back: %d runs, totals %+v", len(back.Runs), back.Totals)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| TCP / tcp | 25 | 1 | 1 |",                   // Table III: the paper's 25 beside keepnet's 1 crash in 1 run
		"| UDP / udp | 10 | 1 | 1 |",                   //
		"| Driver / e1000.0 | 16 | 1 | 1 |",            //
		"| — / httpd | — | 0 | 1 |",                    // a component the paper did not have
		"| **total** | **100** | **3** | 5 |",          //
		"| Fully transparent crashes | 70 | 1 | 33% |", // Table IV, of the 3 crashes
		"| Reachable without a reboot (+ after a manual restart) | 90 (+6) | 2 | 67% |",
		"| Crashes that broke TCP connections | 30 | 1 | 33% |",
		"| Reboot needed | 3 | 1 | 33% |",
		"| Silent corruption (a wrong byte reached the workload) | not measured | 0 |",
		"Of all 5 runs: 1 with a wrong byte",
		"| udp | 1 | 300 | 300 | 300 |", // recovery per component
		"| 4 | httpd | drop #4 | servers/socket/sock.go:217",
		"wrong bytes in download: offset 7",
		"![download throughput](throughput.png)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	f, err := os.Open(filepath.Join(dir, "throughput.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("throughput.png: %v", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*.partial")); len(leftovers) > 0 {
		t.Errorf("partial files left: %v", leftovers)
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if got := quantile(xs, 0.9); got != 9 {
		t.Errorf("p90 of 1..10 = %v, want 9", got)
	}
	if got := quantile([]float64{42}, 0.9); got != 42 {
		t.Errorf("p90 of one = %v, want 42", got)
	}
}
