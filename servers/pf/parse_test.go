package pf

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
)

// ruleDiff describes how got differs from want, line numbers aside; ""
// if it does not.
func ruleDiff(want, got []Rule) string {
	norm := func(rs []Rule) []Rule {
		out := make([]Rule, len(rs))
		for i, r := range rs {
			r.Line = 0
			r.From.prepare()
			r.To.prepare()
			out[i] = r
		}
		return out
	}
	w, g := norm(want), norm(got)
	if reflect.DeepEqual(w, g) {
		return ""
	}
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wr, gr string
		if i < len(w) {
			wr = fmt.Sprintf("%+v", w[i])
		}
		if i < len(g) {
			gr = fmt.Sprintf("%+v", g[i])
		}
		if wr != gr {
			fmt.Fprintf(&b, "rule %d:\n-%s\n+%s\n", i, wr, gr)
		}
	}
	return b.String()
}

func TestParseRules(t *testing.T) {
	text := `# a firewall in front of 10.0.0.0/24
set default block
set timeout tcp.established 3600   # an hour
block in quick on e1000.1 from 192.0.2.0/24
pass out proto tcp from 10.0.0.0/24 port 1024:65535 to any port 80
pass in proto udp to 10.0.0.2 port 53 no state
pass proto icmp icmp-type echoreq
block in proto icmp all icmp-type 5
pass
`
	rs, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Action: Block, Dir: In, Quick: true, Iface: "e1000.1", From: Host{Addr: netip.MustParsePrefix("192.0.2.0/24")}},
		{Action: Pass, Dir: Out, Proto: header.ProtocolTCP, KeepState: true,
			From: Host{Addr: netip.MustParsePrefix("10.0.0.0/24"), Ports: PortRange{1024, 65535}},
			To:   Host{Ports: PortRange{80, 80}}},
		{Action: Pass, Dir: In, Proto: header.ProtocolUDP,
			To: Host{Addr: netip.MustParsePrefix("10.0.0.2/32"), Ports: PortRange{53, 53}}},
		{Action: Pass, Proto: header.ProtocolICMP, ICMPType: uint8(header.ICMPv4Echo), HasICMPType: true, KeepState: true},
		{Action: Block, Dir: In, Proto: header.ProtocolICMP, ICMPType: 5, HasICMPType: true},
		{Action: Pass, KeepState: true},
	}
	if diff := ruleDiff(want, rs.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if rs.Default != Block {
		t.Errorf("default %v, want block", rs.Default)
	}
	if rs.Timeouts.TCPEstablished != time.Hour || rs.Timeouts.TCPFirst != DefaultTimeouts().TCPFirst {
		t.Errorf("timeouts %+v: want tcp.established 1h, the rest pf's", rs.Timeouts)
	}
	if got := []int{rs.Rules[0].Line, rs.Rules[5].Line}; got[0] != 4 || got[1] != 9 {
		t.Errorf("lines of first and last rule %v, want [4 9]", got)
	}
}

// TestFormatRoundTrips checks that a rule set's String parses back into
// the same rule set.
func TestFormatRoundTrips(t *testing.T) {
	texts := []string{
		"",
		"set default block\npass out all\n",
		"set timeout udp.first 5\nset timeout icmp.error 1\nblock in quick on e1000.0 proto 47 from 10.1.0.0/16 to 10.2.3.4\n",
		"pass in proto tcp from any port 1:1023 to 10.0.0.0/8 port 22 keep state\n",
		"pass out proto icmp icmp-type timex no state\npass proto icmp icmp-type 200\nblock proto udp from any port 7\n",
		"pass in inet6 proto tcp to port 80\npass in proto icmp6 icmp6-type neighbrsol no state\nblock from 2001:db8::/32 to fe80::1\n",
		"pass out inet all\npass proto icmp6 icmp6-type 200\npass on e1000.0 inet6 proto udp from any port 53 to 2001:db8::2 port 1024:65535\n",
	}
	for _, text := range texts {
		rs, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		formatted := rs.String()
		again, err := Parse(formatted)
		if err != nil {
			t.Fatalf("Parse(String()) of %q: %v\n%s", text, err, formatted)
		}
		diff := ruleDiff(rs.Rules, again.Rules)
		if rs.Default != again.Default || rs.Timeouts != again.Timeouts {
			diff += fmt.Sprintf("default %v timeouts %+v, then %v %+v", rs.Default, rs.Timeouts, again.Default, again.Timeouts)
		}
		if diff != "" {
			t.Errorf("%q formatted as\n%s\nparses differently (-first +again):\n%s", text, formatted, diff)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		text      string
		line, col int
		token     string
		msg       string // a part of the message
	}{
		{"pass\nallow in all\n", 2, 1, "allow", "expected pass, block or set"},
		{"pass in quik", 1, 9, "quik", "unexpected word"},
		{"pass proto tpc", 1, 12, "tpc", "expected tcp, udp, icmp"},
		{"block from 10.0.0.300", 1, 12, "10.0.0.300", "IPv4 address"},
		{"block from 10.0.0.1/24", 1, 12, "10.0.0.1/24", "did you mean 10.0.0.0/24"},
		{"pass proto tcp to any port 0", 1, 28, "0", "expected a port"},
		{"pass proto tcp to any port 90:80", 1, 28, "90:80", "expected a port"},
		{"pass to any port 80", 1, 13, "port", "needs proto tcp or proto udp"},
		{"pass proto tcp icmp-type echoreq", 1, 16, "icmp-type", "needs proto icmp"},
		{"pass proto icmp icmp-type ping", 1, 27, "ping", "expected echoreq"},
		{"pass inet6 from 10.0.0.1", 1, 17, "10.0.0.1", "inet in a rule that is inet6"},
		{"pass proto icmp6 from 10.0.0.1", 1, 23, "10.0.0.1", "inet in a rule that is inet6"},
		{"pass from 10.0.0.1 to 2001:db8::1", 1, 23, "2001:db8::1", "inet6 in a rule that is inet"},
		{"pass inet proto icmp6", 1, 17, "icmp6", "inet6 in a rule that is inet"},
		{"pass proto icmp icmp6-type echoreq", 1, 17, "icmp6-type", "icmp6-type proto icmp6"},
		{"pass proto icmp6 icmp-type echoreq", 1, 18, "icmp-type", "needs proto icmp"},
		{"pass proto icmp6 icmp6-type ping", 1, 29, "ping", "expected echoreq"},
		{"block from fe80::1%e1000.0", 1, 12, "fe80::1%e1000.0", "IPv6 address"},
		{"block from ::ffff:10.0.0.1", 1, 12, "::ffff:10.0.0.1", "IPv6 address"},
		{"block from 2001:db8::1/32", 1, 12, "2001:db8::1/32", "did you mean 2001:db8::/32"},
		{"pass to port 80", 1, 9, "port", "needs proto tcp or proto udp"},
		{"block in keep state", 1, 10, "keep", "a block rule creates no state"},
		{"pass keep", 1, 10, "", "expected state after keep"},
		{"set default allow", 1, 13, "allow", "expected pass or block"},
		{"set timeout tcp.forever 1", 1, 13, "tcp.forever", "unknown timeout"},
		{"set timeout tcp.first 0", 1, 23, "0", "number of seconds"},
		{"pass on", 1, 8, "", "interface name"},
		{"pass on proto tcp", 1, 9, "proto", "interface name"},
		{"\n\n  # comment\n\tpass out all extra # and a comment", 4, 15, "extra", "unexpected word"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.text)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v, want a *ParseError", tt.text, err)
			continue
		}
		if pe.Line != tt.line || pe.Col != tt.col || pe.Token != tt.token || !strings.Contains(pe.Msg, tt.msg) {
			t.Errorf("Parse(%q) = line %d col %d %q %q, want line %d col %d %q ...%s...",
				tt.text, pe.Line, pe.Col, pe.Token, pe.Msg, tt.line, tt.col, tt.token, tt.msg)
		}
		if !strings.HasPrefix(err.Error(), "line ") {
			t.Errorf("error %q does not start with its line", err)
		}
	}
}

// TestBadFileChangesNothing loads a good rule set, then a bad one: the
// bad one is refused and the good one stays in force.
func TestBadFileChangesNothing(t *testing.T) {
	w := newWire(t, 0, "set default block\npass in proto udp to any port 53\n")
	before := w.f.Rules()
	err := w.f.LoadText("set default pass\npass in proto udp to any port 53\npass in proto udp to any port 99999\n")
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 3 {
		t.Fatalf("LoadText of a bad file: %v, want a ParseError on line 3", err)
	}
	if w.f.Rules() != before {
		t.Fatal("a bad file replaced the rule set")
	}
	w.block(In, udp(outside, 1000, inside, 54, 10), ReasonDefault, "the default is still block")
	w.pass(In, udp(outside, 1000, inside, 53, 10), ReasonRule, "port 53 still passes")
}
