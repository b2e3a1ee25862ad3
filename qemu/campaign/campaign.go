// Package campaign is `keepnet campaign`: a fault-injection campaign run
// unattended against the appliance, the way the paper evaluated NewtOS
// (Hruby et al., DSN 2012, Tables III and IV), and further.
//
// A campaign creates a network namespace with a tap device, boots the
// appliance into it (`keepnet up --detach`, from its faulty image unless it
// injects signals only), and starts the workload (workload.go) in the
// namespace: a checked download, a long-lived echo session, new connections
// every second, a UDP echo stream, DNS answers to the appliance's resolver,
// ping. Then it injects the planned faults (plan.go) one at a time, each a
// run:
//
//  1. Wait until the appliance is healthy: ready, and the download and the
//     echo session flowing.
//  2. Inject: arm the fault site through the control verb inject (what
//     `keepnet inject NAME --site ID` sends), or SIGKILL/SIGSTOP the
//     component.
//  3. Wait for detection: a component restarting (keepnet status: its
//     restarts grow; its last exit says panic, hang, exit or signal), up to
//     the quiet limit. A site not reached within the activation wait ends
//     the wait early: the fault was not activated. The fault runtime writes
//     a console line when the armed site is reached and when it fires
//     (kernel/fault).
//  4. Disarm the site (a restarted component starts disarmed anyway).
//  5. Wait for recovery: the download, the echo session and the UDP echo
//     all flowing again. If the appliance does not even take new
//     connections within the reach limit, restart the component by hand
//     (keepnet restart: the paper's manual repair); if that does not help
//     either, reboot the appliance.
//  6. Measure the download's rate after recovery, read what the workload
//     reported (wrong bytes, broken connections), and judge the run
//     (Classify).
//
// After every run the report (report.go) is written again, so an
// interrupted campaign keeps what it did, and --resume goes on from it.
// Every wait has a limit.
package campaign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"keepnet/kernel/fault/sitelist"
)

// Config is one campaign.
type Config struct {
	Plan Plan
	// Bin is the keepnet command: it boots the appliance and, re-executed
	// in the namespace, runs the workload.
	Bin string
	// Kernel and Image are what the appliance boots; SiteList is the
	// faulty image's site list (not needed for signals only).
	Kernel, Image, SiteList string
	// Out is where the report goes; Resume goes on from the report there.
	Out    string
	Resume bool
	// Hang is the guest's hang limit (keepnet.hang); 0: keepnet up's.
	Hang time.Duration
	// Append is more kernel command line.
	Append string
	// Limits; zero takes the default.
	Limits Limits
	// Progress gets a line after every run, and what the campaign does.
	Progress io.Writer
}

// Limits bound a run's waits.
type Limits struct {
	// Activation: a site not reached by then was not activated.
	Activation time.Duration
	// Quiet: no restart by then (after the fault) means no detection.
	Quiet time.Duration
	// Reach: the appliance must take new connections by then (after
	// detection), else the component is restarted by hand; and again by
	// then after that, else the appliance is rebooted.
	Reach time.Duration
	// Recover: the workload's streams must all flow by then (beyond
	// Reach: a stalled connection takes the worker 30 s to give up).
	Recover time.Duration
	// Measure is how long the rate after recovery is measured.
	Measure time.Duration
	// Healthy bounds the wait for a healthy appliance before a fault.
	Healthy time.Duration
}

// DefaultLimits suit TCG on a shared 2-core host.
var DefaultLimits = Limits{
	Activation: 5 * time.Second, Quiet: 12 * time.Second, Reach: 20 * time.Second,
	Recover: 45 * time.Second, Measure: 4 * time.Second, Healthy: 90 * time.Second,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	for _, f := range []struct{ v, def *time.Duration }{
		{&l.Activation, &d.Activation}, {&l.Quiet, &d.Quiet}, {&l.Reach, &d.Reach},
		{&l.Recover, &d.Recover}, {&l.Measure, &d.Measure}, {&l.Healthy, &d.Healthy},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return l
}

// campaign is a running campaign.
type campaign struct {
	cfg    Config
	lim    Limits
	log    io.Writer
	app    *appliance
	tl     *Timeline
	rep    *Report
	start  time.Time // of this invocation
	offset float64   // seconds the report had before this invocation (resume)
	sample time.Time // the throughput is sampled into the report up to here
}

// Run runs the campaign and returns its report (written to cfg.Out after
// every run). It cleans up the namespace, the appliance and the worker
// however it ends, Ctrl-C included (ctx).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	c := &campaign{cfg: cfg, lim: cfg.Limits.withDefaults(), log: cfg.Progress, tl: NewTimeline(), start: time.Now()}
	if c.log == nil {
		c.log = io.Discard
	}
	var list *sitelist.List
	if cfg.Plan.Signals < 1 {
		var err error
		if list, err = sitelist.Read(cfg.SiteList); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w (build the faulty image: make image-faulty; or use --sigkill-only)", err)
			}
			return nil, err
		}
	}
	faults, err := cfg.Plan.List(list)
	if err != nil {
		return nil, err
	}
	if err := c.openReport(list); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	if len(c.rep.Runs) >= len(faults) {
		fmt.Fprintf(c.log, "campaign: %s already has all %d runs\n", cfg.Out, len(faults))
		return c.rep, nil
	}

	ns, err := newNetns()
	if err != nil {
		return nil, err
	}
	defer ns.del()
	var upArgs []string
	if cfg.Kernel != "" {
		upArgs = append(upArgs, "--kernel", cfg.Kernel)
	}
	upArgs = append(upArgs, "--initrd", cfg.Image)
	if app := c.kernelArgs(); app != "" {
		upArgs = append(upArgs, "--append", app)
	}
	if slices.Contains(cfg.Plan.Components, "pf") {
		rules := filepath.Join(cfg.Out, "pf.rules")
		if err := os.WriteFile(rules, []byte(Rules), 0o644); err != nil {
			return nil, err
		}
		upArgs = append(upArgs, "--pf-rules", rules)
	}
	if c.app, err = newAppliance(cfg.Bin, ns, upArgs); err != nil {
		return nil, err
	}
	defer os.RemoveAll(c.app.dir)
	c.app.keepTo = filepath.Join(cfg.Out, "console.log")
	defer c.app.keepConsole(c.app.keepTo)
	defer c.app.down()
	fmt.Fprintf(c.log, "campaign: namespace %s; booting %s\n", ns.Name, cfg.Image)
	if err := c.app.boot(ctx, c.log); err != nil {
		return nil, err
	}
	c.rep.Settings.Accel = accelOf(c.app.ctl)

	wctx, stopWorker := context.WithCancel(ctx)
	werr, err := c.startWorker(wctx, ns)
	if err != nil {
		stopWorker()
		return nil, err
	}
	defer func() { stopWorker(); <-werr }()

	for i := len(c.rep.Runs); i < len(faults); i++ {
		if ctx.Err() != nil {
			break
		}
		rec, err := c.run(ctx, i+1, faults[i])
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return c.rep, fmt.Errorf("run %d (%s): %w", i+1, faults[i], err)
		}
		c.rep.Runs = append(c.rep.Runs, rec)
		c.sampleThroughput()
		c.rep.Seconds = c.offset + time.Since(c.start).Seconds()
		if err := c.rep.Save(cfg.Out); err != nil {
			return c.rep, err
		}
		c.progress(rec, len(faults))
	}
	if ctx.Err() != nil {
		fmt.Fprintf(c.log, "campaign: interrupted after %d runs; --resume goes on from %s\n", len(c.rep.Runs), cfg.Out)
		return c.rep, ctx.Err()
	}
	return c.rep, c.checkReachable(ctx)
}

// Rules is the packet filter's rule set when the campaign faults pf (the
// appliance has pf only then): what a firewall in front of the workload's
// servers would say — nothing comes in but the workload's own streams,
// everything goes out, and every flow passes by its state after its first
// packet, so that a pf restart that lost the state table would break the
// established download and echo session (and be reported).
const Rules = `set default block
pass out all
pass in proto tcp to any port 80     # download, httpd
pass in proto tcp to any port 7      # echo and conns
pass in proto udp to any port 7      # udp
pass in proto icmp icmp-type echoreq # ping
`

// kernelArgs are the kernel parameters the campaign boots with.
func (c *campaign) kernelArgs() string {
	var args []string
	if c.cfg.Hang > 0 {
		args = append(args, "keepnet.hang="+c.cfg.Hang.String())
	}
	if c.cfg.Append != "" {
		args = append(args, c.cfg.Append)
	}
	return strings.Join(args, " ")
}

// openReport starts the report, or with Resume reads the one in Out and
// checks it was made with the same settings.
func (c *campaign) openReport(list *sitelist.List) error {
	p := c.cfg.Plan
	s := Settings{Seed: p.Seed, Components: p.Components, Faults: p.Total(), Signals: p.Signals, Sites: p.Sites,
		Image: c.cfg.Image, HostCPUs: runtime.NumCPU()}
	for _, t := range p.Types {
		s.Types = append(s.Types, string(t))
	}
	if list != nil {
		s.SiteCount = len(list.Sites)
		if b, err := os.ReadFile(c.cfg.SiteList); err == nil {
			h := sha256.Sum256(b)
			s.SiteListHash = hex.EncodeToString(h[:])
		}
	}
	path := filepath.Join(c.cfg.Out, "report.json")
	if !c.cfg.Resume {
		c.rep = &Report{Settings: s, Started: time.Now()}
		return nil
	}
	old, err := ReadReport(path)
	if err != nil {
		return fmt.Errorf("--resume: %w", err)
	}
	o := old.Settings
	if o.Seed != s.Seed || !slices.Equal(o.Components, s.Components) || !slices.Equal(o.Types, s.Types) ||
		o.Signals != s.Signals || !slices.Equal(o.Sites, s.Sites) || o.SiteListHash != s.SiteListHash || o.Faults > s.Faults {
		return fmt.Errorf("--resume: %s was made with other settings (seed, components, types, faults or image): %+v", path, o)
	}
	old.Settings.Faults = s.Faults
	c.rep, c.offset = old, old.Seconds
	fmt.Fprintf(c.log, "campaign: resuming after run %d of %d\n", len(old.Runs), s.Faults)
	return nil
}

// accelOf is the accelerator the appliance runs under, from QEMU's command
// line (/proc/PID/cmdline of the pid keepnet up left beside ctl).
func accelOf(ctlPath string) string {
	pid, _ := os.ReadFile(ctlPath + ".pid")
	cmdline, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/cmdline")
	if strings.Contains(string(cmdline), "kvm") {
		return "kvm"
	}
	return "tcg"
}

// startWorker runs the workload in the namespace: this command re-executed
// as campaign-worker, its events read into the timeline. The returned
// channel gets the worker's end.
func (c *campaign) startWorker(ctx context.Context, ns *netns) (<-chan error, error) {
	seed := c.cfg.Plan.Seed<<8 + uint64(len(c.rep.Runs))
	cmd := ns.command(ctx, c.cfg.Bin, "campaign-worker", "--guest", ns.Guest, "--host", ns.Host, "--seed", fmt.Sprint(seed))
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stderr = c.log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the workload: %w", err)
	}
	c.tl.OnError = func(e Event) { fmt.Fprintf(c.log, "campaign: the workload's %s stream: %s\n", e.What, e.Detail) }
	done := make(chan error, 1)
	go func() {
		c.tl.Read(out)
		done <- cmd.Wait()
	}()
	return done, nil
}

// checkReachable is the campaign's last word: the appliance is reachable
// at the end. A campaign that leaves it broken says so.
func (c *campaign) checkReachable(ctx context.Context) error {
	since := time.Now()
	if _, ok := c.waitGrowth(ctx, since, c.lim.Reach, func(k Counters) int64 { return k.ConnsOK }); !ok {
		return errors.New("the appliance took no new connection at the end of the campaign")
	}
	return nil
}

// sampleThroughput adds the download's throughput since the last sample to
// the report, a point a second.
func (c *campaign) sampleThroughput() {
	if c.sample.IsZero() {
		c.sample = c.start
	}
	end, _ := c.tl.Latest()
	for t := c.sample; !t.Add(time.Second).After(end); t = t.Add(time.Second) {
		c.rep.Throughput = append(c.rep.Throughput, Sample{At: c.offset + t.Add(time.Second/2).Sub(c.start).Seconds(), Mbps: c.tl.Rate(t, t.Add(time.Second))})
		c.sample = t.Add(time.Second)
	}
}

// progress writes one line after a run: how far, what so far, time left.
func (c *campaign) progress(r Record, total int) {
	t := Sum(c.rep.Runs)
	done := len(c.rep.Runs)
	elapsed := time.Since(c.start)
	left := time.Duration(0)
	if n := done - c.countBefore(); n > 0 {
		left = elapsed / time.Duration(n) * time.Duration(total-done)
	}
	var outs []string
	for _, o := range Outcomes {
		if n := t.Outcomes[string(o)]; n > 0 {
			outs = append(outs, fmt.Sprintf("%s %d", o, n))
		}
	}
	rec := "no recovery"
	if r.RecoveryMS >= 0 {
		rec = fmt.Sprintf("recovery %d ms", r.RecoveryMS)
	}
	fmt.Fprintf(c.log, "campaign: run %d/%d, %v elapsed, ~%v left; activated %d, crashed %d [%s], corruption %d\n"+
		"campaign:   %s: activated %v, detection %s, %s, %s\n",
		done, total, elapsed.Round(time.Second), left.Round(time.Second), t.Activated, t.Crashed, strings.Join(outs, ", "), t.Corruption,
		describe(r), r.Activated, r.Detection, r.Outcome, rec)
}

// countBefore is how many runs the report had when this invocation began.
func (c *campaign) countBefore() int {
	n := 0
	for _, r := range c.rep.Runs {
		if r.At < c.offset {
			n++
		}
	}
	return n
}

func describe(r Record) string {
	if r.Mode != ModeSite {
		return r.Component + " " + r.Mode
	}
	return fmt.Sprintf("%s %s site %d (%s)", r.Component, r.Type, r.Site, r.Where)
}

// RunWorkerCommand is the hidden command campaign-worker: the workload,
// in the namespace, until interrupted.
func RunWorkerCommand(ctx context.Context, w Workload, stdout io.Writer) error {
	if w.DownloadSize == 0 {
		w.DownloadSize = 1 << 30
	}
	return RunWorker(ctx, w, stdout)
}
