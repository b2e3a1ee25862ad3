package itest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keepnet/apps/splitmix"
)

// 200 TCP connections to the appliance's echo service (port 7) are open at
// once, then each sends 250 KB of its own splitmix stream while it reads the
// echo back, all at the same time; every byte must come back in order
// (issue 5). The tcp server's connection count shows the 200 before the
// transfers start and falls back after they end; no component restarts.
// If the echoes stop, the helper reports it within 30 s and the test logs
// the appliance's state while the connections are still open.
func TestTCPEchoConcurrent(t *testing.T) {
	requireITest(t, true)
	const conns, size = 200, 250_000
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	httpWarm(t, n)
	before := a.waitStats("tcp", func(m map[string]any) bool { return num(m, "InSegs") > 0 })
	sysBefore, ipBefore := a.stats("syscall"), a.stats("ip")
	restarts := restartsOf(a.status())

	var open map[string]any // tcp's counters while every connection is open
	r := n.tcpEchoHelper(t, 20*time.Minute, conns, size, func(line string) {
		t.Log(line)
		if strings.HasPrefix(line, "open:") {
			open = a.waitStats("tcp", func(m map[string]any) bool { return num(m, "Conns") >= conns })
			t.Logf("tcp with every connection open: Conns %v, PendingAccepts %v", open["Conns"], open["PendingAccepts"])
			return
		}
		a.logState(n, "while the echoes are stalled")
	})
	t.Logf("%d connections, %s each way on each: %v", conns, mb(size), r.fields)
	for i, f := range r.fails {
		if i == 10 {
			t.Errorf("... and %d more failed connections", len(r.fails)-i)
			break
		}
		t.Error(f)
	}
	if r.err != nil || atoi(r.fields["ok"]) != conns || r.fields["failed"] != "0" {
		t.Fatalf("tcp echo helper: %v; result %v, want all %d connections ok", r.err, r.fields, conns)
	}
	if num(open, "Conns") < conns {
		t.Errorf("keepnet stats tcp showed %v connections while the helper held %d open", open["Conns"], conns)
	}

	after := a.waitStats("tcp", func(m map[string]any) bool { return num(m, "Conns") <= num(before, "Conns") })
	sysAfter := a.stats("syscall")
	t.Logf("tcp: Conns %v (%v before), Sockets %v; grew by %s", after["Conns"], before["Conns"], after["Sockets"],
		deltas(before, after, "InSegs", "OutSegs", "Retransmits", "FastRetransmits", "Timeouts", "InSynDrops", "InOOODrops", "OutDrops", "IPRefused"))
	t.Logf("syscall: Sockets %v; grew by %s", sysAfter["Sockets"], deltas(sysBefore, sysAfter, "Forwarded", "NoBuffer", "BadRequests"))
	ipAfter := a.stats("ip")
	t.Logf("ip: grew by %s", deltas(ipBefore, ipAfter, "IPOut", "SegmentationOut", "OutputsDeferred", "OutputsRefused", "LinkErrors", "NoPeerDrops", "NoRoute", "QueueDrops"))
	if num(after, "Conns") > num(before, "Conns") {
		a.logState(n, "after the echo clients closed")
		t.Errorf("tcp holds %v connections 15s after the echo clients closed, %v before they opened", after["Conns"], before["Conns"])
	}
	for _, c := range a.status().Components {
		if c.Restarts != restarts[c.Name] {
			t.Errorf("%s restarted during the echo test: %+v (%d restarts before)", c.Name, c, restarts[c.Name])
		}
	}
}

// logState logs what it takes to find where a wedge is: the counters of tcp
// and syscall, every component's state and CPU time, and the states of the
// namespace's TCP connections to port 7.
func (a *appliance) logState(n *netns, when string) {
	t := a.t
	t.Helper()
	for _, c := range []string{"tcp", "syscall"} {
		if m, err := a.tryStats(c); err != nil {
			t.Log(err)
		} else {
			t.Logf("%s: keepnet stats %s: %v", when, c, m)
		}
	}
	var comps []string
	for _, c := range a.status().Components {
		comps = append(comps, fmt.Sprintf("%s %s restarts=%d cpu=%dms rss=%dKiB", c.Name, c.State, c.Restarts, c.CPUMillis, c.RSSKiB))
	}
	t.Logf("%s: components: %s", when, strings.Join(comps, "; "))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.exec(ctx, nil, "ss", "-tanH", "dport = :7")
	states := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			states[f[0]]++
		}
	}
	t.Logf("%s: the namespace's connections to port 7 by state: %v (%v)", when, states, err)
}

// deltas formats how much each of the counters keys grew from before to
// after.
func deltas(before, after map[string]any, keys ...string) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %v", k, num(after, k)-num(before, k))
	}
	return b.String()
}

// echoResult is what TestHelperTCPEcho reported.
type echoResult struct {
	fields map[string]string // of its "result:" line
	fails  []string          // its "fail:" lines
	err    error             // of the helper process
}

// tcpEchoHelper runs TestHelperTCPEcho in the namespace against the
// appliance's echo port. When the helper has every connection open, and if
// the echoes stall, it calls at with the helper's "open:" or "stall:"
// line, then tells the helper to go on. The helper and this wait at most
// timeout.
func (n *netns) tcpEchoHelper(t testing.TB, timeout time.Duration, conns, size int, at func(line string)) echoResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	self, _ := os.Executable()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, self, "-test.run=^TestHelperTCPEcho$")
	cmd.Env = append(os.Environ(), "TCPECHO_TARGET="+net.JoinHostPort(n.GuestIP, "7"),
		"TCPECHO_CONNS="+strconv.Itoa(conns), "TCPECHO_BYTES="+strconv.Itoa(size),
		"TCPECHO_TIMEOUT="+(timeout/2).String(), "TCPECHO_HOLD=1")
	cmd.WaitDelay = 10 * time.Second
	cmd.Stderr = os.Stderr
	stdin, stdout := startPiped(t, cmd)
	var r echoResult
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "open:"), strings.HasPrefix(line, "stall:"):
			at(line)
			fmt.Fprintln(stdin, "go")
		case strings.HasPrefix(line, "fail:"):
			r.fails = append(r.fails, line)
		case strings.HasPrefix(line, "result:"):
			r.fields = map[string]string{}
			for _, f := range strings.Fields(strings.TrimPrefix(line, "result:")) {
				k, v, _ := strings.Cut(f, "=")
				r.fields[k] = v
			}
		}
	}
	stdin.Close()
	r.err = cmd.Wait()
	if r.fields == nil && r.err == nil {
		r.err = errors.New("the helper printed no result line")
	}
	return r
}

// TestHelperTCPEcho is not a test of its own: TestTCPEchoConcurrent runs
// the test binary inside its namespace with TCPECHO_TARGET set, and this
// talks to the appliance's echo service from there.
//
//	TCPECHO_TARGET   host:port of the echo service
//	TCPECHO_CONNS    connections (default 200)
//	TCPECHO_BYTES    bytes each connection sends and must get back (default 1000000)
//	TCPECHO_DIALERS  connections being dialled at once (default 16)
//	TCPECHO_SEED     connection i sends splitmix(SEED+i) (default 1000)
//	TCPECHO_TIMEOUT  how long the transfers may take (default 5m)
//	TCPECHO_STALL    end them all when no connection has echoed a byte for
//	                 this long (default 30s)
//	TCPECHO_HOLD     1: wait (at most 2 minutes) for a line on stdin after
//	                 printing "open:" (every connection is open) and
//	                 "stall:" (before ending the transfers), so that the
//	                 test can look at the appliance in those states
//
// It dials every connection before any transfer starts, so all of them are
// open at once. Then each connection writes its stream in chunks of 1 to
// 64 KiB (their sizes also drawn from the seed) and closes its write side,
// while another goroutine reads the echo and compares it byte by byte. A
// connection is ok when exactly BYTES came back, all equal, and then EOF.
// It prints one "fail:" line per connection that is not, with its index,
// how far each side got, the first wrong byte's offset and the errors, and
// a final "result:" line.
func TestHelperTCPEcho(t *testing.T) {
	target := os.Getenv("TCPECHO_TARGET")
	if target == "" {
		return // run only as the helper
	}
	env := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	conns, size, dialers, seed := env("TCPECHO_CONNS", 200), int64(env("TCPECHO_BYTES", 1_000_000)), env("TCPECHO_DIALERS", 16), uint64(env("TCPECHO_SEED", 1000))
	duration := func(name string, def time.Duration) time.Duration {
		if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	timeout, stall := duration("TCPECHO_TIMEOUT", 5*time.Minute), duration("TCPECHO_STALL", 30*time.Second)

	// Dial them all, at most dialers at a time: a burst of 200 SYNs
	// may overflow a listen backlog or SYN queue and wait out Linux's SYN
	// retransmission, which only makes the test slower.
	cs := make([]*net.TCPConn, conns)
	dialErr := make([]error, conns)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, dialers)
	d := net.Dialer{Timeout: 30 * time.Second}
	for i := range cs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := d.Dial("tcp", target)
			if err != nil {
				dialErr[i] = err
				return
			}
			cs[i] = c.(*net.TCPConn)
		})
	}
	wg.Wait()
	dialled := time.Since(start)
	open := 0
	for _, c := range cs {
		if c != nil {
			open++
			defer c.Close()
		}
	}
	fmt.Printf("open: %d of %d connections open at once, dialled in %.1fs\n", open, conns, dialled.Seconds())
	hold := os.Getenv("TCPECHO_HOLD") == "1"
	lines := make(chan struct{}, 2)
	if hold {
		go func() {
			sc := bufio.NewScanner(os.Stdin)
			for sc.Scan() {
				lines <- struct{}{}
			}
			close(lines)
		}()
	}
	waitGo := func(what string) {
		if !hold {
			return
		}
		select {
		case <-lines:
		case <-time.After(2 * time.Minute):
			fmt.Printf("fail: nobody said go within 2 minutes of %s\n", what)
		}
	}
	waitGo("open:")

	// The transfers, every connection at once. A watchdog ends them all
	// when no connection has echoed a byte for stall: a wedged appliance
	// is reported in seconds, not when the deadline comes.
	type result struct {
		written, read, bad int64
		werr, rerr         error
		took               time.Duration
	}
	res := make([]result, conns)
	var echoed atomic.Int64
	start = time.Now()
	deadline := start.Add(timeout)
	for i, c := range cs {
		if c == nil {
			continue
		}
		c.SetDeadline(deadline)
		r := &res[i]
		wg.Go(func() { // the writer
			src := io.LimitReader(splitmix.New(seed+uint64(i)), size)
			sizes := seed + uint64(i) + 1<<32 // chunk sizes, a stream of their own
			buf := make([]byte, 64<<10)
			for r.werr == nil {
				k, _ := src.Read(buf[:1+splitmix.Next(&sizes)%uint64(len(buf))])
				if k == 0 {
					r.werr = c.CloseWrite()
					break
				}
				var w int
				w, r.werr = c.Write(buf[:k])
				r.written += int64(w)
			}
		})
		wg.Go(func() { // the reader
			check := newSplitCheck(seed + uint64(i))
			buf := make([]byte, 32<<10)
			for {
				k, err := c.Read(buf)
				check.Write(buf[:k])
				echoed.Add(int64(k))
				if err != nil {
					if err != io.EOF {
						r.rerr = err
					}
					break
				}
			}
			r.read, r.bad, r.took = check.n, check.bad, time.Since(start)
		})
	}
	done := make(chan struct{})
	go func() { // the watchdog
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last, since := int64(-1), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if e := echoed.Load(); e != last {
					last, since = e, now
					continue
				}
				if now.Sub(since) < stall {
					continue
				}
				fmt.Printf("stall: no connection echoed a byte for %v, %.1fs into the transfers; %d bytes echoed in all\n",
					stall, now.Sub(start).Seconds(), last)
				waitGo("stall:") // the test looks at the appliance meanwhile
				for _, c := range cs {
					if c != nil {
						c.SetDeadline(time.Now())
					}
				}
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	elapsed := time.Since(start)

	ok, failed := 0, 0
	var slowest time.Duration
	for i := range res {
		r := &res[i]
		switch {
		case dialErr[i] != nil:
			fmt.Printf("fail: conn=%d dial: %v\n", i, dialErr[i])
		case r.werr != nil || r.rerr != nil || r.written != size || r.read != size || r.bad >= 0:
			fmt.Printf("fail: conn=%d written=%d read=%d of %d first_wrong_byte=%d (-1: none) after=%.1fs write_err=%v read_err=%v\n",
				i, r.written, r.read, size, r.bad, r.took.Seconds(), r.werr, r.rerr)
		default:
			ok++
			slowest = max(slowest, r.took)
			continue
		}
		failed++
	}
	total := float64(ok) * float64(size)
	fmt.Printf("result: conns=%d open=%d ok=%d failed=%d seconds=%.1f slowest=%.1f dial_seconds=%.1f mbps_each_way=%.0f\n",
		conns, open, ok, failed, elapsed.Seconds(), slowest.Seconds(), dialled.Seconds(), total*8/elapsed.Seconds()/1e6)
}
