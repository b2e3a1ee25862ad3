package itest

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/qemu/report"
)

// The clients of BenchmarkRequestRates and how hard they press: wrk keeps
// httpKeepAliveConns connections open and sends a request as soon as the
// last one's answer is in; ab opens httpShortConns connections at a time,
// one request each (HTTP/1.0, no keep-alive: the server closes, so every
// TIME-WAIT is the appliance's). Both ask for a body of httpBodyBytes for
// httpSeconds.
const (
	httpKeepAliveConns = 400
	httpShortConns     = 100
	httpBodyBytes      = 1024
	httpSeconds        = 10
)

// The groups of the HTTP section, in the order of the table.
const (
	groupKeepAlive = "keep-alive (wrk)"
	groupShort     = "short connections (ab)"
)

// BenchmarkRequestRates compares, in the same QEMU configuration, what an
// HTTP client or ping sees of keepnet's stack and of Linux's (--stack
// linux), each guest running the same httpd: the request rate of wrk on
// keep-alive connections and of ab on a connection per request, and the
// median round trip of 300 pings at 10 ms. The three are taken on each
// guest in turn; as BenchmarkTCPBulk, one guest at a time, a fresh guest
// per run, the stacks alternating, medians of KEEPNET_BENCH_ROUNDS rounds
// (default 3). It writes the sections "http" (requests/s), "http-cpu" (the
// guest's CPU per thousand requests, keepnet's components in its notes),
// "http-switches" (the guest's context switches per request, likewise) and
// "ping" (µs) of the report. A response other than 200 fails it;
// socket errors and failed requests are counted in the notes.
func BenchmarkRequestRates(b *testing.B) {
	requireITest(b, true)
	for tool, pkg := range map[string]string{"wrk": "wrk", "ab": "apache2-utils", "ping": "iputils-ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not found: install %s (make bench does: scripts/deps.sh with KEEPNET_BENCH_DEPS=1)", tool, pkg)
		}
	}
	rounds := int(envInts(b, "KEEPNET_BENCH_ROUNDS", 3)[0])
	out, load := benchOut(b), hostLoad()
	http := &report.Comparison{
		Title: "HTTP request rate", Unit: "requests/s", GroupBy: "client",
		Groups: []string{groupKeepAlive, groupShort}, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			fmt.Sprintf("Each run boots a fresh guest on a tap device in a network namespace; from there wrk keeps %d keep-alive connections "+
				"busy for %d s (2 threads), then ab opens %d connections at a time for %d s, one request on each (HTTP/1.0: the server closes). "+
				"Every request is GET /bytes?n=%d of the appliance's httpd (port 80).",
				httpKeepAliveConns, httpSeconds, httpShortConns, httpSeconds, httpBodyBytes),
			interleaveNote(load),
			"Measured by `make bench` (qemu/itest BenchmarkRequestRates).",
		},
	}
	cpu := newPerUnitSection(http, "Guest CPU per thousand HTTP requests", "ms/1000 requests",
		"The guest's processor time (user, system and interrupts, all CPUs) during each client's run above, per thousand requests answered: "+
			"the stack's work and httpd's. Lower is better; the ratio is keepnet's over Linux's.",
		"ms per thousand requests of each process's own CPU time")
	sw := newPerUnitSection(http, "Guest context switches per HTTP request", "switches/request",
		"The guest's context switches (all CPUs, kernel threads and the idle task included: /proc/stat's ctxt) during each client's run above, "+
			"per request answered. Lower is better; the ratio is keepnet's over Linux's.",
		"switches per request of each process's threads, voluntary and involuntary")
	ping := &report.Comparison{
		Title: "Ping round trip", Unit: "µs", GroupBy: "pings",
		Groups: []string{"300 at 10 ms"}, Stacks: [2]string{"keepnet", "linux"},
		Date: time.Now(), HostCPUs: runtime.NumCPU(),
		Notes: []string{
			"The median round trip of 300 pings from the namespace, 10 ms apart, after 20 to warm the path, on the guests above. " +
				"Lower is better: the ratio is keepnet's round trip over Linux's.",
			interleaveNote(load),
		},
	}
	errs := map[string][]string{}
	first := interleave(b, rounds, func(r int, stack string) qemuConfig {
		run := requestRatesRun(b, stack)
		fmt.Printf("round %d/%d, %s: keep-alive %.0f requests/s (%s), short connections %.0f requests/s (%s), ping %.0f µs\n",
			r+1, rounds, stack, run.keepAlive.rate, run.keepAlive.errors, run.short.rate, run.short.errors, run.rttMicros)
		http.Add(groupKeepAlive, stack, run.keepAlive.rate)
		http.Add(groupShort, stack, run.short.rate)
		cpu.add(groupKeepAlive, stack, run.keepAlive.cpu)
		cpu.add(groupShort, stack, run.short.cpu)
		sw.add(groupKeepAlive, stack, run.keepAlive.switches)
		sw.add(groupShort, stack, run.short.switches)
		ping.Add(ping.Groups[0], stack, run.rttMicros)
		errs[stack] = append(errs[stack], run.keepAlive.errors, run.short.errors)
		return run.cfg
	})
	for _, stack := range http.Stacks {
		http.Notes = append(http.Notes, fmt.Sprintf("Errors on %s, run by run (wrk, ab): %s.", stack, strings.Join(errs[stack], "; ")))
	}
	saveComparison(b, http, first, out, "http")
	cpu.save(b, first, out, "http-cpu")
	sw.save(b, first, out, "http-switches")
	saveComparison(b, ping, first, out, "ping")
	for _, c := range []*report.Comparison{http, ping} {
		for _, g := range c.Groups {
			b.ReportMetric(c.Ratio(g), strings.Fields(g)[0]+"-keepnet/linux")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// rateRun is what one guest gave BenchmarkRequestRates.
type rateRun struct {
	keepAlive, short clientRun
	rttMicros        float64
	cfg              qemuConfig
}

// clientRun is one HTTP client's run: its request rate, its errors in
// words ("none", "3 read errors"), the CPU the guest spent per thousand
// requests and its context switches per request.
type clientRun struct {
	rate     float64
	errors   string
	cpu      usage
	switches usage
}

// requestRatesRun boots stack in a fresh namespace, pings it and runs wrk
// and then ab against its httpd.
func requestRatesRun(b *testing.B, stack string) rateRun {
	t := newScope(b)
	defer t.close()
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", stack)...)
	r := rateRun{cfg: readQEMUConfig(t, a)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// ab's connections end in the server's TIME-WAIT, but give the
	// client ports enough for a fast stack's ten seconds anyway.
	if out, err := n.exec(ctx, nil, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"); err != nil {
		t.Fatalf("sysctl: %v %s", err, out)
	}

	n.ping(t, time.Minute, "-c", "20", "-i", "0.05", "-W", "2") // ARP, and the path warmed
	p := n.ping(t, 2*time.Minute, "-c", "300", "-i", "0.01", "-W", "2")
	if p.received != p.sent || len(p.rtts) == 0 {
		t.Fatalf("%s: %d of %d pings answered", stack, p.received, p.sent)
	}
	r.rttMicros = p.median() * 1000

	url := fmt.Sprintf("http://%s/bytes?n=%d&seed=1", n.GuestIP, httpBodyBytes)
	httpTransfer(t, n, 1_000_000, 1_000_000) // the server's first connection, off the clock

	s0 := a.status()
	raw, err := n.exec(ctx, nil, "wrk", "-t", "2", "-c", strconv.Itoa(httpKeepAliveConns),
		"-d", fmt.Sprintf("%ds", httpSeconds), "--timeout", "10s", url)
	s1 := a.status()
	if err != nil {
		t.Fatalf("%s: %v\n%s", stack, err, raw)
	}
	w, err := wrkSummary.parse(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", stack, err)
	}
	r.keepAlive = clientRun{rate: w.rate, errors: w.errors(),
		cpu: cpuTime.per(s0, s1, float64(w.requests)/1000), switches: ctxSwitches.per(s0, s1, float64(w.requests))}

	raw, err = n.exec(ctx, nil, "ab", "-q", "-r", "-s", "30", "-t", strconv.Itoa(httpSeconds), "-n", "1000000",
		"-c", strconv.Itoa(httpShortConns), url)
	s2 := a.status()
	if err != nil {
		t.Fatalf("%s: %v\n%s", stack, err, raw)
	}
	ab, err := abSummary.parse(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", stack, err)
	}
	r.short = clientRun{rate: ab.rate, errors: ab.errors(),
		cpu: cpuTime.per(s1, s2, float64(ab.requests)/1000), switches: ctxSwitches.per(s1, s2, float64(ab.requests))}
	return r
}

// clientStats is what wrk or ab reported: the rate, the requests
// answered, and the ones that went wrong.
type clientStats struct {
	rate     float64
	requests int64
	// failed counts by kind ("connect", "read", "timeout", "failed").
	failed map[string]int64
}

func (s clientStats) errors() string {
	var parts []string
	for _, kind := range slices.Sorted(maps.Keys(s.failed)) {
		if s.failed[kind] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", s.failed[kind], kind))
		}
	}
	if parts == nil {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// clientSummary is how a client's summary says what parse reads: its
// rate, the requests answered, the answers that were not successes, and
// the requests that failed, a subexpression per kind.
type clientSummary struct {
	tool                           string
	rate, requests, notOK, failing *regexp.Regexp
	kinds                          []string // of failing's subexpressions
}

var (
	wrkSummary = clientSummary{
		tool:     "wrk",
		rate:     regexp.MustCompile(`Requests/sec:\s+([\d.]+)`),
		requests: regexp.MustCompile(`(\d+) requests in `),
		notOK:    regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`),
		failing:  regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`),
		kinds:    []string{"connect", "read", "write", "timeout"},
	}
	abSummary = clientSummary{
		tool:     "ab",
		rate:     regexp.MustCompile(`Requests per second:\s+([\d.]+)`),
		requests: regexp.MustCompile(`Complete requests:\s+(\d+)`),
		notOK:    regexp.MustCompile(`Non-2xx responses:\s+(\d+)`),
		failing:  regexp.MustCompile(`Failed requests:\s+(\d+)`),
		kinds:    []string{"failed"},
	}
)

// parse reads the client's summary out; an answer that was not a
// success, or no request answered, is an error.
func (c clientSummary) parse(out string) (clientStats, error) {
	s := clientStats{failed: map[string]int64{}}
	m, n := c.rate.FindStringSubmatch(out), c.requests.FindStringSubmatch(out)
	if m == nil || n == nil {
		return s, fmt.Errorf("%s printed no rate:\n%s", c.tool, out)
	}
	s.rate, _ = strconv.ParseFloat(m[1], 64)
	s.requests, _ = strconv.ParseInt(n[1], 10, 64)
	if m := c.notOK.FindStringSubmatch(out); m != nil {
		return s, fmt.Errorf("%s: %s answers not a success:\n%s", c.tool, m[1], out)
	}
	if m := c.failing.FindStringSubmatch(out); m != nil {
		for i, kind := range c.kinds {
			s.failed[kind], _ = strconv.ParseInt(m[i+1], 10, 64)
		}
	}
	if s.requests == 0 {
		return s, fmt.Errorf("%s: no request answered:\n%s", c.tool, out)
	}
	return s, nil
}
