package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/qemu/report"
)

// BenchmarkTCPBulkAB compares keepnet's bulk TCP throughput at two builds of
// keepnet, in one run, interleaved: the question it answers is "did this
// change make the stack slower?", which two `make bench` runs taken at
// different times cannot answer on a shared host (between two such runs the
// Linux baseline itself moved by 45%). scripts/abbench.sh builds the two
// checkouts and runs it.
//
//	KEEPNET_AB            "NAME=DIR,NAME=DIR": two checkouts, each built
//	                      (make all image: DIR/bin/keepnet boots DIR/images)
//	KEEPNET_BENCH_ROUNDS  rounds (default 5); a round is one run of each build
//	KEEPNET_BENCH_BYTES   bytes down, or "down,up" (default 100000000,50000000)
//	                      (on a host busy with other guests, 20000000,5000000
//	                      keeps a run within minutes)
//	KEEPNET_AB_PAIRED     1: both builds' guests up at once, transferring at
//	                      the same time (abPair), for a host whose load moves
//	KEEPNET_BENCH_OUT     the report's path, relative to the repository
//	                      (default images/out/abbench.md, of which this writes
//	                      the sections "tcp-ab", "tcp-ab-cpu" and
//	                      "tcp-ab-switches")
//
// Each run boots a fresh keepnet-stack guest with the build's own keepnet
// command, kernel and initramfs, warms the path with 1 MB each way, then
// measures a download and an upload as BenchmarkTCPBulk does. The order
// alternates (A, B; B, A; ...) for the same reason as there. Besides the
// rates it reads, before and after each transfer, the CPU time of every
// guest component (status.json's cpu_ms), of the guest as a whole (busy and
// idle) and of the QEMU process on the host, and reports each per MB moved:
// if the rate fell but the CPU per MB did not rise, the time went into
// waiting (sleeps, wake-ups, timers), not into work. The context switches
// per MB, the guest's and each component's, say whether a change made the
// path wait more often.
func BenchmarkTCPBulkAB(b *testing.B) {
	requireITest(b, true)
	builds := abBuilds(b)
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 5)[0])
	sizes := envInts(b, "KEEPNET_BENCH_BYTES", 100_000_000, 50_000_000)
	down, up := sizes[0], sizes[0]/2
	if len(sizes) > 1 {
		up = sizes[1]
	}
	out := os.Getenv("KEEPNET_BENCH_OUT")
	if out == "" {
		out = "images/out/abbench.md"
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}

	paired := os.Getenv("KEEPNET_AB_PAIRED") == "1"
	how := "One guest at a time; the builds alternate (A, B, B, A, ...)."
	if paired {
		how = "Both builds' guests up at once, transferring at the same time, booted in turns (A, B; B, A; ...)."
	}
	// Stacks[0] is the second build, so that the ratio is new over old.
	names := [2]string{builds[1].name, builds[0].name}
	note := fmt.Sprintf("Each run boots a fresh keepnet-stack guest of one build on a tap device in a network namespace, "+
		"then curl in the namespace downloads %s from /bytes and uploads %s to /sink (hashes checked). "+
		"%s Host load average when the bench started: %s. "+
		"Measured by scripts/abbench.sh (qemu/itest BenchmarkTCPBulkAB).", mb(down), mb(up), how, hostLoad())
	rate := &report.Comparison{
		Title: "TCP bulk transfer, keepnet at two builds", Unit: "Mbit/s", GroupBy: "direction",
		Groups: []string{"download", "upload"}, Stacks: names,
		Date: time.Now(), HostCPUs: runtime.NumCPU(), Notes: []string{note},
	}
	cpu := &report.Comparison{
		Title: "CPU time per MB moved, keepnet at two builds", Unit: "ms/MB", GroupBy: "direction: who",
		Stacks: names, Date: rate.Date, HostCPUs: rate.HostCPUs,
		Notes: []string{"qemu: the QEMU process on the host (user+system); guest busy/idle: the guest's /proc/stat, " +
			"summed over its vCPUs; the others: each guest component's process (status.json cpu_ms).", note},
	}
	sw := &report.Comparison{
		Title: "Context switches per MB moved, keepnet at two builds", Unit: "switches/MB", GroupBy: "direction: who",
		Stacks: names, Date: rate.Date, HostCPUs: rate.HostCPUs,
		Notes: []string{"guest: the guest's /proc/stat ctxt, all vCPUs, kernel threads included; the others: " +
			"each guest component's process, over its threads, voluntary and involuntary (status.json ctxsw).", note},
	}
	var first qemuConfig
	for r := 0; r < rounds; r++ {
		order := slices.Clone(builds[:])
		if r%2 == 1 {
			slices.Reverse(order)
		}
		var ms []abMeasure
		if paired {
			ms = abPair(b, order, down, up)
		} else {
			for _, bd := range order {
				ms = append(ms, abRun(b, bd, down, up))
			}
		}
		for _, m := range ms {
			if first == (qemuConfig{}) {
				first = m.cfg
			} else if m.cfg != first {
				b.Fatalf("%s guest ran with QEMU %+v, the first with %+v: not the same configuration", m.build, m.cfg, first)
			}
			fmt.Printf("round %d/%d, %s: download %.1f Mbit/s, upload %.1f Mbit/s; ms/MB down, up: qemu %.0f, %.0f; guest busy %.0f, %.0f, idle %.0f, %.0f\n",
				r+1, rounds, m.build, m.down, m.up, m.cpu["download: qemu"], m.cpu["upload: qemu"],
				m.cpu["download: guest busy"], m.cpu["upload: guest busy"], m.cpu["download: guest idle"], m.cpu["upload: guest idle"])
			rate.Add("download", m.build, m.down)
			rate.Add("upload", m.build, m.up)
			addKeyed(cpu, m.build, m.cpu)
			addKeyed(sw, m.build, m.sw)
		}
		// After every round: a later one that fails on a busy host leaves
		// the figures so far.
		saveAB(b, out, first, rate, cpu, sw)
	}
	for _, c := range []*report.Comparison{rate, cpu, sw} {
		fmt.Println()
		c.Table(os.Stdout)
	}
	fmt.Printf("\nreport %s\n", out)
	for _, g := range rate.Groups {
		b.ReportMetric(rate.Ratio(g), g+"-new/old")
	}
	b.ReportMetric(0, "ns/op")
}

// addKeyed adds one run's figures of build to c, each in the group of its
// key ("direction: who"), which it adds to c's groups if new, in order.
func addKeyed(c *report.Comparison, build string, figures map[string]float64) {
	for k, v := range figures {
		if i, found := slices.BinarySearch(c.Groups, k); !found {
			c.Groups = slices.Insert(c.Groups, i, k)
		}
		c.Add(k, build, v)
	}
}

// saveAB writes the report's three sections.
func saveAB(b *testing.B, out string, cfg qemuConfig, rate, cpu, sw *report.Comparison) {
	for _, s := range []struct {
		c    *report.Comparison
		name string
	}{{rate, "tcp-ab"}, {cpu, "tcp-ab-cpu"}, {sw, "tcp-ab-switches"}} {
		s.c.Accel = cfg.accel
		s.c.GuestCPUs, _ = strconv.Atoi(cfg.smp)
		if _, err := s.c.Save(out, s.name); err != nil {
			b.Fatal(err)
		}
	}
}

// abBuild is one of the two builds BenchmarkTCPBulkAB compares.
type abBuild struct {
	name string // as the report shows it: a commit, say
	bin  string // its keepnet command; the images are beside its bin/
	// kernelArgs are appended to the guest's command line (keepnet up
	// --append), so that one build can be measured both ways of a switch:
	// "keep=DIR,nokeep=DIR;keepnet.keep=off" (scripts/keepbench.sh).
	kernelArgs string
}

// abBuilds parses KEEPNET_AB and checks that both builds are complete.
func abBuilds(tb testing.TB) [2]abBuild {
	v := os.Getenv("KEEPNET_AB")
	parts := strings.Split(v, ",")
	if len(parts) != 2 {
		tb.Fatalf("KEEPNET_AB=%q: want NAME=DIR,NAME=DIR (scripts/abbench.sh sets it)", v)
	}
	var bs [2]abBuild
	for i, p := range parts {
		name, dir, ok := strings.Cut(p, "=")
		dir, kernelArgs, _ := strings.Cut(dir, ";")
		if !ok || name == "" || dir == "" {
			tb.Fatalf("KEEPNET_AB=%q: %q is not NAME=DIR or NAME=DIR;KERNEL-ARGS", v, p)
		}
		for _, f := range []string{"bin/keepnet", "images/out/initramfs.cpio", "images/kernel/bzImage"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				tb.Fatalf("build %s: %v: run 'make all image' in %s", name, err, dir)
			}
		}
		bs[i] = abBuild{name: name, bin: filepath.Join(dir, "bin/keepnet"), kernelArgs: kernelArgs}
	}
	if bs[0].name == bs[1].name {
		tb.Fatalf("KEEPNET_AB=%q: the two builds need different names", v)
	}
	return bs
}

// abMeasure is one run's rates and its CPU time and context switches per
// MB, keyed "direction: who".
type abMeasure struct {
	build    string
	cfg      qemuConfig
	down, up float64
	cpu, sw  map[string]float64
}

// abFloorMbps is the rate below which a transfer fails (transferLimit):
// lower than the tests' floor, for a host busy with other guests has given
// uploads of 0.7 Mbit/s.
const abFloorMbps = 0.2

// abGuest is one booted guest of a build, in its own namespace.
type abGuest struct {
	t *scope
	n *netns
	a *appliance
	m abMeasure
}

// bootAB boots bd in a fresh namespace and warms the path; close its
// scope to power it off and remove the namespace.
func bootAB(b *testing.B, bd abBuild) *abGuest {
	g := &abGuest{t: newScope(b), m: abMeasure{build: bd.name, cpu: map[string]float64{}, sw: map[string]float64{}}}
	g.n = newNetns(g.t)
	args := append(g.n.upArgs(), "--stack", "keepnet")
	if bd.kernelArgs != "" {
		args = append(args, "--append", bd.kernelArgs)
	}
	g.a = bootWith(g.t, bd.bin, g.n.Name, args...)
	g.m.cfg = readQEMUConfig(g.t, g.a)
	waitServing(g.t, g.n)
	httpDownload(g.t, g.n, 1_000_000, 5, abFloorMbps)
	httpUpload(g.t, g.n, 1_000_000, 6, abFloorMbps)
	return g
}

// download and upload measure one transfer each and the CPU it took.
func (g *abGuest) download(size int64) {
	before, st := readCPU(g.t, g.a)
	g.m.down = httpDownload(g.t, g.n, size, 5, abFloorMbps)
	g.took(before, st, size, "download", g.m.down)
}

func (g *abGuest) upload(size int64) {
	before, st := readCPU(g.t, g.a)
	g.m.up = httpUpload(g.t, g.n, size, 6, abFloorMbps)
	g.took(before, st, size, "upload", g.m.up)
}

// took records the CPU and the context switches a transfer of size bytes
// took since before (with the status st read then) and prints its rate
// and tcp's counters.
func (g *abGuest) took(before cpuReading, st ctl.Status, size int64, dir string, mbps float64) {
	after, st2 := readCPU(g.t, g.a)
	after.perMB(before, size, dir, g.m.cpu)
	ctxSwitches.perMB(st, st2, size).into(dir, g.m.sw)
	fmt.Printf("%s %s: %.1f Mbit/s;%s\n", g.m.build, dir, mbps, after.events(before))
}

// abRun boots bd alone, measures one download and one upload, and powers
// the guest off before it returns.
func abRun(b *testing.B, bd abBuild, down, up int64) abMeasure {
	g := bootAB(b, bd)
	defer g.t.close()
	g.download(down)
	g.upload(up)
	return g.m
}

// abPair boots both builds (in the given order), then has both download at
// the same time, then both upload: each transfer meets the same load on
// the host as the other, so that their ratio holds on a host whose load
// moves (KEEPNET_AB_PAIRED=1).
func abPair(b *testing.B, order []abBuild, down, up int64) []abMeasure {
	var gs []*abGuest
	defer func() {
		for _, g := range gs {
			g.t.close()
		}
	}()
	for _, bd := range order {
		gs = append(gs, bootAB(b, bd))
	}
	for _, transfer := range []func(*abGuest){
		func(g *abGuest) { g.download(down) },
		func(g *abGuest) { g.upload(up) },
	} {
		var wg sync.WaitGroup
		for _, g := range gs {
			wg.Add(1)
			go func() {
				defer wg.Done() // also when the transfer fails (Fatal ends the goroutine)
				transfer(g)
			}()
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
	}
	return []abMeasure{gs[0].m, gs[1].m}
}

// waitServing waits until the appliance answers HTTP: a build from before
// issue 10 says ready before httpd listens.
func waitServing(t testing.TB, n *netns) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootWait)
	defer cancel()
	for {
		_, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null", "http://"+n.GuestIP+"/bytes?n=1")
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the appliance did not answer HTTP within %v: %v", bootWait, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cpuReading is the CPU time, in milliseconds, of everything abRun
// watches, at one moment.
type cpuReading map[string]float64

// readCPU reads the guest's components and whole machine from status.json
// and the QEMU process's from the host's /proc; it returns the status too.
func readCPU(t testing.TB, a *appliance) (cpuReading, ctl.Status) {
	t.Helper()
	st := a.status()
	r := cpuReading{}
	for _, c := range st.Components {
		r[c.Name] = float64(c.CPUMillis)
		r[c.Name+" restarts"] = float64(c.Restarts)
	}
	if c := st.CPU; c != nil {
		r["guest busy"] = float64(c.User + c.System + c.IRQ)
		r["guest idle"] = float64(c.Idle)
	}
	r["qemu"] = qemuCPU(t, a)
	if c, ok := st.Component("tcp"); ok {
		var n struct{ InSegs, OutSegs, Retransmits, Timeouts uint64 }
		if json.Unmarshal(c.Stats, &n) == nil {
			r["#tcp in"], r["#tcp out"] = float64(n.InSegs), float64(n.OutSegs)
			r["#tcp retransmits"], r["#tcp timeouts"] = float64(n.Retransmits), float64(n.Timeouts)
		}
	}
	return r, st
}

// events says how tcp's segment counters moved between earlier and r (the
// keys readCPU starts with "#"): a slower transfer with more timeouts
// waited for its retransmission timer.
func (r cpuReading) events(earlier cpuReading) string {
	var ks []string
	for k := range r {
		if strings.HasPrefix(k, "#") {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	var b strings.Builder
	for _, k := range ks {
		fmt.Fprintf(&b, " %s %.0f", k[1:], r[k]-earlier[k])
	}
	return b.String()
}

// perMB stores into into[dir+": "+who] the CPU each used between earlier
// and r, per MB of n bytes; it leaves out a component that restarted in
// between (its process's CPU time began again at 0).
func (r cpuReading) perMB(earlier cpuReading, n int64, dir string, into map[string]float64) {
	for who, ms := range r {
		if strings.HasSuffix(who, " restarts") || strings.HasPrefix(who, "#") {
			continue
		}
		was, ok := earlier[who]
		if !ok || r[who+" restarts"] != earlier[who+" restarts"] {
			continue
		}
		into[dir+": "+who] = (ms - was) / (float64(n) / 1e6)
	}
}

// qemuCPU is the user and system time, in milliseconds, of a's QEMU
// process so far (/proc/PID/stat, fields 14 and 15, in clock ticks).
func qemuCPU(t testing.TB, a *appliance) float64 {
	t.Helper()
	pid, err := os.ReadFile(a.ctl + ".pid")
	if err != nil {
		t.Fatalf("the QEMU of %s: %v", a.ctl, err)
	}
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
	if err != nil {
		t.Fatalf("the QEMU of %s: %v", a.ctl, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("/proc/%s/stat = %q: too few fields", strings.TrimSpace(string(pid)), s)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) * 1000 / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's process times: 100 on every
// Linux architecture Go runs QEMU on.
const clockTicks = 100
