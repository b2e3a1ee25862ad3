package itest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/kernel/fault/sitelist"
	"keepnet/qemu/campaign"
)

// faultyImage is the image with fault sites (make image-faulty) and its
// site list.
var (
	faultyImage = filepath.Join(root, "images/out/initramfs-faulty.cpio")
	siteList    = filepath.Join(root, "images/out/sites.json")
)

func requireFaultyImage(t *testing.T) {
	t.Helper()
	for _, f := range []string{faultyImage, siteList} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s missing: run 'make image-faulty' first", f)
		}
	}
}

// runCampaign runs `keepnet campaign` with args and an --out of its own,
// and returns the report it wrote. The campaign's progress is logged.
func runCampaign(t *testing.T, limit time.Duration, args ...string) (*campaign.Report, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "campaign") // made by the campaign, as images/out/campaign is
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, keepnetBin(), append([]string{"campaign", "--out", out}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // it cleans up its namespace
	cmd.WaitDelay = time.Minute
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("keepnet campaign %s (%v, %v):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Second), err, stderr.String())
	rep, rerr := campaign.ReadReport(filepath.Join(out, "report.json"))
	if rerr != nil {
		t.Fatalf("no report: %v", rerr)
	}
	for _, f := range []string{"report.md", "throughput.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("the campaign wrote no %s", f)
		}
	}
	return rep, err
}

// A 10-fault campaign on one booted appliance, fault sites and signals
// mixed, over the six components: every run is classified, none found a
// wrong byte, and the appliance is reachable at the end (the campaign
// checks that last, and fails otherwise). What each fault did is the
// campaign's report, not this test's: faults may break connections.
func TestCampaignSmoke(t *testing.T) {
	requireITest(t, true)
	requireFaultyImage(t)
	rep, err := runCampaign(t, 10*time.Minute, "--faults", "10", "--seed", "2", "--signals", "0.4", "--quiet", "10s")
	if err != nil {
		t.Fatalf("keepnet campaign: %v", err)
	}
	if len(rep.Runs) != 10 {
		t.Fatalf("%d runs in the report, want 10", len(rep.Runs))
	}
	comps := map[string]bool{}
	modes := map[string]bool{}
	for _, r := range rep.Runs {
		comps[r.Component], modes[r.Mode] = true, true
		switch {
		case !slices.Contains(campaign.Outcomes, r.Outcome):
			t.Errorf("run %d: outcome %q", r.Run, r.Outcome)
		case r.Detection == "":
			t.Errorf("run %d: no detection recorded", r.Run)
		case r.Corruption:
			t.Errorf("run %d (%s %s %s): wrong bytes: %v", r.Run, r.Component, r.Type, r.Where, r.Incidents)
		case r.Mode != campaign.ModeSite && (!r.Activated || r.Detection == campaign.DetectNone):
			t.Errorf("run %d: %s %s was not detected: %+v", r.Run, r.Component, r.Mode, r)
		case r.Crashed() && r.RecoveryMS < 0 && r.Outcome != campaign.OutcomeManual:
			t.Errorf("run %d: crashed, recovered by itself, but no recovery time", r.Run)
		}
	}
	for _, r := range rep.Runs {
		if r.Outcome == campaign.OutcomeReboot || r.Outcome == campaign.OutcomeManual {
			// Short of keepnet's goal, and the report says so; the
			// campaign itself went on as it should.
			t.Logf("run %d (%s %s %s): %s", r.Run, r.Component, r.Type, r.Where, r.Outcome)
		}
	}
	for _, c := range campaign.DefaultComponents {
		if !comps[c] {
			t.Errorf("no fault in %s", c)
		}
	}
	if !modes[campaign.ModeSite] || !(modes[campaign.ModeSIGKILL] || modes[campaign.ModeSIGSTOP]) {
		t.Errorf("modes %v: want fault sites and signals", modes)
	}
	if rep.Totals.Runs != 10 || len(rep.Throughput) == 0 {
		t.Errorf("totals %+v, %d throughput samples", rep.Totals, len(rep.Throughput))
	}
}

// A fault that corrupts payload is reported as corruption, not as
// transparent: the dropped copy of the application's bytes into its pool
// buffer (servers/socket's submitSend) makes httpd send whatever the buffer
// held before, and the campaign's download must see it.
func TestCampaignCorruption(t *testing.T) {
	requireITest(t, true)
	requireFaultyImage(t)
	list, err := sitelist.Read(siteList)
	if err != nil {
		t.Fatal(err)
	}
	var site sitelist.Site
	for _, s := range list.Sites {
		if s.Type == sitelist.TypeDrop && s.File == "servers/socket/sock.go" && s.Func == "Stack.submitSend" && s.Snippet == "copy(buf, b)" {
			site = s
		}
	}
	if site.ID == 0 {
		t.Fatal("no drop site on submitSend's copy(buf, b) in the site list")
	}
	rep, err := runCampaign(t, 6*time.Minute, "--components", "httpd", "--sites", strconv.FormatUint(uint64(site.ID), 10), "--faults", "1")
	if err != nil {
		t.Fatalf("keepnet campaign: %v", err)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	if !r.Corruption || r.Outcome != campaign.OutcomeCorrupted {
		t.Errorf("site %d (%s): corruption %v, outcome %s; want corruption, outcome corrupted (incidents %v)", site.ID, site.Where(), r.Corruption, r.Outcome, r.Incidents)
	}
	if !r.Fired {
		t.Errorf("site %d: the fault runtime did not say it fired", site.ID)
	}
}
