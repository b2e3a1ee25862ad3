package itest

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dhcpServer runs dnsmasq as the namespace's DHCP server (no DNS), leasing
// 10.77.0.50–59 for two minutes (dnsmasq's shortest) with T1 and T2 at 20
// and 40 s, the router and DNS server 10.77.0.1. It returns the lease
// file and a function that stops the server.
func (n *netns) dhcpServer(t testing.TB) (leases string, stop func()) {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq not installed (make deps installs dnsmasq-base)")
	}
	leases = filepath.Join(t.TempDir(), "dnsmasq.leases")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--port=0", "--interface="+n.Tap, "--bind-interfaces", "--dhcp-range=10.77.0.50,10.77.0.59,255.255.255.0,2m",
		"--dhcp-option=option:router,"+n.HostIP, "--dhcp-option=option:dns-server,"+n.HostIP,
		"--dhcp-option=option:T1,20", "--dhcp-option=option:T2,40",
		"--dhcp-leasefile="+leases, "--dhcp-authoritative", "--pid-file=", "--user=root", "--log-facility=-", "--log-dhcp")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once bool
	stop = func() {
		if !once {
			once = true
			cancel()
			cmd.Wait()
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", tail(out.String(), 60))
		}
	})
	return leases, stop
}

// dnsmasqLease is the lease file's entry for mac: its address and when it
// expires.
func dnsmasqLease(t testing.TB, file, mac string) (netip.Addr, time.Time, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return netip.Addr{}, time.Time{}, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		// EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID
		f := strings.Fields(l)
		if len(f) >= 3 && strings.EqualFold(f[1], mac) {
			exp, _ := strconv.ParseInt(f[0], 10, 64)
			a, err := netip.ParseAddr(f[2])
			return a, time.Unix(exp, 0), err == nil
		}
	}
	return netip.Addr{}, time.Time{}, false
}

// dhcpState is ip's client state and lease from `keepnet stats ip`.
func dhcpState(m map[string]any) (state, lease string) {
	d, _ := m["DHCP"].(map[string]any)
	state, _ = d["State"].(string)
	lease, _ = d["Lease"].(string)
	return state, lease
}

// The appliance takes its address from dnsmasq (keepnet.ip=dhcp): it is
// ready only with it, serves at it, keeps it across a kill of ip (the
// next generation answers at once, from the lease in the store, without
// asking the server again), and renews it at T1 (dnsmasq's lease file
// moves on). What the client does when no server answers until the
// lease ends is servers/ip/dhcp's TestClientLosesAnExpiredLease.
func TestDHCP(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	leases, _ := n.dhcpServer(t)
	const mac = "52:54:00:12:34:56" // keepnet up's default
	a := boot(t, n.Name, "--net", "tap:"+n.Tap, "--ip", "dhcp", "--dns", n.HostIP, "--mac", mac)

	st := a.waitStats("ip", func(m map[string]any) bool { s, _ := dhcpState(m); return s == "bound" })
	state, lease := dhcpState(st)
	got, err := netip.ParsePrefix(lease)
	if state != "bound" || err != nil || got.Bits() != 24 || !netip.MustParsePrefix("10.77.0.48/28").Contains(got.Addr()) {
		t.Fatalf("ip's DHCP client: state %q, lease %q; want bound to an address of dnsmasq's range, /24", state, lease)
	}
	addr, exp1, ok := dnsmasqLease(t, leases, mac)
	if !ok || addr != got.Addr() {
		t.Fatalf("dnsmasq's lease for %s: %v (found %v); ip says %v", mac, addr, ok, got)
	}
	t.Logf("leased %v, dnsmasq's lease ends %v", got, exp1.Format(time.TimeOnly))
	n.GuestIP = got.Addr().String()
	httpDownload(t, n, 20<<20, 7, 0.5)
	if out, err := n.exec(context.Background(), nil, "ping", "-c", "3", "-W", "5", n.GuestIP); err != nil {
		t.Fatalf("ping %s: %v\n%s", n.GuestIP, err, out)
	}

	// A new ip takes up the kept lease: same address, nothing sent.
	gen := num(a.stats("ip"), "Generation")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := keepnet(ctx, "", "kill", "ip", "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill ip: %v\n%s", err, out)
	}
	st = a.waitStats("ip", func(m map[string]any) bool { return num(m, "Generation") > gen && m["DHCP"] != nil })
	if s, l := dhcpState(st); s != "bound" || l != lease {
		t.Fatalf("after a kill of ip: state %q, lease %q; want bound, %q kept", s, l, lease)
	}
	if d, _ := st["DHCP"].(map[string]any); num(d, "Sent") != 0 {
		t.Errorf("the new ip sent %v DHCP messages; the kept lease needs none before T1", num(d, "Sent"))
	}
	httpDownload(t, n, 1<<20, 8, 0.1)

	// T1 (20 s after the ACK): a unicast REQUEST, dnsmasq's lease moves on.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, exp, ok := dnsmasqLease(t, leases, mac); ok && exp.After(exp1) {
			t.Logf("renewed: dnsmasq's lease now ends %v", exp.Format(time.TimeOnly))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal in dnsmasq's lease file 90 s after the lease (T1 is 20 s); ip: %v", a.stats("ip")["DHCP"])
		}
		time.Sleep(time.Second)
	}
	if s, l := dhcpState(a.waitStats("ip", func(m map[string]any) bool { s, _ := dhcpState(m); return s == "bound" })); s != "bound" || l != lease {
		t.Fatalf("after the renewal: state %q, lease %q; want bound, %q", s, l, lease)
	}
	httpDownload(t, n, 1<<20, 9, 0.1)
}

// The Linux baseline takes its address from the same server (u-root's
// client, once: it does not renew) and serves at it.
func TestDHCPLinuxBaseline(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	leases, _ := n.dhcpServer(t)
	const mac = "52:54:00:12:34:57"
	boot(t, n.Name, "--net", "tap:"+n.Tap, "--ip", "dhcp", "--dns", n.HostIP, "--mac", mac, "--stack", "linux")
	addr, _, ok := dnsmasqLease(t, leases, mac)
	if !ok {
		t.Fatalf("dnsmasq leased nothing to %s", mac)
	}
	n.GuestIP = addr.String()
	httpDownload(t, n, 20<<20, 7, 0.5)
}
