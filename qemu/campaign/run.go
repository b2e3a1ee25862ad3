package campaign

import (
	"context"
	"fmt"
	"time"

	"keepnet/boot/ctl"
)

// poll is how often a run asks the appliance and the timeline.
const poll = 250 * time.Millisecond

// run injects fault f as run number n and judges it.
func (c *campaign) run(ctx context.Context, n int, f Fault) (Record, error) {
	rec := Record{Run: n, Component: f.Component, Mode: f.Mode, Type: f.Kind(), Site: f.Site.ID,
		Variant: f.Site.Variant, Func: f.Site.Func}
	if f.Mode == ModeSite {
		rec.Where = f.Site.Where()
	}
	if err := c.healthy(ctx); err != nil {
		return rec, err
	}
	before, err := c.app.status(ctx)
	if err != nil {
		return rec, err
	}
	var o Observation
	o.Mode = f.Mode
	t0 := time.Now()
	o.RateBefore = c.tl.Rate(t0.Add(-5*time.Second), t0)
	offset := c.app.consoleSize()
	rec.At = c.offset + t0.Sub(c.start).Seconds()

	if err := c.app.inject(ctx, f, c.cfg.Plan.Seed+uint64(n)); err != nil {
		return rec, fmt.Errorf("injecting: %w", err)
	}
	detected, after := c.detect(ctx, f, before, offset, &o)
	if f.Mode == ModeSite {
		// After a restart the new process is disarmed already; this
		// disarms a site that was armed and did nothing visible.
		c.app.disarm(ctx, f.Component)
	}
	if detected.IsZero() {
		detected = time.Now() // recovery counts from the disarming
	}
	o.Restarted, o.Detection = restarts(before, after, f.Component)
	o.Reached, o.Fired = c.app.siteActivity(offset, f.Site.ID)

	if err := c.recover(ctx, f, detected, &o); err != nil {
		return rec, err
	}
	end := time.Now()
	c.observeIncidents(t0, end, &o)
	o.UDPResumed = c.grew(detected, func(k Counters) int64 { return k.UDPEchoed })
	o.DNSResumed = c.grew(detected, func(k Counters) int64 { return k.DNSAnswered })
	sent, echoed := c.tl.At(end).UDPSent-c.tl.At(t0).UDPSent, c.tl.At(end).UDPEchoed-c.tl.At(t0).UDPEchoed
	rec.UDPLost = max(0, sent-echoed)
	rec.DNSAnswers = c.tl.At(end).DNSAnswered - c.tl.At(t0).DNSAnswered

	v := Classify(o)
	rec.Activated, rec.Fired, rec.Detection, rec.Restarted = v.Activated, o.Fired, o.Detection, o.Restarted
	rec.Outcome, rec.UDPTransparent, rec.TCPBroken, rec.Corruption, rec.Degraded = v.Outcome, v.UDPTransparent, v.TCPBroken, v.Corruption, v.Degraded
	rec.RecoveryMS, rec.RateBefore, rec.RateAfter = v.RecoveryMS, round1(o.RateBefore), round1(o.RateAfter)
	rec.Incidents = summarise(append(o.Corrupt, o.Broken...), maxIncidents)
	rec.Seconds = round1(time.Since(t0).Seconds())
	if o.Manual {
		rec.Note = "reachable only after keepnet restart " + f.Component
	}
	if o.Rebooted {
		rec.Note = "not reachable after keepnet restart " + f.Component + ": rebooted"
	}
	return rec, nil
}

// maxIncidents bounds the incidents a record keeps: a fault that breaks
// every new echo session for its whole window would otherwise fill the
// report with the same line.
const maxIncidents = 5

// summarise keeps the first max incidents and says how many more there were.
func summarise(incidents []string, max int) []string {
	if len(incidents) <= max {
		return incidents
	}
	return append(incidents[:max:max], fmt.Sprintf("and %d more", len(incidents)-max))
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

// healthy waits until the appliance is ready and the download and the echo
// session flow; past the limit it reboots the appliance once.
func (c *campaign) healthy(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		if c.waitHealthy(ctx) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == 1 {
			return fmt.Errorf("the appliance is not healthy (ready, download and echo flowing) within %v after a reboot", c.lim.Healthy)
		}
		fmt.Fprintf(c.log, "campaign: the appliance is not healthy within %v before the next fault: rebooting it\n", c.lim.Healthy)
		if err := c.app.reboot(ctx, c.log); err != nil {
			return err
		}
	}
}

func (c *campaign) waitHealthy(ctx context.Context) bool {
	deadline := time.Now().Add(c.lim.Healthy)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := c.app.status(ctx)
		if err == nil && st.Ready && allRunning(st) {
			now := time.Now()
			if c.flowing(now.Add(-2*time.Second), now) {
				return true
			}
		}
		sleep(ctx, poll)
	}
	return false
}

// flowing reports whether the download and the echo session both made
// progress from from to to.
func (c *campaign) flowing(from, to time.Time) bool {
	a, b := c.tl.At(from), c.tl.At(to)
	return b.DownBytes > a.DownBytes && b.EchoLines > a.EchoLines
}

func allRunning(st ctl.Status) bool {
	for _, comp := range st.Components {
		if comp.State != "running" {
			return false
		}
	}
	return true
}

// detect waits until a component restarts, the quiet limit passes, or (a
// site not reached) the activation wait passes. It returns when it saw the
// restart (zero if none) and the status then.
func (c *campaign) detect(ctx context.Context, f Fault, before ctl.Status, offset int64, o *Observation) (time.Time, ctl.Status) {
	start := time.Now()
	quiet := c.lim.Quiet
	if f.Mode == ModeSIGSTOP {
		quiet += c.cfg.Hang // the watchdog's limit, stretched on a slow guest
	}
	last := before
	for time.Since(start) < quiet && ctx.Err() == nil {
		sleep(ctx, poll)
		st, err := c.app.status(ctx)
		if err != nil {
			continue // a guest busy recovering answers late
		}
		last = st
		if len(restarted(before, st)) > 0 {
			return time.Now(), st
		}
		if f.Mode == ModeSite && time.Since(start) > c.lim.Activation {
			if reached, _ := c.app.siteActivity(offset, f.Site.ID); !reached {
				return time.Time{}, st
			}
		}
	}
	return time.Time{}, last
}

// restarted names the components whose generation grew from before to now.
func restarted(before, now ctl.Status) []string {
	var out []string
	for _, c := range now.Components {
		if b, ok := before.Component(c.Name); ok && c.Generation > b.Generation {
			out = append(out, c.Name)
		}
	}
	return out
}

// restarts names the components that restarted and how the fault was
// detected: by the faulted component's last exit if it restarted, else by
// the first other one's.
func restarts(before, now ctl.Status, comp string) ([]string, Detection) {
	names := restarted(before, now)
	if len(names) == 0 {
		return nil, DetectNone
	}
	first := names[0]
	for _, n := range names {
		if n == comp {
			first = n
		}
	}
	c, _ := now.Component(first)
	d := DetectionOf(c.LastExit)
	if d == DetectNone {
		d = DetectExit
	}
	return names, d
}

// recover waits for the workload to flow again after the fault. If the
// appliance takes no new connection and answers no ping within the reach
// limit, the component is restarted by hand, and if that does not help the
// appliance is rebooted.
func (c *campaign) recover(ctx context.Context, f Fault, since time.Time, o *Observation) error {
	if !c.reachable(ctx, since) {
		fmt.Fprintf(c.log, "campaign: %s: not reachable %v after the fault; keepnet restart %s\n", f, c.lim.Reach, f.Component)
		o.Manual = true
		if err := c.app.restart(ctx, f.Component); err != nil {
			fmt.Fprintf(c.log, "campaign: keepnet restart %s: %v\n", f.Component, err)
		}
		since = time.Now()
		if !c.reachable(ctx, since) {
			fmt.Fprintf(c.log, "campaign: %s: still not reachable: rebooting\n", f)
			o.Rebooted = true
			if err := c.app.reboot(ctx, c.log); err != nil {
				return err
			}
			return ctx.Err()
		}
	}
	at, ok := c.allFlow(ctx, since)
	if !ok {
		return ctx.Err()
	}
	o.Recovered, o.Recovery = true, at.Sub(since)
	sleep(ctx, c.lim.Measure)
	o.RateAfter = c.tl.Rate(at, at.Add(c.lim.Measure))
	return ctx.Err()
}

// reachable waits up to the reach limit for a new connection or a ping
// answered after since.
func (c *campaign) reachable(ctx context.Context, since time.Time) bool {
	_, ok := c.waitGrowth(ctx, since, c.lim.Reach, func(k Counters) int64 { return k.ConnsOK + k.PingReplies })
	return ok
}

// allFlow waits up to the recover limit for the download, the echo session
// and the UDP echo to each grow after since, and returns when the last of
// them did.
func (c *campaign) allFlow(ctx context.Context, since time.Time) (time.Time, bool) {
	var last time.Time
	for _, field := range []func(Counters) int64{
		func(k Counters) int64 { return k.DownBytes },
		func(k Counters) int64 { return k.EchoLines },
		func(k Counters) int64 { return k.UDPEchoed },
	} {
		at, ok := c.waitGrowth(ctx, since, c.lim.Recover-time.Since(since), field)
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// waitGrowth waits up to limit for field to grow past its value at since.
func (c *campaign) waitGrowth(ctx context.Context, since time.Time, limit time.Duration, field func(Counters) int64) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	for {
		changed := c.tl.Changed()
		if at, ok := c.tl.FirstGrowth(since, field); ok {
			return at, true
		}
		wait := time.Until(deadline)
		if wait <= 0 || ctx.Err() != nil {
			return time.Time{}, false
		}
		select {
		case <-changed:
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// grew reports whether field grew after since.
func (c *campaign) grew(since time.Time, field func(Counters) int64) bool {
	_, ok := c.tl.FirstGrowth(since, field)
	return ok
}

// observeIncidents takes the workload's incidents from from to to: wrong
// bytes, broken connections. A stream that could not run at all is an
// error of the campaign, noted as broken so it is not lost.
func (c *campaign) observeIncidents(from, to time.Time, o *Observation) {
	for _, e := range c.tl.Incidents(from, to) {
		line := e.What + ": " + e.Detail
		switch e.Kind {
		case EventCorrupt:
			o.Corrupt = append(o.Corrupt, "wrong bytes in "+line)
		case EventBroken:
			if e.What == "download" || e.What == "echo" {
				o.Broken = append(o.Broken, "broken "+line)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
