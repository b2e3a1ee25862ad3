package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"keepnet/qemu/campaign"
)

// campaignCmd is `keepnet campaign`: boot the appliance in a namespace of
// its own, run a workload against it, inject faults one at a time and
// report what each did (qemu/campaign).
func campaignCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := repoRoot()
	fs := newFlags("campaign", stderr)
	faults := fs.Int("faults", 60, "how many faults in all")
	perComp := fs.Int("per-component", 0, "how many faults per component instead of --faults")
	types := fs.String("types", "", "fault types to choose sites of, comma-separated (default all: "+typeNames()+")")
	seed := fs.Uint64("seed", 1, "chooses every site and signal: the same seed, flags and image give the same campaign")
	out := fs.String("out", filepath.Join(root, "images/out/campaign"), "where report.json, report.md and throughput.png go")
	sigkillOnly := fs.Bool("sigkill-only", false, "SIGKILL (and one time in four SIGSTOP) instead of fault sites: no faulty image needed")
	home := fs.Float64("home", 0.75, "the share of site faults drawn from the component's own packages (servers/udp for udp...) rather than all the code it links")
	signals := fs.Float64("signals", 0, "the share of faults that are SIGKILL/SIGSTOP instead of sites (0 to 1)")
	components := fs.String("components", strings.Join(campaign.DefaultComponents, ","), "the components to fault, in turn")
	sites := fs.String("sites", "", "fault site ids to arm, in turn, instead of random ones (from the image's site list)")
	image := fs.String("image", filepath.Join(root, "images/out/initramfs-faulty.cpio"), "the faulty image (with --sigkill-only the normal one is the default)")
	initrd := fs.String("initrd", "", "the same as --image")
	siteList := fs.String("site-list", filepath.Join(root, "images/out/sites.json"), "the faulty image's site list")
	kernel := fs.String("kernel", defaultKernel(root), "guest kernel")
	resume := fs.Bool("resume", false, "go on from the report.json in --out (same seed and flags)")
	hang := fs.Duration("hang", 6*time.Second, "the guest's hang limit (keepnet.hang): how long a component may not answer before it is restarted")
	appendFlag := fs.String("append", "", "extra kernel command line")
	quiet := fs.Duration("quiet", campaign.DefaultLimits.Quiet, "how long to wait for a component to restart after a fault before calling it undetected")
	activation := fs.Duration("activation", campaign.DefaultLimits.Activation, "how long to wait for an armed site to be reached before calling the fault not activated")
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	p := campaign.Plan{Components: splitComma(*components), Faults: *faults, PerComponent: *perComp, Seed: *seed, Signals: *signals, Home: *home}
	var err error
	if p.Types, err = campaign.ParseTypes(*types); err != nil {
		return usageError{fmt.Errorf("--types: %w", err)}
	}
	for _, s := range splitComma(*sites) {
		id, err := strconv.ParseUint(s, 10, 32)
		if err != nil || id == 0 {
			return usageError{fmt.Errorf("--sites: %q is not a site id", s)}
		}
		p.Sites = append(p.Sites, uint32(id))
	}
	switch {
	case len(p.Components) == 0:
		return usageError{errors.New("--components: none given")}
	case p.Total() <= 0:
		return usageError{errors.New("--faults or --per-component must be at least 1")}
	case *signals < 0 || *signals > 1:
		return usageError{fmt.Errorf("--signals %g: want 0 to 1", *signals)}
	case *sigkillOnly && (len(p.Sites) > 0 || len(p.Types) > 0):
		return usageError{errors.New("--sigkill-only takes no --sites or --types")}
	}
	if *sigkillOnly {
		p.Signals = 1
		if !set["image"] && !set["initrd"] {
			*image = filepath.Join(root, "images/out/initramfs.cpio")
		}
	}
	if *initrd != "" {
		*image = *initrd
	}
	if os.Geteuid() != 0 {
		return errors.New("a campaign creates a network namespace and a tap device, and pings with a raw socket: run it as root")
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := campaign.Config{
		Plan: p, Bin: bin, Kernel: *kernel, Image: *image, SiteList: *siteList,
		Out: *out, Resume: *resume, Hang: *hang, Append: *appendFlag, Progress: stderr,
		Limits: campaign.Limits{Quiet: *quiet, Activation: *activation},
	}
	rep, err := campaign.Run(ctx, cfg)
	if rep != nil && len(rep.Runs) > 0 {
		t := campaign.Sum(rep.Runs)
		fmt.Fprintf(stdout, "keepnet: campaign: %d runs, %d activated, %d crashed or hung a component, %d transparent, %d with a wrong byte; report in %s\n",
			t.Runs, t.Activated, t.Crashed, t.Outcomes[string(campaign.OutcomeTransparent)], t.Corruption, filepath.Join(*out, "report.md"))
	}
	return err
}

// campaignWorker is the hidden command a campaign re-executes in its
// namespace: the workload, its events on stdout, until interrupted.
func campaignWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("campaign-worker", stderr)
	guest := fs.String("guest", "", "the appliance's address")
	host := fs.String("host", "", "this namespace's address (the DNS server's)")
	seed := fs.Uint64("seed", 1, "the first download's seed")
	size := fs.Int64("size", 1<<30, "bytes per download")
	if err := parse(fs, args); err != nil {
		return err
	}
	g, err1 := netip.ParseAddr(*guest)
	h, err2 := netip.ParseAddr(*host)
	if err1 != nil || err2 != nil {
		return usageError{errors.New("--guest and --host: want IPv4 addresses")}
	}
	err := campaign.RunWorkerCommand(ctx, campaign.Workload{Guest: g, Host: h, Seed: *seed, DownloadSize: *size}, stdout)
	if ctx.Err() != nil {
		return nil // interrupted: the campaign is done with it
	}
	return err
}

func splitComma(s string) []string {
	var out []string
	for _, w := range strings.Split(s, ",") {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, w)
		}
	}
	return out
}
