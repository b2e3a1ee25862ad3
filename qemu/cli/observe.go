package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
	"keepnet/e1000"
)

// The commands for people watching the appliance: status (a table; --json
// for machines), top, events and logs. Every request is a short round trip
// on the control channel (ctl.Do's deadline); a follower (-f) and top ask
// again after a pause, so the channel stays free for other commands, and
// stop on Ctrl-C.

// pollEvery is how often -f asks for news.
const pollEvery = 500 * time.Millisecond

// terminal reports whether w is a terminal: tables get colour only there.
func terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// painter colours text on a terminal (unless NO_COLOR is set) and leaves it
// alone elsewhere.
type painter bool

func newPainter(w io.Writer) painter {
	return painter(terminal(w) && os.Getenv("NO_COLOR") == "")
}

const (
	red    = "31"
	green  = "32"
	yellow = "33"
	bold   = "1"
	dim    = "2"
)

func (p painter) paint(code, s string) string {
	if !p || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// sample is one status with the time it was taken, for rates.
type sample struct {
	st *ctl.Status
	at time.Time
}

func fetchStatus(ctx context.Context, ctlPath string) (sample, error) {
	resp, err := ctl.Do(ctx, ctlPath, ctl.Request{Verb: ctl.VerbStatus})
	if err != nil {
		return sample{}, err
	}
	if !resp.OK || resp.Status == nil {
		return sample{}, fmt.Errorf("the appliance answered: %s", resp.Error)
	}
	return sample{st: resp.Status, at: time.Now()}, nil
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	asJSON := fs.Bool("json", false, "print the status as one JSON object (ctl.Status), for scripts")
	interval := fs.Duration("interval", time.Second, "the table's CPU % and NIC rates are over this time between two looks (0: CPU % since each process started, no rates)")
	if err := parse(fs, args); err != nil {
		return err
	}
	now, err := fetchStatus(ctx, *ctlPath)
	if err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.Marshal(now.st)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	var prev *sample
	if *interval > 0 {
		select {
		case <-time.After(*interval):
		case <-ctx.Done():
			return ctx.Err()
		}
		later, err := fetchStatus(ctx, *ctlPath)
		if err != nil {
			return err
		}
		first := now
		prev, now = &first, later
	}
	writeStatus(stdout, newPainter(stdout), prev, now)
	return nil
}

// top prints the status table every --interval until Ctrl-C (or --count
// tables).
func top(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("top", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	interval := fs.Duration("interval", time.Second, "time between two tables")
	count := fs.Int("count", 0, "stop after this many tables (0: until Ctrl-C)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *interval < 100*time.Millisecond {
		return usageError{errors.New("--interval: at least 100ms")}
	}
	p := newPainter(stdout)
	clear := terminal(stdout)
	var prev *sample
	for n := 0; *count == 0 || n < *count; n++ {
		now, err := fetchStatus(ctx, *ctlPath)
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C
			}
			return err
		}
		if clear {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		} else if n > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "keepnet top — %s, every %v\n", now.at.Format("15:04:05"), *interval)
		writeStatus(stdout, p, prev, now)
		prev = &now
		if *count != 0 && n+1 == *count {
			break
		}
		select {
		case <-time.After(*interval):
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// writeStatus prints the appliance's state, its components and its NICs as
// tables. With prev, CPU % and the NICs' rates are over the time between
// the two; without, CPU % is over each process's life and rates are "-".
func writeStatus(w io.Writer, p painter, prev *sample, now sample) {
	st := now.st
	state := p.paint(green, "ready")
	if !st.Ready {
		state = p.paint(yellow, "not ready")
	}
	fmt.Fprintf(w, "keepnet: %s, %s stack", state, st.Stack)
	if st.CPU != nil {
		fmt.Fprintf(w, ", %d CPUs", st.CPU.NumCPUs)
		if prev != nil && prev.st.CPU != nil {
			busy := func(c *ctl.CPUTimes) int64 { return c.User + c.System + c.IRQ + c.Stolen }
			total := busy(st.CPU) + st.CPU.Idle - busy(prev.st.CPU) - prev.st.CPU.Idle
			if total > 0 {
				fmt.Fprintf(w, " %.0f%% busy", 100*float64(busy(st.CPU)-busy(prev.st.CPU))/float64(total))
			}
		}
	}
	fmt.Fprintln(w)
	for _, why := range st.Waiting {
		fmt.Fprintf(w, "  waiting for %s\n", why)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, p.paint(bold, "COMPONENT\tSTATE\tPID\tGEN\tRESTARTS\tUPTIME\tCPU%\tON CPUS\tMEMORY\tLAST EXIT"))
	for _, c := range st.Components {
		stateText := c.State
		switch {
		case c.State == "running" && c.Ready:
			stateText = p.paint(green, "running")
		case c.State == "running":
			stateText = p.paint(yellow, "starting")
		case c.State == "failed":
			stateText = p.paint(red, c.State)
		default:
			stateText = p.paint(yellow, c.State)
		}
		restarts := strconv.Itoa(c.Restarts)
		if c.Restarts > 0 {
			restarts = p.paint(yellow, restarts)
		}
		if c.Hangs > 0 {
			restarts += fmt.Sprintf(" (%d hung)", c.Hangs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, stateText, orDash(c.PID), c.Generation, restarts,
			uptimeText(c.UptimeMillis), cpuPercent(prev, c), orDashText(c.CPUs), memText(c.RSSKiB), orDashText(c.LastExit))
	}
	tw.Flush()

	nics := st.NICs()
	if len(nics) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, p.paint(bold, "NIC\tMODEL\tDMA\tMAC\tADDRESS\tLINK\tRX\tTX\tRESETS"))
	for _, n := range nics {
		link := p.paint(green, "up")
		if !n.LinkUp {
			link = p.paint(red, "down")
		}
		rx, tx := "-", "-"
		if prev != nil {
			if old, ok := nicNamed(prev.st.NICs(), n.Name); ok {
				secs := now.at.Sub(prev.at).Seconds()
				rx, tx = rateText(old.RxBytes, n.RxBytes, old.Generation == n.Generation, secs), rateText(old.TxBytes, n.TxBytes, old.Generation == n.Generation, secs)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, nicModel(n.PCIID), orDashText(n.Backend), n.MAC, orDashText(n.Addr), link, rx, tx, n.Resets)
		for _, a := range n.IPv6 { // "address/prefix state", a row each
			fmt.Fprintf(tw, "\t\t\t\t%s\t\t\t\t\n", a)
		}
	}
	tw.Flush()
}

// nicModel names the part by its PCI id: "82540EM (8086:100e)".
func nicModel(pciID string) string {
	v, d, ok := strings.Cut(pciID, ":")
	vendor, err1 := strconv.ParseUint(v, 16, 16)
	device, err2 := strconv.ParseUint(d, 16, 16)
	if !ok || err1 != nil || err2 != nil {
		return orDashText(pciID)
	}
	if dev, ok := e1000.Lookup(uint16(vendor), uint16(device)); ok {
		return strings.Fields(dev.Name)[0] + " (" + pciID + ")"
	}
	return pciID
}

func nicNamed(nics []ctl.NIC, name string) (ctl.NIC, bool) {
	for _, n := range nics {
		if n.Name == name {
			return n, true
		}
	}
	return ctl.NIC{}, false
}

// rateText is the rate between two readings of a byte counter secs
// apart; "-" when the counter started again meanwhile (a restarted driver).
func rateText(old, now uint64, same bool, secs float64) string {
	if !same || now < old || secs <= 0 {
		return "-"
	}
	return bytesText(float64(now-old)/secs) + "/s"
}

// bytesText is a byte count in the largest unit that keeps it at least 1.
func bytesText(b float64) string {
	units := []string{"B", "kB", "MB", "GB"}
	i := 0
	for b >= 1000 && i < len(units)-1 {
		b /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", b, units[i])
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}

// cpuPercent is c's share of one CPU: since prev if c's process is the
// same, else over its life.
func cpuPercent(prev *sample, c ctl.Component) string {
	if c.PID == 0 {
		return "-"
	}
	if prev != nil {
		if old, ok := prev.st.Component(c.Name); ok && old.PID == c.PID && c.UptimeMillis > old.UptimeMillis {
			return fmt.Sprintf("%.1f", 100*float64(c.CPUMillis-old.CPUMillis)/float64(c.UptimeMillis-old.UptimeMillis))
		}
	}
	if c.UptimeMillis <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", 100*float64(c.CPUMillis)/float64(c.UptimeMillis))
}

func memText(kib int) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

// uptimeText is a duration to the second, or "-".
func uptimeText(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
}

func orDash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func orDashText(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// events prints the journal's events: a table, or with --json one JSON
// object a line; -f keeps printing new ones until Ctrl-C.
func events(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("events", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	asJSON := fs.Bool("json", false, "one JSON object per event and line (boot/journal.Event)")
	follow := fs.Bool("f", false, "keep printing new events until Ctrl-C")
	if err := parse(fs, args); err != nil {
		return err
	}
	p := newPainter(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, p.paint(bold, "TIME\tCOMPONENT\tGEN\tEVENT\tREASON\tTHEN\tRECOVERY"))
	}
	return poll(ctx, 0, *follow, func(since uint64) (uint64, int, error) {
		resp, err := ctl.Do(ctx, *ctlPath, ctl.Request{Verb: ctl.VerbEvents, Since: since})
		if err != nil {
			return since, 0, err
		}
		if !resp.OK {
			return since, 0, errors.New(resp.Error)
		}
		for _, e := range resp.Events {
			if *asJSON {
				b, _ := json.Marshal(e)
				fmt.Fprintln(stdout, string(b))
				continue
			}
			recovery := "-"
			if e.Recovery > 0 {
				recovery = e.RecoveryTime().Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("15:04:05.000"), e.Component, orDash(e.Generation),
				p.paint(kindColour(e.Kind), string(e.Kind)), orDashText(e.Reason), orDashText(e.Action), recovery)
		}
		tw.Flush()
		return resp.Next, len(resp.Events), nil
	})
}

func kindColour(k journal.Kind) string {
	switch k {
	case journal.Crash, journal.Hang:
		return red
	case journal.Restart, journal.Reset, journal.Inject, journal.Signal, journal.Stop:
		return yellow
	case journal.Ready:
		return green
	}
	return dim
}

// logs prints the components' recent lines: NAME's, or every component's
// merged; -n the last N only; -f keeps printing new ones until Ctrl-C.
func logs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	asJSON := fs.Bool("json", false, "one JSON object per line (boot/journal.Line)")
	follow := fs.Bool("f", false, "keep printing new lines until Ctrl-C")
	last := fs.Int("n", 0, "only the last N lines kept (0: all init keeps)")
	words, err := parseWords(fs, args)
	if err != nil {
		return err
	}
	if len(words) > 1 {
		return usageError{fmt.Errorf("unexpected argument %q (usage: keepnet logs [NAME] [-f] [-n N] [--json])", words[1])}
	}
	name := ""
	if len(words) == 1 {
		name = words[0]
	}
	p := newPainter(stdout)
	print := func(l journal.Line) {
		if *asJSON {
			b, _ := json.Marshal(l)
			fmt.Fprintln(stdout, string(b))
			return
		}
		fmt.Fprintf(stdout, "%s %s %s\n", p.paint(dim, l.Time.Local().Format("15:04:05.000")), p.paint(bold, l.Component+":"), l.Text)
	}
	fetch := func(since uint64) ([]journal.Line, uint64, error) {
		resp, err := ctl.Do(ctx, *ctlPath, ctl.Request{Verb: ctl.VerbLogs, Name: name, Since: since})
		if err != nil {
			return nil, since, err
		}
		if !resp.OK {
			return nil, since, errors.New(resp.Error)
		}
		return resp.Lines, resp.Next, nil
	}
	// What is kept now, all of it (a few pages at most) so that -n
	// shows the last lines.
	var kept []journal.Line
	since := uint64(0)
	for {
		lines, next, err := fetch(since)
		if err != nil {
			return err
		}
		kept, since = append(kept, lines...), next
		if len(lines) == 0 {
			break
		}
		if *last > 0 && len(kept) > *last {
			kept = kept[len(kept)-*last:]
		}
	}
	for _, l := range kept {
		print(l)
	}
	if !*follow {
		return nil
	}
	return poll(ctx, since, true, func(from uint64) (uint64, int, error) {
		lines, next, err := fetch(from)
		for _, l := range lines {
			print(l)
		}
		return next, len(lines), err
	})
}

// poll calls fetch from cursor since on until it returns nothing new;
// with follow, then again every pollEvery until Ctrl-C, which ends it
// without an error.
func poll(ctx context.Context, since uint64, follow bool, fetch func(since uint64) (next uint64, got int, err error)) error {
	for {
		next, got, err := fetch(since)
		if err != nil {
			if follow && ctx.Err() != nil {
				return nil
			}
			return err
		}
		since = next
		if got > 0 {
			continue // more may be waiting: a response carries a page
		}
		if !follow {
			return nil
		}
		select {
		case <-time.After(pollEvery):
		case <-ctx.Done():
			return nil
		}
	}
}
