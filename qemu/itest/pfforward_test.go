package itest

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// The acceptance tests of issue 15 for keepnet as a firewall between two
// networks (bootForward's topology, A — keepnet — B), as an outsider sees
// it: curl, ping and nmap in the namespaces.
//
// pf judges a forwarded datagram twice: in on the interface it came in on,
// out on the one it leaves by, each by a rule or a state of that direction
// (servers/pf, "States"). So a forwarded flow needs a pass rule each way
// and holds two states. A keep state rule decides only the packet that
// opens a flow (a TCP SYN, an ICMP echo request of a new echo id); the
// flow's later packets, both ways, pass by its state and no rule counts
// them. A block rule counts every packet it drops.

// pfForwardRules: A may open TCP connections to B and ping it (keep
// state: B's replies pass by the states), except to B's fwdOtherPort; B
// may open nothing to A: BenchmarkForward's firewall (fwdFirewallRules),
// whose rules start on line 3. Line numbers are what the counters are read by.
// Echo states live 10 minutes (icmp.first), so that the ping's are still
// there when the test reads them.
const pfForwardRules = "set default block\nset timeout icmp.first 600\n" + fwdFirewallRules

// Rule lines of pfForwardRules.
const (
	lineTCPIn    = 3
	lineTCPOut   = 4
	lineBlock    = 5
	linePingIn   = 6
	linePingOut  = 7
	lineBToA     = 8
	fwdRuleCount = 6
)

// TestPFForwardRules: keepnet forwards between A and B under
// pfForwardRules. From A: a 20 MB download and upload with B's server
// (hashes right), ping (all answered), nmap finds B's open port open and
// the blocked one filtered, and curl to the blocked one times out. From
// B: ping, nmap and curl to a server in A all fail (filtered, not
// refused). Each rule's counters are what was sent: one connection or
// echo flow per keep state rule, and every SYN and echo request a block
// rule dropped, as nmap and ping count them.
func TestPFForwardRules(t *testing.T) {
	requireITest(t, true)
	f := bootForward(t, pfForwardRules)
	startForwardServer(t, f.a, fwdPort) // for B to fail to reach

	// A to B: a connection each for the warm-up, the download and the
	// upload; one echo flow of 10 requests.
	httpWarm(t, f.toB)
	const pings = 10
	if s := f.toB.ping(t, time.Minute, "-c", strconv.Itoa(pings), "-i", "0.2", "-W", "5"); s.received != pings {
		t.Errorf("ping from A to B: %d of %d answered, want all: echo requests pass, and their replies by the state", s.received, pings)
	}
	const size = 20_000_000
	down := httpDownload(t, f.toB, size, 5, floorMbps)
	up := httpUpload(t, f.toB, size, 6, floorMbps)
	t.Logf("A from B: %s at %.0f Mbit/s; A to B: %s at %.0f Mbit/s; hashes match", mb(size), down, mb(size), up)

	// B to A: nothing passes.
	const bPings = 3
	if s := f.toA.ping(t, time.Minute, "-c", strconv.Itoa(bPings), "-i", "0.2", "-W", "2"); s.sent != bPings || s.received != 0 {
		t.Errorf("ping from B to A: %d of %d answered, want %d sent, none answered", s.received, s.sent, bPings)
	}
	bState, bSYNs := f.toA.nmap(t, fwdPort)
	if bState != "filtered" {
		t.Errorf("nmap in B of A's port %d: %q, want filtered (A serves there: pf drops the SYN)", fwdPort, bState)
	}
	// A's SYNs to the blocked port.
	aState, aSYNs := f.toB.nmap(t, fwdOtherPort)
	if aState != "filtered" {
		t.Errorf("nmap in A of B's port %d: %q, want filtered (B serves there: pf drops the SYN)", fwdOtherPort, aState)
	}

	// Counters, exactly: pf publishes them once a second.
	want := map[int][2]float64{ // line: packets, states
		lineTCPIn: {3, 3}, lineTCPOut: {3, 3},
		linePingIn: {1, 1}, linePingOut: {1, 1},
		lineBlock: {float64(aSYNs), 0},
		lineBToA:  {float64(bPings + bSYNs), 0},
	}
	st := f.app.waitStats("pf", func(m map[string]any) bool {
		return ruleCounter(m, lineBlock, "Packets") >= float64(aSYNs) && ruleCounter(m, lineBToA, "Packets") >= float64(bPings+bSYNs)
	})
	for line, w := range want {
		if p, s := ruleCounter(st, line, "Packets"), ruleCounter(st, line, "States"); p != w[0] || s != w[1] {
			t.Errorf("rule at line %d: decided %v packets and created %v states, want %v and %v", line, p, s, w[0], w[1])
		}
	}
	// The echo flow's two states (in on e1000.0, out on e1000.1) each
	// counted every request and every reply.
	states := f.app.keepnetOK(t, "pf", "states")
	echo := regexp.MustCompile(`(?m)^icmp (in|out) 10\.77\.0\.1:\d+ -> 10\.78\.0\.1:\d+ \S+ pkts (\d+):(\d+) `)
	var echoStates []string
	for _, m := range echo.FindAllStringSubmatch(states, -1) {
		echoStates = append(echoStates, m[1])
		if m[2] != strconv.Itoa(pings) || m[3] != strconv.Itoa(pings) {
			t.Errorf("echo state %s: %s:%s packets, want %d:%d", m[1], m[2], m[3], pings, pings)
		}
	}
	if len(echoStates) != 2 {
		t.Errorf("echo states %v, want one in and one out:\n%s", echoStates, states)
	}

	// What an outsider sees: the open port open, the blocked one silent,
	// B's connections to A too.
	if s, _ := f.toB.nmap(t, fwdPort); s != "open" {
		t.Errorf("nmap in A of B's port %d: %q, want open", fwdPort, s)
	}
	if code := f.toB.connectTimesOut(t, fwdOtherPort); code != 28 {
		t.Errorf("curl in A to B's port %d exits %d, want 28 (timed out: filtered)", fwdOtherPort, code)
	}
	if code := f.toA.connectTimesOut(t, fwdPort); code != 28 {
		t.Errorf("curl in B to A's port %d exits %d, want 28 (timed out: filtered)", fwdPort, code)
	}
	// curl's SYNs (one, and the retransmissions of its 3 s) on top.
	st = f.app.waitStats("pf", func(m map[string]any) bool {
		return ruleCounter(m, lineBlock, "Packets") > float64(aSYNs) && ruleCounter(m, lineBToA, "Packets") > float64(bPings+bSYNs)
	})
	for _, c := range []struct {
		line int
		had  int
	}{{lineBlock, aSYNs}, {lineBToA, bPings + bSYNs}} {
		if got := ruleCounter(st, c.line, "Packets") - float64(c.had); got < 1 || got > 4 {
			t.Errorf("rule at line %d blocked %v more packets for one curl --connect-timeout 3, want 1 to 4 SYNs", c.line, got)
		}
	}
	rules := f.app.keepnetOK(t, "pf", "rules")
	if !strings.Contains(rules, fmt.Sprintf("%d rules;", fwdRuleCount)) {
		t.Errorf("keepnet pf rules printed %q, want %d rules", rules, fwdRuleCount)
	}
	t.Logf("keepnet pf rules:\n%s", rules)
}

// pfForwardTCP: A may open TCP connections to B, nothing else passes.
const pfForwardTCP = `set default block
pass in on e1000.0 proto tcp from 10.77.0.0/24 to 10.78.0.0/24
pass out on e1000.1 proto tcp from 10.77.0.0/24 to 10.78.0.0/24
`

// TestPFForwardKill: a forwarded download of 32 MB from B completes with
// the right hash across `keepnet kill pf`, and another across `keepnet
// kill e1000.1` with pf filtering. The rules pass a connection's SYN
// only: its later segments pass by its states alone, so the download
// survives pf's kill only if the new pf adopted them from kept memory
// (which its counters say) and ip held the segments that waited for a
// verdict meanwhile.
func TestPFForwardKill(t *testing.T) {
	requireITest(t, true)
	f := bootForward(t, pfForwardTCP)
	httpWarm(t, f.toB)
	const size = 32 << 20
	killDuringForward(t, f, "pf", size, 21)
	st := f.app.waitStats("pf", func(m map[string]any) bool { return num(m, "Adopted") >= 2 })
	if num(st, "Adopted") < 2 {
		t.Errorf("pf after its kill adopted %v states, want the download's two (in and out) at least", num(st, "Adopted"))
	}
	killDuringForward(t, f, "e1000.1", size, 22)
	httpWarm(t, f.toB) // new connections still pass
}

// pfForwardWeb is TestPFForwardLoad's boot rule set: A may reach B's web
// server on port 80 only. pfForwardOther, loaded during a download from
// there, closes port 80 to new connections and opens fwdOtherPort.
const (
	pfForwardWeb = `set default block
pass in on e1000.0 proto tcp from 10.77.0.0/24 to 10.78.0.1 port 80
pass out on e1000.1 proto tcp from 10.77.0.0/24 to 10.78.0.1 port 80
`
	pfForwardOther = `set default block
block in quick on e1000.0 proto tcp to any port 80
pass in on e1000.0 proto tcp from 10.77.0.0/24 to 10.78.0.1 port 8080
pass out on e1000.1 proto tcp from 10.77.0.0/24 to 10.78.0.1 port 8080
`
	// pfForwardBad is pfForwardOther with a port that belongs to no
	// address on its line 5.
	pfForwardBad    = pfForwardOther + "pass in on e1000.0 proto udp port 53\n"
	pfForwardBadErr = "line 5"
)

// TestPFForwardLoad: `keepnet pf load` of a new rule set during a
// forwarded download from B's port 80 (paced, so that it outlasts the
// checks) that closes port 80 and opens 8080: the download goes on by its
// states and completes with the right hash, while a new connection to
// port 80 times out (nmap: filtered) and one to 8080 works. Then a rule
// set with an error on line 5 is refused naming that line, by `keepnet
// pf load` and by the appliance itself, and the rules in force stay.
func TestPFForwardLoad(t *testing.T) {
	requireITest(t, true)
	f := bootForward(t, pfForwardWeb)
	httpWarm(t, f.toB)
	if code := f.toB.connectTimesOut(t, fwdOtherPort); code != 28 {
		t.Fatalf("curl in A to B's port %d before the load exits %d, want 28 (timed out: filtered)", fwdOtherPort, code)
	}

	const size, rate = 20_000_000, 400_000
	got, done := f.toB.download(t, size, 31, rate)
	for deadline := time.Now().Add(resumeWait); got.Load() < size/10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	before := f.app.stats("pf")
	f.app.keepnetOK(t, "pf", "load", writeRules(t, pfForwardOther))
	st := f.app.waitStats("pf", func(m map[string]any) bool { return num(m, "RulesStamp") > num(before, "RulesStamp") })
	if num(st, "RulesStamp") <= num(before, "RulesStamp") || num(st, "NumRules") != 3 {
		t.Fatalf("pf after keepnet pf load: rules %v (stamp %v, was %v), want the 3 new ones", num(st, "NumRules"), num(st, "RulesStamp"), num(before, "RulesStamp"))
	}
	loaded := got.Load()
	t.Logf("new rules in force at %s of the download", mb(loaded))

	if code := f.toB.connectTimesOut(t, fwdPort); code != 28 {
		t.Errorf("curl in A to B's port %d after the load exits %d, want 28 (timed out: filtered)", fwdPort, code)
	}
	if now := got.Load(); now >= size {
		t.Errorf("the download was over (%s at the load) before a new connection was tried: pace it slower", mb(loaded))
	}
	if s, _ := f.toB.nmap(t, fwdPort); s != "filtered" {
		t.Errorf("nmap in A of B's port %d after the load: %q, want filtered", fwdPort, s)
	}
	httpWarm(t, &netns{Name: f.a.Name, GuestIP: f.b.HostIP + ":" + strconv.Itoa(fwdOtherPort)})
	if r := <-done; r != "" {
		t.Errorf("download from B's port %d across a load that closes the port to new connections: %s", fwdPort, r)
	}

	// A bad rule set: refused by keepnet before it leaves the host, and by
	// the appliance if it gets there anyway.
	rulesBefore := ruleTexts(f.app.keepnetOK(t, "pf", "rules"))
	stampBefore := num(f.app.stats("pf"), "RulesStamp")
	if out, err := f.app.keepnet("pf", "load", writeRules(t, pfForwardBad)); err == nil || !strings.Contains(out, pfForwardBadErr) {
		t.Errorf("keepnet pf load of a rule set with an error on line 5: %v, %q; want refused, naming %s", err, out, pfForwardBadErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := ctl.Do(ctx, f.app.ctl, ctl.Request{Verb: ctl.VerbPFLoad, Rules: pfForwardBad})
	if err != nil || resp.OK || !strings.Contains(resp.Error, pfForwardBadErr) {
		t.Errorf("the appliance asked to load a rule set with an error on line 5: %+v, %v; want refused, naming %s", resp, err, pfForwardBadErr)
	}
	time.Sleep(time.Second) // pf looks for new rules at least every 200 ms
	if got := ruleTexts(f.app.keepnetOK(t, "pf", "rules")); got != rulesBefore {
		t.Errorf("rules after a refused load:\n%s\nwant those in force before:\n%s", got, rulesBefore)
	}
	if stamp := num(f.app.stats("pf"), "RulesStamp"); stamp != stampBefore {
		t.Errorf("rules stamp %v after a refused load, want %v (unchanged)", stamp, stampBefore)
	}
}

// TestPFStateLimit: a state table of 32 (keepnet.pfstates=32) filled by
// forwarded flows, two states each. A paced download from B holds 2; 15
// idle connections take the other 30. Then new connections are refused
// (their SYNs dropped: curl times out) and counted as such, the table
// stays at 32, and the download goes on to its last byte. Once the idle
// connections close, their states expire (2 s, by the rules) and a new
// connection passes again. pf's memory is bounded by construction: the
// table is kept memory of a fixed size (pf.KeptBytes(32), 64 KiB) and
// pf's own arrays of it are made once; its resident size does not grow.
func TestPFStateLimit(t *testing.T) {
	requireITest(t, true)
	const rules = `set default block
set timeout tcp.closing 2
set timeout tcp.finwait 2
set timeout tcp.closed 2
pass in on e1000.0 proto tcp from 10.77.0.0/24 to 10.78.0.0/24
pass out on e1000.1 proto tcp from 10.77.0.0/24 to 10.78.0.0/24
`
	const maxStates, lineIn = 32, 5
	f := bootForward(t, rules, "--append", "keepnet.pfstates="+strconv.Itoa(maxStates))
	pfc, _ := f.app.status().Component("pf")
	rss := pfc.RSSKiB

	// The long-lived flow: 12 MB at 160 kB/s, over a minute.
	const size, rate = 12_000_000, 160_000
	got, done := f.toB.download(t, size, 41, rate)
	for deadline := time.Now().Add(resumeWait); got.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	const idle = (maxStates - 2) / 2
	var once sync.Once
	closeIdle := idleConns(t, f.a, f.b.HostIP+":"+strconv.Itoa(fwdPort), idle)
	release := func() { once.Do(closeIdle) }
	t.Cleanup(release)
	st := f.app.waitStats("pf", func(m map[string]any) bool { return num(m, "NumStates") == maxStates })
	if n := num(st, "NumStates"); n != maxStates {
		t.Fatalf("pf holds %v states with a download and %d idle connections, want %d", n, idle, maxStates)
	}

	// More flows than the table holds: each times out.
	const excess = 4
	codes := make(chan int, excess)
	for range excess {
		go func() { codes <- f.toB.connectTimesOut(t, fwdPort) }()
	}
	for range excess {
		if code := <-codes; code != 28 {
			t.Errorf("curl in A to B with the state table full exits %d, want 28 (timed out: its SYN dropped)", code)
		}
	}
	st = f.app.waitStats("pf", func(m map[string]any) bool { return num(m, "StateLimit") >= excess })
	if n, refused, limit := num(st, "NumStates"), ruleCounter(st, lineIn, "Refused"), num(st, "StateLimit"); n != maxStates || refused < excess || limit != refused {
		t.Errorf("with the table full: %v states, rule at line %d refused %v, StateLimit %v; want %d, at least %d (a SYN per connection), as many",
			n, lineIn, refused, limit, maxStates, excess)
	}
	if out := f.app.keepnetOK(t, "pf", "states"); !strings.HasPrefix(out, fmt.Sprintf("%d states\n", maxStates)) {
		t.Errorf("keepnet pf states printed %q, want %d states first", tail(out, 3), maxStates)
	}
	// The established flow goes on.
	at := got.Load()
	for deadline := time.Now().Add(time.Minute); got.Load() < at+rate && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if now := got.Load(); now >= size {
		t.Errorf("the download was over before the table filled: pace it slower")
	} else if now < at+rate {
		t.Errorf("the download moved %d bytes in the minute after the refusals, want %d or more", now-at, rate)
	}
	pfc, _ = f.app.status().Component("pf")
	if pfc.RSSKiB > rss+4096 {
		t.Errorf("pf's resident memory grew from %d KiB to %d KiB with the table full, want at most 4 MiB more", rss, pfc.RSSKiB)
	}
	t.Logf("pf: %d KiB resident at boot, %d KiB with its table full", rss, pfc.RSSKiB)

	// Flows that end free their states.
	release()
	httpWarm(t, f.toB)
	if r := <-done; r != "" {
		t.Errorf("download held across a full state table: %s", r)
	}
}

// nmap has nmap in the namespace scan one TCP port of n.GuestIP as an
// outsider probes a firewall: a SYN scan without host discovery (-Pn) or
// DNS (-n), one retry; --send-ip so that the kernel resolves the next
// hop and every packet nmap counts is a SYN to the port. It returns the
// port's state (open, closed, filtered) and the SYNs nmap sent.
func (n *netns) nmap(t *testing.T, port int) (state string, syns int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.exec(ctx, nil, "nmap", "-Pn", "-n", "--send-ip", "-v", "--max-retries", "1", "-p", strconv.Itoa(port), n.GuestIP)
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^` + strconv.Itoa(port) + `/tcp\s+(\S+)`).FindSubmatch(out)
	s := regexp.MustCompile(`Raw packets sent: (\d+)`).FindSubmatch(out)
	if m == nil || s == nil {
		t.Fatalf("nmap printed no port state or packet count:\n%s", out)
	}
	syns, _ = strconv.Atoi(string(s[1]))
	return string(m[1]), syns
}

// ruleCounter is a counter (Packets, Bytes, States, Refused) of the rule
// at line, from pf's published statistics; -1 if there is no such rule.
func ruleCounter(st map[string]any, line int, name string) float64 {
	rules, _ := st["Rules"].([]any)
	for _, r := range rules {
		m, _ := r.(map[string]any)
		if num(m, "Line") == float64(line) {
			return num(m, name)
		}
	}
	return -1
}

// ruleTexts is the rules `keepnet pf rules` printed, without their
// counters.
func ruleTexts(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, " packets "); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if strings.HasPrefix(line, "@") || strings.HasPrefix(line, "set ") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
