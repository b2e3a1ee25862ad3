package itest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
//	KEEPNET_BENCH_OUT     the report's path, relative to the repository
//	                      (default images/out/abbench.md, of which this writes
//	                      the sections "tcp-ab" and "tcp-ab-cpu")
//
// Each run boots a fresh keepnet-stack guest with the build's own keepnet
// command, kernel and initramfs, warms the path with 1 MB each way, then
// measures a download and an upload as BenchmarkTCPBulk does. The order
// alternates (A, B; B, A; ...) for the same reason as there. Besides the
// rates it reads, before and after each transfer, the CPU time of every
// guest component (status.json's cpu_ms), of the guest as a whole (busy and
// idle) and of the QEMU process on the host, and reports each per MB moved:
// if the rate fell but the CPU per MB did not rise, the time went into
// waiting (sleeps, wake-ups, timers), not into work.
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

	// Stacks[0] is the second build, so that the ratio is new over old.
	names := [2]string{builds[1].name, builds[0].name}
	note := fmt.Sprintf("Each run boots a fresh keepnet-stack guest of one build on a tap device in a network namespace, "+
		"then curl in the namespace downloads %s from /bytes and uploads %s to /sink (hashes checked). "+
		"One guest at a time; the builds alternate (A, B, B, A, ...). Host load average when the bench started: %s. "+
		"Measured by scripts/abbench.sh (qemu/itest BenchmarkTCPBulkAB).", mb(down), mb(up), hostLoad())
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
	var first qemuConfig
	for r := 0; r < rounds; r++ {
		order := slices.Clone(builds[:])
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, bd := range order {
			m, cfg := abRun(b, bd, down, up)
			if first == (qemuConfig{}) {
				first = cfg
			} else if cfg != first {
				b.Fatalf("%s guest ran with QEMU %+v, the first with %+v: not the same configuration", bd.name, cfg, first)
			}
			fmt.Printf("round %d/%d, %s: download %.0f Mbit/s, upload %.0f Mbit/s\n", r+1, rounds, bd.name, m.down, m.up)
			rate.Add("download", bd.name, m.down)
			rate.Add("upload", bd.name, m.up)
			for _, k := range m.cpuKeys() {
				if !slices.Contains(cpu.Groups, k) {
					cpu.Groups = append(cpu.Groups, k)
				}
				cpu.Add(k, bd.name, m.cpu[k])
			}
		}
	}
	for _, c := range []*report.Comparison{rate, cpu} {
		c.Accel = first.accel
		c.GuestCPUs, _ = strconv.Atoi(first.smp)
	}
	slices.Sort(cpu.Groups)

	for _, s := range []struct {
		c    *report.Comparison
		name string
	}{{rate, "tcp-ab"}, {cpu, "tcp-ab-cpu"}} {
		if _, err := s.c.Save(out, s.name); err != nil {
			b.Fatal(err)
		}
		fmt.Println()
		s.c.Table(os.Stdout)
	}
	fmt.Printf("\nreport %s\n", out)
	for _, g := range rate.Groups {
		b.ReportMetric(rate.Ratio(g), g+"-new/old")
	}
	b.ReportMetric(0, "ns/op")
}

// abBuild is one of the two builds BenchmarkTCPBulkAB compares.
type abBuild struct {
	name string // as the report shows it: a commit, say
	bin  string // its keepnet command; the images are beside its bin/
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
		if !ok || name == "" || dir == "" {
			tb.Fatalf("KEEPNET_AB=%q: %q is not NAME=DIR", v, p)
		}
		for _, f := range []string{"bin/keepnet", "images/out/initramfs.cpio", "images/kernel/bzImage"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				tb.Fatalf("build %s: %v: run 'make all image' in %s", name, err, dir)
			}
		}
		bs[i] = abBuild{name: name, bin: filepath.Join(dir, "bin/keepnet")}
	}
	if bs[0].name == bs[1].name {
		tb.Fatalf("KEEPNET_AB=%q: the two builds need different names", v)
	}
	return bs
}

// abMeasure is one run's rates and its CPU time per MB, keyed
// "direction: who".
type abMeasure struct {
	down, up float64
	cpu      map[string]float64
}

func (m abMeasure) cpuKeys() []string {
	var ks []string
	for k := range m.cpu {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// abRun boots bd in a fresh namespace, measures one download and one
// upload and the CPU each took, and powers the guest off and removes the
// namespace before it returns.
func abRun(b *testing.B, bd abBuild, down, up int64) (abMeasure, qemuConfig) {
	t := newScope(b)
	defer t.close()
	n := newNetns(t)
	a := bootWith(t, bd.bin, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	cfg := readQEMUConfig(t, a)
	waitServing(t, n)
	httpTransfer(t, n, 1_000_000, 1_000_000)

	m := abMeasure{cpu: map[string]float64{}}
	before := readCPU(t, a)
	m.down = httpDownload(t, n, down, 5, floorMbps)
	mid := readCPU(t, a)
	m.up = httpUpload(t, n, up, 6, floorMbps)
	after := readCPU(t, a)
	mid.perMB(before, down, "download", m.cpu)
	after.perMB(mid, up, "upload", m.cpu)
	return m, cfg
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
// and the QEMU process's from the host's /proc.
func readCPU(t testing.TB, a *appliance) cpuReading {
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
	return r
}

// perMB stores into into[dir+": "+who] the CPU each used between earlier
// and r, per MB of n bytes; it leaves out a component that restarted in
// between (its process's CPU time began again at 0).
func (r cpuReading) perMB(earlier cpuReading, n int64, dir string, into map[string]float64) {
	for who, ms := range r {
		if strings.HasSuffix(who, " restarts") {
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
