package campaign

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"keepnet/boot/ctl"
	"keepnet/qemu"
)

// netns is the campaign's own network namespace, with the tap device the
// appliance's NIC is plugged into (as qemu/itest's tests make theirs). Its
// names are random, so a campaign never meets another's or a test's.
type netns struct {
	Name, Tap   string
	Host, Guest string // addresses on the link
	Prefix      int
}

// newNetns creates the namespace and its tap device; del removes them.
func newNetns() (*netns, error) {
	id := make([]byte, 3)
	rand.Read(id)
	n := &netns{Name: "kncamp-" + hex.EncodeToString(id), Tap: "kctap" + hex.EncodeToString(id),
		Host: "10.77.0.1", Guest: "10.77.0.2", Prefix: 24}
	if err := ip("netns", "add", n.Name); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "tuntap", "add", "dev", n.Tap, "mode", "tap"},
		{"-n", n.Name, "addr", "add", fmt.Sprintf("%s/%d", n.Host, n.Prefix), "dev", n.Tap},
		{"-n", n.Name, "link", "set", n.Tap, "up"},
	} {
		if err := ip(args...); err != nil {
			n.del()
			return nil, err
		}
	}
	return n, nil
}

func (n *netns) del() { ip("netns", "del", n.Name) }

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// command is name with args run inside the namespace.
func (n *netns) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// appliance is the campaign's guest: booted with `keepnet up --detach` run
// inside the namespace (QEMU must open the tap there), talked to through
// its control channel like every other keepnet command.
type appliance struct {
	bin     string // the keepnet command
	ns      *netns
	dir     string // holds the control socket and the console
	ctl     string
	console string
	keepTo  string   // where the console of every boot is kept (keepConsole)
	upArgs  []string // extra `keepnet up` flags: the image, kernel parameters
	boots   int
}

// bootWait bounds one boot: seconds usually, minutes on a loaded host.
const bootWait = 5 * time.Minute

// boot starts the appliance and returns once it reports ready.
func (a *appliance) boot(ctx context.Context, log io.Writer) error {
	a.boots++
	args := []string{"up", "--detach", "--ctl", a.ctl, "--console", a.console, "--timeout", bootWait.String(),
		"--net", "tap:" + a.ns.Tap, "--ip", fmt.Sprintf("%s/%d", a.ns.Guest, a.ns.Prefix),
		"--gw", a.ns.Host, "--dns", a.ns.Host, "--stack", "keepnet"}
	ctx, cancel := context.WithTimeout(ctx, bootWait+time.Minute)
	defer cancel()
	cmd := a.ns.command(ctx, a.bin, append(args, a.upArgs...)...)
	// Interrupted, keepnet up stops the QEMU it started; killed, it could
	// not, and the QEMU would outlive the campaign.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("keepnet up: %v\n%s", err, out)
	}
	fmt.Fprintf(log, "campaign: %s", out)
	return nil
}

// down powers the appliance off (QEMU is killed if it does not go).
func (a *appliance) down() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := os.Stat(a.ctl + ".pid"); err != nil {
		return nil // never booted, or already down
	}
	return qemu.Down(ctx, a.ctl, a.ctl+".pid", 30*time.Second)
}

// keepConsole appends the console, every component's log of the whole
// campaign, to path: what a run short of the goal left there is how to
// find out why (a --resume adds to it).
func (a *appliance) keepConsole(path string) {
	in, err := os.Open(a.console)
	if err != nil {
		return // never booted
	}
	defer in.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer out.Close()
	io.Copy(out, in)
}

// reboot powers the appliance off and boots it again. The console of the
// boot that ends goes to keepTo first: it holds why the run needed the
// reboot.
func (a *appliance) reboot(ctx context.Context, log io.Writer) error {
	if err := a.down(); err != nil {
		fmt.Fprintf(log, "campaign: powering off for a reboot: %v\n", err)
	}
	a.keepConsole(a.keepTo)
	os.Remove(a.console)
	return a.boot(ctx, log)
}

// requestWait bounds one control request: a guest busy with a download and
// a restart under TCG may take seconds to answer.
const requestWait = 15 * time.Second

func (a *appliance) do(ctx context.Context, req ctl.Request) (ctl.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	resp, err := ctl.Do(ctx, a.ctl, req)
	if err == nil && !resp.OK {
		err = errors.New(resp.Error)
	}
	return resp, err
}

func (a *appliance) status(ctx context.Context) (ctl.Status, error) {
	resp, err := a.do(ctx, ctl.Request{Verb: ctl.VerbStatus})
	if err != nil {
		return ctl.Status{}, err
	}
	if resp.Status == nil {
		return ctl.Status{}, errors.New("status: an answer without a status")
	}
	return *resp.Status, nil
}

// inject injects f: the control verb inject arms its site (what `keepnet
// inject NAME --site ID` sends), kill sends the signal.
func (a *appliance) inject(ctx context.Context, f Fault, seed uint64) error {
	switch f.Mode {
	case ModeSIGKILL:
		_, err := a.do(ctx, ctl.Request{Verb: ctl.VerbKill, Name: f.Component, Signal: "KILL"})
		return err
	case ModeSIGSTOP:
		_, err := a.do(ctx, ctl.Request{Verb: ctl.VerbKill, Name: f.Component, Signal: "STOP"})
		return err
	}
	_, err := a.do(ctx, ctl.Request{Verb: ctl.VerbInject, Name: f.Component, Fault: ctl.Fault{Site: f.Site.ID, Seed: seed}})
	return err
}

// disarm disarms the component's site (its current generation: one that
// restarted starts disarmed anyway).
func (a *appliance) disarm(ctx context.Context, comp string) error {
	_, err := a.do(ctx, ctl.Request{Verb: ctl.VerbInject, Name: comp, Fault: ctl.Fault{Disarm: true}})
	return err
}

// restart is `keepnet restart NAME`: the manual repair of the paper.
func (a *appliance) restart(ctx context.Context, comp string) error {
	_, err := a.do(ctx, ctl.Request{Verb: ctl.VerbRestart, Name: comp})
	return err
}

// consoleSize is the console's length now: where a run starts reading it.
func (a *appliance) consoleSize() int64 {
	fi, err := os.Stat(a.console)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// siteLine is the fault runtime's line for a site (kernel/fault's report).
var siteLine = regexp.MustCompile(`fault: site (\d+) (reached|fired)`)

// siteActivity reads the console from offset and reports whether site was
// reached and whether its fault fired.
func (a *appliance) siteActivity(offset int64, site uint32) (reached, fired bool) {
	f, err := os.Open(a.console)
	if err != nil {
		return false, false
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 1<<40))
	for _, m := range siteLine.FindAllSubmatch(b, -1) {
		if id, _ := strconv.ParseUint(string(m[1]), 10, 32); uint32(id) == site {
			reached = true
			fired = fired || string(m[2]) == "fired"
		}
	}
	return reached, fired
}

// newAppliance prepares (but does not boot) the appliance in ns.
func newAppliance(bin string, ns *netns, upArgs []string) (*appliance, error) {
	dir, err := os.MkdirTemp("", "kncamp-") // short: Unix socket paths are limited
	if err != nil {
		return nil, err
	}
	return &appliance{bin: bin, ns: ns, dir: dir, ctl: filepath.Join(dir, "ctl.sock"),
		console: filepath.Join(dir, "console.log"), upArgs: upArgs}, nil
}
