package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// guestDial has the guest connect to addr (httpd's /dial, served with test
// hooks on) and returns how it went.
func guestDial(t *testing.T, n *netns, addr string) (ok bool, errText string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--max-time", "50", fmt.Sprintf("http://%s/dial?addr=%s", n.GuestIP, addr))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		MS    int64  `json:"ms"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("/dial answered %q: %v", out, err)
	}
	return r.OK, r.Error, time.Duration(r.MS) * time.Millisecond
}

// A connect to a port the namespace rejects with ICMP port unreachable
// (nftables "reject with icmp type port-unreachable", no RST) fails at once
// with "connection refused" (RFC 1122 §4.2.3.9), on keepnet as on Linux;
// without the ICMP error handling it would wait out six SYN
// retransmissions. A port rejected with host unreachable is a soft error
// to keepnet (RFC 1122): the attempt goes on (Linux gives up at once with
// EHOSTUNREACH); logged, not asserted.
func TestConnectRefusedByICMP(t *testing.T) {
	requireITest(t, true)
	for _, stack := range []string{"keepnet", "linux"} {
		t.Run(stack, func(t *testing.T) {
			n := newNetns(t)
			boot(t, n.Name, append(n.upArgs(), "--stack", stack, "--append", "keepnet.testhooks=1")...)
			httpWarm(t, n)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, rule := range []string{
				"add table ip icmperr",
				"add chain ip icmperr in { type filter hook input priority 0; }",
				"add rule ip icmperr in tcp dport 9999 reject with icmp type port-unreachable",
				"add rule ip icmperr in tcp dport 9998 reject with icmp type host-unreachable",
			} {
				if _, err := n.exec(ctx, nil, "nft", strings.Fields(rule)...); err != nil {
					t.Fatal(err)
				}
			}
			ok, errText, took := guestDial(t, n, n.HostIP+":9999")
			t.Logf("%s: connect to a port behind ICMP port unreachable: ok=%v %q in %v", stack, ok, errText, took)
			if ok || !strings.Contains(errText, "connection refused") || took > 5*time.Second {
				t.Errorf("connect: ok=%v, error %q after %v; want connection refused within 5 s", ok, errText, took)
			}
			ok, errText, took = guestDial(t, n, n.HostIP+":9998")
			t.Logf("%s: connect to a port behind ICMP host unreachable: ok=%v %q in %v", stack, ok, errText, took)
		})
	}
}
