package campaign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"keepnet/qemu/report"
)

// Record is one run: the fault, what it did, and the verdict.
type Record struct {
	Run       int    `json:"run"` // from 1
	Component string `json:"component"`
	Mode      string `json:"mode"` // site, sigkill, sigstop
	Type      string `json:"type"` // the site's fault type, or the mode
	Site      uint32 `json:"site,omitempty"`
	Variant   string `json:"variant,omitempty"`
	Where     string `json:"where,omitempty"` // file:line
	Func      string `json:"func,omitempty"`

	Activated bool      `json:"activated"`
	Fired     bool      `json:"fired"` // the site's fault was injected (its console line)
	Detection Detection `json:"detection"`
	Restarted []string  `json:"restarted,omitempty"` // every component that restarted

	Outcome        Outcome `json:"outcome"`
	UDPTransparent bool    `json:"udp_transparent"`
	TCPBroken      bool    `json:"tcp_broken"`
	Corruption     bool    `json:"corruption"`
	Degraded       bool    `json:"degraded"`
	RecoveryMS     int64   `json:"recovery_ms"` // detection to traffic flowing; -1: not by itself

	RateBefore float64  `json:"rate_before_mbps"`
	RateAfter  float64  `json:"rate_after_mbps"`
	UDPLost    int64    `json:"udp_lost"`            // datagrams not echoed from the fault to the end of the run
	DNSAnswers int64    `json:"dns_answers"`         // resolver queries answered from the fault to the end of the run
	Incidents  []string `json:"incidents,omitempty"` // the workload's: what broke, what was wrong
	Note       string   `json:"note,omitempty"`
	At         float64  `json:"at_s"` // when it was injected, seconds since the campaign began
	Seconds    float64  `json:"seconds"`
}

// Crashed reports whether the run crashed or hung a component: the
// population of the paper's tables.
func (r Record) Crashed() bool { return r.Detection != DetectNone }

// Sample is one point of the download's throughput.
type Sample struct {
	At   float64 `json:"at_s"` // seconds since the campaign began
	Mbps float64 `json:"mbps"`
}

// Settings are what a campaign was run with: a resumed campaign must have
// the same.
type Settings struct {
	Seed         uint64   `json:"seed"`
	Components   []string `json:"components"`
	Faults       int      `json:"faults"`
	Types        []string `json:"types,omitempty"`
	Signals      float64  `json:"signals"` // share of SIGKILL/SIGSTOP faults
	Sites        []uint32 `json:"sites,omitempty"`
	Image        string   `json:"image"`
	Accel        string   `json:"accel"`
	HostCPUs     int      `json:"host_cpus"`
	SiteCount    int      `json:"site_count,omitempty"` // in the image's site list
	SiteListHash string   `json:"site_list_sha256,omitempty"`
}

// Report is a campaign's result, report.json.
type Report struct {
	Settings   Settings  `json:"settings"`
	Started    time.Time `json:"started"`
	Seconds    float64   `json:"seconds"` // running time, over every resumption
	Runs       []Record  `json:"runs"`
	Totals     Totals    `json:"totals"`
	Throughput []Sample  `json:"throughput,omitempty"`
}

// Totals sum the runs.
type Totals struct {
	Runs           int            `json:"runs"`
	Activated      int            `json:"activated"`
	Crashed        int            `json:"crashed"` // crashed or hung a component
	ByDetection    map[string]int `json:"by_detection"`
	CrashesBy      map[string]int `json:"crashes_by_component"`
	Outcomes       map[string]int `json:"outcomes"`        // of the crashed runs
	UDPTransparent int            `json:"udp_transparent"` // of the crashed runs
	TCPBroken      int            `json:"tcp_broken"`      // of the crashed runs
	Corruption     int            `json:"corruption"`      // of all runs
	Degraded       int            `json:"degraded"`        // of all runs
	Reboots        int            `json:"reboots"`         // of all runs
}

// Sum computes the totals of runs.
func Sum(runs []Record) Totals {
	t := Totals{ByDetection: map[string]int{}, CrashesBy: map[string]int{}, Outcomes: map[string]int{}}
	for _, r := range runs {
		t.Runs++
		if r.Activated {
			t.Activated++
		}
		t.ByDetection[string(r.Detection)]++
		if r.Corruption {
			t.Corruption++
		}
		if r.Degraded {
			t.Degraded++
		}
		if r.Outcome == OutcomeReboot {
			t.Reboots++
		}
		if !r.Crashed() {
			continue
		}
		t.Crashed++
		t.CrashesBy[r.Component]++
		t.Outcomes[string(r.Outcome)]++
		if r.UDPTransparent {
			t.UDPTransparent++
		}
		if r.TCPBroken {
			t.TCPBroken++
		}
	}
	return t
}

// ReadReport reads a report.json (to resume a campaign).
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Save writes report.json, report.md and throughput.png into dir, each
// through a temporary file, so that an interrupted campaign leaves the last
// complete report.
func (r *Report) Save(dir string) error {
	r.Totals = Sum(r.Runs)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	var md, png bytes.Buffer
	if err := r.Markdown(&md, "throughput.png"); err != nil {
		return err
	}
	if err := r.Plot().WritePNG(&png); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"report.json": append(js, '\n'), "report.md": md.Bytes(), "throughput.png": png.Bytes()} {
		if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".partial"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// The paper's Tables III and IV (Hruby et al., DSN 2012): 100 crashes
// injected into NewtOS's network components.
var (
	paperCrashes = map[string]int{"tcp": 25, "udp": 10, "ip": 24, "pf": 25, "driver": 16}
	paperRows    = []struct{ paper, keepnet string }{
		{"TCP", "tcp"}, {"UDP", "udp"}, {"IP", "ip"}, {"PF", "pf"}, {"Driver", "e1000.0"},
		{"—", "syscall"}, {"—", "store"},
	}
)

// Markdown writes report.md: the paper's two tables with keepnet's figures
// beside them, recovery times per component, the runs that fell short of
// the goal and why, and the throughput plot (png, a file beside it).
func (r *Report) Markdown(w io.Writer, png string) error {
	t := Sum(r.Runs)
	s := r.Settings
	fmt.Fprintf(w, "# Fault-injection campaign\n\n")
	fmt.Fprintf(w, "%d runs, %d activated, %d crashed or hung a component; %s, seed %d, %s, %d host CPUs, %s of campaign (%s).\n\n",
		t.Runs, t.Activated, t.Crashed, mixDescription(s), s.Seed, s.Accel, s.HostCPUs,
		(time.Duration(r.Seconds) * time.Second).String(), r.Started.UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "Image %s", s.Image)
	if s.SiteCount > 0 {
		fmt.Fprintf(w, " (%d fault sites)", s.SiteCount)
	}
	fmt.Fprintf(w, "; components %s. `keepnet campaign` (qemu/campaign) wrote this.\n\n", strings.Join(s.Components, ", "))

	r.tableIII(w, t)
	r.tableIV(w, t)
	r.detections(w, t)
	r.recoveryTable(w)
	r.shortfalls(w)
	fmt.Fprintf(w, "## Throughput\n\nThe download's throughput during the campaign, each fault marked (red: it crashed or hung a component; grey: it did not).\n\n![download throughput](%s)\n", png)
	return nil
}

func mixDescription(s Settings) string {
	switch {
	case s.Signals >= 1:
		return "SIGKILL/SIGSTOP only"
	case s.Signals > 0:
		return fmt.Sprintf("fault sites and %.0f%% SIGKILL/SIGSTOP", s.Signals*100)
	}
	return "fault sites"
}

// tableIII is the paper's Table III: crashes per component.
func (r *Report) tableIII(w io.Writer, t Totals) {
	fmt.Fprintf(w, "## Table III: crashes per component\n\n")
	fmt.Fprintf(w, "| component (paper / keepnet) | paper | keepnet | of keepnet's runs |\n|---|---:|---:|---:|\n")
	runsBy := map[string]int{}
	for _, run := range r.Runs {
		runsBy[run.Component]++
	}
	paperTotal := 0
	shown := map[string]bool{}
	for _, row := range paperRows {
		paper := "—"
		if n, ok := paperCrashes[strings.ToLower(row.paper)]; ok {
			paper = fmt.Sprint(n)
			paperTotal += n
		}
		keep := "—"
		if slices.Contains(r.Settings.Components, row.keepnet) || runsBy[row.keepnet] > 0 {
			keep = fmt.Sprint(t.CrashesBy[row.keepnet])
		}
		fmt.Fprintf(w, "| %s / %s | %s | %s | %d |\n", row.paper, row.keepnet, paper, keep, runsBy[row.keepnet])
		shown[row.keepnet] = true
	}
	for _, c := range sortedKeys(runsBy) {
		if !shown[c] {
			fmt.Fprintf(w, "| — / %s | — | %d | %d |\n", c, t.CrashesBy[c], runsBy[c])
		}
	}
	fmt.Fprintf(w, "| **total** | **%d** | **%d** | %d |\n\n", paperTotal, t.Crashed, t.Runs)
}

// tableIV is the paper's Table IV: what the crashes did to the network.
func (r *Report) tableIV(w io.Writer, t Totals) {
	n := t.Crashed
	o := t.Outcomes
	reachable := n - o[string(OutcomeReboot)] - o[string(OutcomeManual)]
	fmt.Fprintf(w, "## Table IV: outcomes of the crashes\n\n")
	fmt.Fprintf(w, "Of the runs that crashed or hung a component (paper: of 100 crashes).\n\n")
	fmt.Fprintf(w, "| | paper | keepnet | keepnet %% |\n|---|---:|---:|---:|\n")
	row := func(name, paper string, k int, extra string) {
		fmt.Fprintf(w, "| %s | %s | %d%s | %s |\n", name, paper, k, extra, pct(k, n))
	}
	row("Fully transparent crashes", "70", o[string(OutcomeTransparent)], "")
	manual := ""
	if m := o[string(OutcomeManual)]; m > 0 {
		manual = fmt.Sprintf(" (+%d)", m)
	}
	row("Reachable without a reboot (+ after a manual restart)", "90 (+6)", reachable, manual)
	row("Crashes that broke TCP connections", "30", t.TCPBroken, "")
	row("Transparent to UDP", "95", t.UDPTransparent, "")
	row("Reboot needed", "3", o[string(OutcomeReboot)], "")
	row("Silent corruption (a wrong byte reached the workload)", "not measured", o[string(OutcomeCorrupted)], "")
	fmt.Fprintf(w, "\nOf all %d runs: %d with a wrong byte, %d degraded (the download after recovery below %.0f%% of its rate before), %d rebooted.\n\n",
		t.Runs, t.Corruption, t.Degraded, degradedBelow*100, t.Reboots)
}

func (r *Report) detections(w io.Writer, t Totals) {
	fmt.Fprintf(w, "## Detection\n\n| detection | runs |\n|---|---:|\n")
	for _, d := range []Detection{DetectPanic, DetectHang, DetectExit, DetectKilled, DetectNone} {
		fmt.Fprintf(w, "| %s | %d |\n", d, t.ByDetection[string(d)])
	}
	notAct := t.Runs - t.Activated
	fmt.Fprintf(w, "\n%d runs activated their fault (the site was reached, or a signal), %d did not (the site was not reached in the time allowed: those say nothing about recovery).\n\n", t.Activated, notAct)
}

// recoveryTable is the distribution of recovery times, per component, of
// the runs that crashed a component and recovered by themselves.
func (r *Report) recoveryTable(w io.Writer) {
	by := map[string][]float64{}
	for _, run := range r.Runs {
		if run.Crashed() && run.RecoveryMS >= 0 {
			by[run.Component] = append(by[run.Component], float64(run.RecoveryMS))
		}
	}
	fmt.Fprintf(w, "## Recovery time\n\nFrom detection (the campaign seeing the restart in `keepnet status`) to the download, the echo session and the UDP echo all flowing again, in milliseconds.\n\n")
	fmt.Fprintf(w, "| component | runs | median | p90 | max |\n|---|---:|---:|---:|---:|\n")
	for _, c := range sortedKeys(by) {
		xs := by[c]
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f |\n", c, len(xs), report.Median(xs), quantile(xs, 0.9), slices.Max(xs))
	}
	fmt.Fprintln(w)
}

// shortfalls lists every run that fell short of the goal: not transparent,
// not transparent to UDP, or degraded, with the site and what happened.
func (r *Report) shortfalls(w io.Writer) {
	var bad []Record
	for _, run := range r.Runs {
		if run.Activated && (run.Outcome != OutcomeTransparent || (run.Crashed() && !run.UDPTransparent) || run.Degraded) {
			bad = append(bad, run)
		}
	}
	fmt.Fprintf(w, "## Where keepnet falls short\n\n")
	if len(bad) == 0 {
		fmt.Fprintf(w, "Every activated run was transparent.\n\n")
		return
	}
	fmt.Fprintf(w, "| run | component | fault | where | detection | outcome | UDP | what happened |\n|---:|---|---|---|---|---|---|---|\n")
	for _, run := range bad {
		what := strings.Join(run.Incidents, "; ")
		if run.Degraded {
			what = fmt.Sprintf("degraded: %.0f → %.0f Mbit/s; %s", run.RateBefore, run.RateAfter, what)
		}
		if run.Note != "" {
			what = run.Note + "; " + what
		}
		udp := "transparent"
		if !run.UDPTransparent {
			udp = fmt.Sprintf("not (%d lost)", run.UDPLost)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s %s | %s | %s | %s | %s |\n", run.Run, run.Component, faultName(run),
			run.Where, run.Func, run.Detection, run.Outcome, udp, mdEscape(strings.TrimSuffix(what, "; ")))
	}
	fmt.Fprintln(w)
}

func faultName(r Record) string {
	if r.Mode != ModeSite {
		return r.Mode
	}
	s := fmt.Sprintf("%s #%d", r.Type, r.Site)
	if r.Variant != "" {
		s += " " + r.Variant
	}
	return s
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func pct(k, n int) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(k)/float64(n))
}

// quantile is the q-quantile of xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Plot is throughput.png: the download's throughput over the campaign, a
// mark at each fault.
func (r *Report) Plot() *report.Timeline {
	tl := &report.Timeline{
		Title: "Download throughput during the campaign",
		Sub:   fmt.Sprintf("%d faults, %s, seed %d", len(r.Runs), r.Settings.Accel, r.Settings.Seed),
		Unit:  "Mbit/s",
	}
	for _, s := range r.Throughput {
		tl.X, tl.Y = append(tl.X, s.At), append(tl.Y, s.Mbps)
	}
	for _, run := range r.Runs {
		tl.Marks = append(tl.Marks, report.Mark{X: run.At, Label: run.Component, Strong: run.Crashed()})
	}
	return tl
}
