package itest

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/servers/header"
)

// pf6Rules is the rule set TestPFIPv6 boots with: web in over both
// families, everything out with its replies, nothing else in. Neither
// Neighbor Discovery nor ICMPv6 echo is named.
const pf6Rules = `set default block
pass out all                      # line 2: what the appliance sends, with its replies
pass in proto tcp to port 80      # line 3: the web server, IPv4 and IPv6
`

// pf6Ping is pf6Rules with ping -6 let in.
const pf6Ping = pf6Rules + "pass in proto icmp6 icmp6-type echoreq   # line 4\n"

// TestPFIPv6 (issue 20, item 3): pf filters IPv6. Under a rule set that
// blocks by default and says nothing of ICMPv6, the appliance still takes
// its SLAAC address from dnsmasq's advertisements (pf passes ND and MLD
// on the link); curl -6 to port 80 works, hash right; a connection to
// port 22 over IPv6 does not (sshd listens there); ping -6 is blocked
// until a rule passes echo requests; `keepnet pf states` shows the IPv6
// flows; and a kill of pf during an IPv6 download is transparent (the
// new pf adopts the flow's state).
func TestPFIPv6(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	n.raServer(t)
	const mac = "52:54:00:12:34:56"
	hw := header.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	slaac := header.WithInterfaceID(netip.MustParsePrefix(ra6Prefix), header.InterfaceID(hw))
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--mac", mac, "--pf-rules", writeRules(t, pf6Rules))...)
	a.waitReady()

	configured := func(m map[string]any) bool { return hasAddr6(ipv6Addrs(m), slaac.String()+"/64") }
	if st := a.waitStats("ip", configured); !configured(st) {
		t.Fatalf("under set default block: ip's IPv6 addresses %q, want %v/64 preferred (RAIn %v, NSOut %v); pf: %v",
			ipv6Addrs(st), slaac, num(st, "RAIn"), num(st, "NSOut"), a.stats("pf"))
	}
	if st := a.waitStats("pf", func(m map[string]any) bool { return num(m, "NDPassed") > 0 }); num(st, "NDPassed") == 0 {
		t.Errorf("pf passed no ND: %v", st)
	}

	n6 := *n
	n6.GuestIP = "[" + slaac.String() + "]"
	httpWarm(t, n) // IPv4's port 80 passes too
	rate := httpDownload(t, &n6, 8<<20, 81, 0.1)
	t.Logf("curl -6 through pf: 8 MB at %.0f Mbit/s, hash right", rate)

	if code := n6.connectTimesOut(t, 22); code != 28 {
		t.Errorf("curl -6 --connect-timeout 3 to port 22 exits %d, want 28 (timed out: blocked by pf, sshd listens there)", code)
	}
	ping6 := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := n.exec(ctx, nil, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", slaac.String())
		return string(out), err
	}
	if out, err := ping6(); err == nil {
		t.Errorf("ping -6 with no echoreq rule: answered, want blocked\n%s", out)
	}

	// curl's source is the namespace's own SLAAC address in ra6Prefix.
	if out := a.keepnetOK(t, "pf", "states"); !strings.Contains(out, "tcp in [fd00:77::") || !strings.Contains(out, "-> ["+slaac.String()+"]:80") {
		t.Errorf("keepnet pf states printed\n%s\nwant the IPv6 web flow as tcp in [fd00:77::...]:port -> [%s]:80", out, slaac)
	} else {
		t.Logf("keepnet pf states:\n%s", out)
	}

	a.keepnetOK(t, "pf", "load", writeRules(t, pf6Ping))
	a.waitStats("pf", func(m map[string]any) bool { return num(m, "NumRules") == 3 })
	if out, err := ping6(); err != nil {
		t.Errorf("ping -6 with pass in proto icmp6 icmp6-type echoreq: %v\n%s", err, out)
	}

	// A kill of pf during a download over IPv6: the new pf adopts the
	// flow's state from kept memory.
	const size = 16 << 20
	before, _ := a.status().Component("pf")
	got, done := n6.download(t, size, 82)
	for deadline := time.Now().Add(resumeWait); got.Load() < size/8 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	at := got.Load()
	a.signal("pf", "KILL")
	a.waitComponent("pf", func(c ctl.Component) bool { return c.Generation > before.Generation && c.State == "running" })
	if r := <-done; r != "" {
		t.Errorf("download over IPv6 during a kill of pf at byte %d: %s", at, r)
	}
	if st := a.stats("pf"); num(st, "Adopted") == 0 {
		t.Errorf("the new pf adopted no states: %v", st)
	}
}
