package pf

import (
	"testing"

	"keepnet/servers/header"
)

// FuzzParse: Parse never panics, and what it accepts formats into text
// that parses into the same rule set.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"set default block\npass out proto tcp from 10.0.0.0/8 port 1:1023 to any port 80 keep state\n",
		"block in quick on e1000.1 proto icmp all icmp-type 3 # x\n",
		"set timeout tcp.first 5\npass in proto 47 from 1.2.3.4 to any no state",
		"pass in inet6 proto tcp to port 80\nblock quick from 2001:db8::/32 to fe80::1\npass proto icmp6 icmp6-type toobig no state\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := Parse(text)
		if err != nil {
			return
		}
		again, err := Parse(rs.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q, which does not parse: %v", text, rs.String(), err)
		}
		if diff := ruleDiff(rs.Rules, again.Rules); diff != "" || rs.Default != again.Default || rs.Timeouts != again.Timeouts {
			t.Fatalf("%q round-trips differently:\n%s", text, diff)
		}
	})
}

// FuzzVerdict: any bytes, either way, never panic the Filter, and it
// stays consistent (every live state indexed, the index no larger than
// the table).
func FuzzVerdict(f *testing.F) {
	f.Add(seg{src: inside, dst: outside, sport: 1, dport: 2, flags: syn}.bytes(), false)
	f.Add(udp(outside, 53, inside, 5000, 4), true)
	q := udp(inside, 5000, outside, 53, 1)
	f.Add(icmpError(header.ICMPv4DstUnreachable, 3, outside, inside, q), true)
	f.Add(echo(header.ICMPv4Echo, inside, outside, 1, 1), false)
	w := newWire(&testing.T{}, 8, "pass out all\npass in proto udp\n")
	f.Fuzz(func(t *testing.T, b []byte, in bool) {
		dir := Out
		if in {
			dir = In
		}
		w.f.Verdict(dir, "e1000.0", b, w.now)
		w.advance(1e9)
		live := 0
		for i := range w.f.live {
			if w.f.live[i] {
				live++
				if j, ok := w.f.index[w.f.states[i].key]; !ok || int(j) != i {
					t.Fatalf("live state %d not indexed", i)
				}
			}
		}
		if live != len(w.f.index) || live+len(w.f.free) != len(w.f.states) {
			t.Fatalf("%d live, %d indexed, %d free of %d", live, len(w.f.index), len(w.f.free), len(w.f.states))
		}
	})
}
