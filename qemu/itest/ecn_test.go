package itest

import (
	"context"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
)

// ECN (issue 19, servers/tcp ecn.go). The namespace's Linux asks for ECN
// (net.ipv4.tcp_ecn=1, per namespace; it covers IPv6 too) and downloads
// from the appliance's HTTP server through the relay, which marks 1% of
// the ECN-capable datagrams the guest sends CE (keepnet-relay -ce-out):
// keepnet's TCP must agree to ECN, send its data ECT(0) (the namespace's
// IpExtInECT0Pkts counts them), reduce its window on the ECEs Linux
// echoes and answer with CWR, and the transfers complete with hashes
// right, over IPv4 and IPv6. With keepnet.tcp.ecn=off nothing is
// negotiated and nothing goes ECT.
func TestTCPECN(t *testing.T) {
	requireITest(t, true)
	t.Run("on", func(t *testing.T) {
		n := newNetns(t)
		n.raServer(t)
		n.ecnSysctl(t)
		sock := filepath.Join(t.TempDir(), "n0.sock")
		rp := startRelay(t, n, sock, "-seed", "1", "-stats", "0", "-ce-out", "0.01")
		const mac = "52:54:00:12:34:56" // keepnet up's default
		args := append(n.upArgs(), "--stack", "keepnet", "--mac", mac)
		args[1] = "stream:" + sock // replace tap:IF
		a := boot(t, n.Name, args...)
		httpWarm(t, n)

		before := n.netstat(t)
		down := httpDownload(t, n, 20<<20, 71, 0.1)
		after := n.netstat(t)
		tcp := a.stats("tcp")
		t.Logf("IPv4: 20 MB down at %.0f Mbit/s, hash right; tcp: %s; namespace: ECT(0) in %d, CE in %d", down,
			fields(tcp, "ECNConnections", "ECNECEIn", "ECNReductions", "ECNCWROut", "ECNCEIn", "Retransmits"),
			after["IpExtInECT0Pkts"]-before["IpExtInECT0Pkts"], after["IpExtInCEPkts"]-before["IpExtInCEPkts"])
		if stat(tcp, "ECNConnections") < 1 {
			t.Errorf("ECNConnections %v: want at least 1 (Linux asked)", stat(tcp, "ECNConnections"))
		}
		if got := after["IpExtInECT0Pkts"] - before["IpExtInECT0Pkts"]; got < 10000 {
			t.Errorf("the namespace got %d ECT(0) datagrams for a 20 MB download, want most of its ~14,000 segments", got)
		}
		if stat(tcp, "ECNReductions") < 1 || stat(tcp, "ECNCWROut") < 1 {
			t.Errorf("ECNReductions %v, ECNCWROut %v: want both > 0 (the relay marked CE, Linux echoed ECE)",
				stat(tcp, "ECNReductions"), stat(tcp, "ECNCWROut"))
		}

		// IPv6: the same, at the SLAAC address.
		hw := header.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
		slaac := header.WithInterfaceID(netip.MustParsePrefix(ra6Prefix), header.InterfaceID(hw))
		configured := func(m map[string]any) bool { return hasAddr6(ipv6Addrs(m), slaac.String()+"/64") }
		if st := a.waitStats("ip", configured); !configured(st) {
			t.Fatalf("no SLAAC address %v: %q", slaac, ipv6Addrs(st))
		}
		n6 := *n
		n6.GuestIP = "[" + slaac.String() + "]"
		conns := stat(tcp, "ECNConnections")
		before = n.netstat(t)
		down = httpDownload(t, &n6, 10<<20, 72, 0.1)
		after = n.netstat(t)
		tcp = a.stats("tcp")
		t.Logf("IPv6: 10 MB down at %.0f Mbit/s, hash right; tcp: %s; namespace: ECT(0) in %d, CE in %d", down,
			fields(tcp, "ECNConnections", "ECNECEIn", "ECNReductions", "ECNCWROut"),
			after["Ip6InECT0Pkts"]-before["Ip6InECT0Pkts"], after["Ip6InCEPkts"]-before["Ip6InCEPkts"])
		if stat(tcp, "ECNConnections") <= conns {
			t.Errorf("ECNConnections %v after the IPv6 download, want more than %v", stat(tcp, "ECNConnections"), conns)
		}
		if got := after["Ip6InECT0Pkts"] - before["Ip6InECT0Pkts"]; got < 5000 {
			t.Errorf("the namespace got %d ECT(0) IPv6 datagrams for a 10 MB download, want most of its ~7,000 segments", got)
		}
		out, in := rp.relayLines()
		t.Logf("relay %s\nrelay %s", out, in)
		if counter(out, "marked") <= 0 {
			t.Errorf("relay marked %d datagrams CE, want > 0", counter(out, "marked"))
		}
	})
	t.Run("off", func(t *testing.T) {
		n := newNetns(t)
		n.ecnSysctl(t)
		a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--append", "keepnet.tcp.ecn=off")...)
		httpWarm(t, n)
		before := n.netstat(t)
		httpDownload(t, n, 2<<20, 73, 0.1)
		after := n.netstat(t)
		tcp := a.stats("tcp")
		if c, ect := stat(tcp, "ECNConnections"), after["IpExtInECT0Pkts"]-before["IpExtInECT0Pkts"]; c != 0 || ect != 0 {
			t.Errorf("keepnet.tcp.ecn=off: ECNConnections %v, ECT(0) datagrams %d; want none", c, ect)
		}
	})
}

// ecnSysctl has the namespace's Linux ask for ECN on its connections.
func (n *netns) ecnSysctl(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := n.exec(ctx, nil, "sysctl", "-w", "net.ipv4.tcp_ecn=1"); err != nil {
		t.Fatalf("sysctl: %v\n%s", err, out)
	}
}

// netstat reads the namespace's IP counters: /proc/net/netstat's (as
// "IpExtInECT0Pkts") and /proc/net/snmp6's ("Ip6InECT0Pkts").
func (n *netns) netstat(t *testing.T) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := map[string]int64{}
	out, err := n.exec(ctx, nil, "cat", "/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || len(names) == 0 {
			continue
		}
		prefix := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			v, _ := strconv.ParseInt(values[j], 10, 64)
			m[prefix+names[j]] = v
		}
	}
	if out, err = n.exec(ctx, nil, "cat", "/proc/net/snmp6"); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			m[f[0]] = v
		}
	}
	return m
}

// stat is a numeric counter of a stats record, wherever it is nested.
func stat(m map[string]any, name string) float64 {
	v, _ := findStat(m, name).(float64)
	return v
}
