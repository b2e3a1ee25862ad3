package pf

import (
	"testing"
	"time"

	"keepnet/servers/header"
)

// TestLastMatchWins: without quick the last matching rule decides, even
// after an earlier one matched; a quick rule decides at once.
func TestLastMatchWins(t *testing.T) {
	w := newWire(t, 0, `
block in all
pass in proto udp to any port 53 no state   # rule 1: later, so it wins over rule 0
block in proto udp from 192.0.2.0/24        # rule 2: later still, wins for that network
pass in quick proto udp from 192.0.2.7 to any port 53 no state   # rule 3: quick
block in all                                # rule 4: never reached by rule 3's packets
`)
	tests := []struct {
		what string
		pkt  []byte
		pass bool
		rule int
	}{
		{"port 53 from other: rules 0, 1, 4 match, 4 is last", udp(other, 9, inside, 53, 1), false, 4},
		{"port 53 from 192.0.2.7: quick rule 3", udp(outside, 9, inside, 53, 1), true, 3},
		{"port 54 from 192.0.2.7: rule 4", udp(outside, 9, inside, 54, 1), false, 4},
	}
	for _, tt := range tests {
		v := w.verdict(In, "e1000.0", tt.pkt)
		if v.Pass != tt.pass || v.Rule != tt.rule || v.Reason != ReasonRule {
			t.Errorf("%s: verdict %+v, want pass=%v by rule %d", tt.what, v, tt.pass, tt.rule)
		}
	}

	w = newWire(t, 0, "pass in all no state\nblock in proto udp\n")
	w.block(In, udp(other, 9, inside, 53, 1), ReasonRule, "last rule blocks udp")
	w.pass(In, echo(header.ICMPv4Echo, other, inside, 1, 1), ReasonRule, "first rule passes icmp")
	w.pass(Out, udp(inside, 53, other, 9, 1), ReasonDefault, "no rule for out: the default (pass)")
}

// TestMatchFields checks each field of a rule on its own.
func TestMatchFields(t *testing.T) {
	w := newWire(t, 0, `set default block
pass in on e1000.1 proto udp to any port 7 no state           # 0
pass out proto tcp from 10.0.0.0/8 to any port 8000:8080      # 1
pass in proto icmp icmp-type echoreq no state                 # 2
pass in proto 47 from 198.51.100.0/24 no state                # 3
`)
	tests := []struct {
		what  string
		dir   Dir
		iface string
		pkt   []byte
		pass  bool
	}{
		{"udp 7 on e1000.1", In, "e1000.1", udp(outside, 9, inside, 7, 1), true},
		{"udp 7 on e1000.0: wrong interface", In, "e1000.0", udp(outside, 9, inside, 7, 1), false},
		{"udp 7 going out: wrong direction", Out, "e1000.1", udp(outside, 9, inside, 7, 1), false},
		{"udp 8 on e1000.1: wrong port", In, "e1000.1", udp(outside, 9, inside, 8, 1), false},
		{"tcp SYN to 8000", Out, "e1000.0", seg{src: inside, dst: outside, sport: 4000, dport: 8000, flags: syn}.bytes(), true},
		{"tcp SYN to 8080", Out, "e1000.0", seg{src: inside, dst: outside, sport: 4001, dport: 8080, flags: syn}.bytes(), true},
		{"tcp SYN to 8081: past the range", Out, "e1000.0", seg{src: inside, dst: outside, sport: 4002, dport: 8081, flags: syn}.bytes(), false},
		{"tcp SYN from outside 10/8", Out, "e1000.0", seg{src: outside, dst: other, sport: 4003, dport: 8000, flags: syn}.bytes(), false},
		{"tcp ACK with no state: keep state rules match SYNs only", Out, "e1000.0", seg{src: inside, dst: outside, sport: 4004, dport: 8000, flags: ack}.bytes(), false},
		{"echo request", In, "e1000.0", echo(header.ICMPv4Echo, outside, inside, 1, 1), true},
		{"echo reply: wrong icmp-type", In, "e1000.0", echo(header.ICMPv4EchoReply, outside, inside, 1, 1), false},
		{"GRE from 198.51.100.0/24", In, "e1000.0", datagram(47, other, inside, make([]byte, 8)), true},
		{"GRE from elsewhere", In, "e1000.0", datagram(47, outside, inside, make([]byte, 8)), false},
	}
	for _, tt := range tests {
		if v := w.verdict(tt.dir, tt.iface, tt.pkt); v.Pass != tt.pass {
			t.Errorf("%s: verdict %+v, want pass=%v", tt.what, v, tt.pass)
		}
	}
}

// TestKeepState: a flow passed out with keep state has its replies pass
// in without a rule; unrelated inbound traffic does not pass; without
// state the reply is blocked.
func TestKeepState(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto udp\npass out proto tcp\npass out proto udp to any port 9 no state\n")
	w.pass(Out, udp(inside, 5000, outside, 53, 30), ReasonRule, "query")
	w.pass(In, udp(outside, 53, inside, 5000, 100), ReasonState, "answer")
	w.pass(Out, udp(inside, 5000, outside, 53, 30), ReasonState, "second query")
	w.block(In, udp(outside, 53, inside, 5001, 100), ReasonDefault, "answer to another port")
	w.block(In, udp(other, 53, inside, 5000, 100), ReasonDefault, "answer from another host")
	w.block(In, udp(outside, 54, inside, 5000, 100), ReasonDefault, "answer from another port")
	w.block(In, udp(inside, 5000, outside, 53, 30), ReasonDefault, "the query's packet coming in: the state is for out")

	w.pass(Out, udp(inside, 5002, outside, 9, 1), ReasonRule, "no state")
	w.block(In, udp(outside, 9, inside, 5002, 1), ReasonDefault, "its reply")

	c := w.conn(inside, 40000, outside, 80, Out)
	c.open()
	w.pass(Out, c.fromClient(ack, 100), ReasonState, "request")
	w.pass(In, c.fromServer(ack, 1400), ReasonState, "response")
	w.block(In, seg{src: outside, dst: inside, sport: 80, dport: 40001, flags: syn}.bytes(), ReasonDefault, "inbound SYN")
	w.block(In, seg{src: outside, dst: inside, sport: 81, dport: 40000, seq: c.sseq, ack: c.cseq, flags: ack}.bytes(), ReasonDefault, "segment from the server's other port")

	if got := w.f.NumStates(); got != 2 {
		t.Errorf("NumStates = %d, want 2 (the DNS flow and the connection)", got)
	}
}

// TestForwardedFlowHasTwoStates: a forwarded flow crosses the filter in
// on one interface and out on the other; each direction needs its own
// pass rule, as in pf, and then both directions of the flow pass.
func TestForwardedFlowHasTwoStates(t *testing.T) {
	w := newWire(t, 0, "set default block\npass in on e1000.0 proto tcp\npass out on e1000.1 proto tcp\n")
	c := w.conn(other, 33000, outside, 443, In)
	synPkt := c.fromClient(syn, 0)
	for _, step := range []struct {
		dir   Dir
		iface string
		pkt   []byte
	}{
		{In, "e1000.0", synPkt},
		{Out, "e1000.1", synPkt},
	} {
		if v := w.verdict(step.dir, step.iface, step.pkt); !v.Pass || v.Reason != ReasonRule {
			t.Fatalf("SYN %v on %s: %+v, want passed by a rule", step.dir, step.iface, v)
		}
	}
	synAck := c.fromServer(syn|ack, 0)
	if v := w.verdict(In, "e1000.1", synAck); !v.Pass || v.Reason != ReasonState {
		t.Errorf("SYN-ACK in on e1000.1: %+v, want passed by the out state", v)
	}
	if v := w.verdict(Out, "e1000.0", synAck); !v.Pass || v.Reason != ReasonState {
		t.Errorf("SYN-ACK out on e1000.0: %+v, want passed by the in state", v)
	}
	if w.f.NumStates() != 2 {
		t.Errorf("NumStates = %d, want 2", w.f.NumStates())
	}
}

// TestReloadKeepsStates: a new rule set that would block a flow's first
// packet leaves the flow's state, and so the flow, alone.
func TestReloadKeepsStates(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto tcp\n")
	c := w.conn(inside, 40000, outside, 22, Out)
	c.open()
	if err := w.f.LoadText("set default block\n"); err != nil {
		t.Fatal(err)
	}
	w.pass(Out, c.fromClient(ack, 10), ReasonState, "data after the reload")
	w.pass(In, c.fromServer(ack, 10), ReasonState, "reply after the reload")
	w.block(Out, w.conn(inside, 40001, outside, 22, Out).fromClient(syn, 0), ReasonDefault, "a new connection")
}

func TestCounters(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto udp\nblock out proto udp to any port 9\n")
	q := udp(inside, 5000, outside, 53, 30)
	w.pass(Out, q, ReasonRule, "query")
	w.pass(In, udp(outside, 53, inside, 5000, 70), ReasonState, "answer")
	w.block(Out, udp(inside, 5000, outside, 9, 2), ReasonRule, "discard")
	w.block(Out, udp(inside, 5000, outside, 9, 2), ReasonRule, "discard again")
	w.block(In, echo(header.ICMPv4Echo, outside, inside, 1, 1), ReasonDefault, "ping")
	w.block(In, []byte{0x45, 0}, ReasonMalformed, "runt")

	rs := w.f.Rules()
	want := []RuleCounters{
		{Packets: 1, Bytes: uint64(len(q)), States: 1},
		{Packets: 2, Bytes: 2 * 30},
	}
	for i, c := range want {
		if rs.Counters[i] != c {
			t.Errorf("rule %d counters %+v, want %+v", i, rs.Counters[i], c)
		}
	}
	if d := rs.DefaultCounters; d.Packets != 1 || d.Bytes != 44 {
		t.Errorf("default counters %+v, want 1 packet of 44 bytes", d)
	}
	c := w.f.Counters()
	if c.Packets != 6 || c.Passed != 2 || c.Blocked != 4 || c.Malformed != 1 || c.StateMatches != 1 || c.StatesCreated != 1 {
		t.Errorf("counters %+v, want 6 packets, 2 passed, 4 blocked, 1 malformed, 1 state match, 1 state", c)
	}
}

// TestTableExhaustion: with the table full, a new flow that needs a
// state is refused and counted; established flows go on; once states
// expire there is room again.
func TestTableExhaustion(t *testing.T) {
	w := newWire(t, 4, "set default block\npass out proto udp\npass out proto icmp no state\n")
	for port := uint16(1); port <= 4; port++ {
		w.pass(Out, udp(inside, port, outside, 53, 1), ReasonRule, "flow within the limit")
	}
	w.block(Out, udp(inside, 5, outside, 53, 1), ReasonStateLimit, "fifth flow")
	w.block(Out, udp(inside, 6, outside, 53, 1), ReasonStateLimit, "sixth flow")
	w.pass(Out, echo(header.ICMPv4Echo, inside, outside, 1, 1), ReasonRule, "a rule without state still passes")
	for port := uint16(1); port <= 4; port++ {
		w.pass(In, udp(outside, 53, inside, port, 1), ReasonState, "reply of an established flow")
	}
	if c := w.f.Counters(); c.StateLimit != 2 {
		t.Errorf("StateLimit = %d, want 2", c.StateLimit)
	}
	if c := w.f.Rules().Counters[0]; c.States != 4 || c.Refused != 2 {
		t.Errorf("rule 0 counters %+v, want 4 states, 2 refused", c)
	}
	w.advance(DefaultTimeouts().UDPMultiple)
	w.pass(Out, udp(inside, 5, outside, 53, 1), ReasonRule, "a new flow once the old ones expired")
	w.pass(Out, udp(inside, 6, outside, 53, 1), ReasonRule, "and another")
	w.f.Expire(w.now, 4)
	if n := w.f.NumStates(); n != 2 {
		t.Errorf("NumStates = %d, want 2", n)
	}
}

func TestUDPTimeouts(t *testing.T) {
	tm := DefaultTimeouts()
	w := newWire(t, 0, "set default block\npass out proto udp\n")
	q := udp(inside, 5000, outside, 53, 1)
	a := udp(outside, 53, inside, 5000, 1)

	w.pass(Out, q, ReasonRule, "first")
	w.advance(tm.UDPFirst - time.Second)
	w.pass(In, a, ReasonState, "answer within udp.first")
	w.advance(tm.UDPMultiple - time.Second)
	w.pass(In, a, ReasonState, "answer within udp.multiple")
	w.advance(tm.UDPMultiple)
	w.block(In, a, ReasonDefault, "answer after udp.multiple")

	// Single: the initiator sends twice, no answer; udp.single (30 s)
	// applies, shorter than udp.first (60 s).
	w.pass(Out, q, ReasonRule, "first again")
	w.pass(Out, q, ReasonState, "second")
	w.advance(tm.UDPSingle)
	w.block(In, a, ReasonDefault, "answer after udp.single")
	if c := w.f.Counters(); c.StatesExpired != 2 {
		t.Errorf("StatesExpired = %d, want 2", c.StatesExpired)
	}
}

// TestSetTimeout: a timeout set in the rules applies, to states that
// exist already too.
func TestSetTimeout(t *testing.T) {
	w := newWire(t, 0, "pass out proto udp\n")
	w.pass(Out, udp(inside, 5000, outside, 53, 1), ReasonRule, "first")
	if err := w.f.LoadText("set timeout udp.first 5\nset default block\n"); err != nil {
		t.Fatal(err)
	}
	w.advance(5 * time.Second)
	w.block(In, udp(outside, 53, inside, 5000, 1), ReasonDefault, "answer after the new udp.first")
}

// TestSweepExpires: the sweep frees expired states without their flows
// sending anything.
func TestSweepExpires(t *testing.T) {
	w := newWire(t, 32, "pass out proto udp\n")
	for port := uint16(1); port <= 20; port++ {
		w.pass(Out, udp(inside, port, outside, 53, 1), ReasonRule, "flow")
	}
	w.advance(time.Hour)
	w.f.Expire(w.now, 16)
	if n := w.f.NumStates(); n == 0 || n == 20 {
		t.Errorf("after a sweep of 16 of 32 slots NumStates = %d, want some but not all gone", n)
	}
	for range 16 {
		w.verdict(Out, "e1000.0", echo(header.ICMPv4Echo, inside, outside, 1, 1))
	}
	if n := w.f.NumStates(); n != 0 {
		t.Errorf("after 16 more verdicts (2 slots each) NumStates = %d, want 0", n)
	}
}

func TestICMPEcho(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto icmp icmp-type echoreq\n")
	w.pass(Out, echo(header.ICMPv4Echo, inside, outside, 77, 1), ReasonRule, "ping")
	w.pass(In, echo(header.ICMPv4EchoReply, outside, inside, 77, 1), ReasonState, "pong")
	w.pass(Out, echo(header.ICMPv4Echo, inside, outside, 77, 2), ReasonState, "second ping, same id")
	w.block(In, echo(header.ICMPv4EchoReply, outside, inside, 78, 1), ReasonDefault, "pong of another id")
	w.block(In, echo(header.ICMPv4Echo, outside, inside, 77, 1), ReasonDefault, "a ping the other way, same id")
	w.advance(DefaultTimeouts().ICMPFirst)
	w.block(In, echo(header.ICMPv4EchoReply, outside, inside, 77, 2), ReasonDefault, "pong after icmp.first")
}

// TestICMPErrors: an error quoting a tracked flow passes; one quoting
// anything else is left to the rules.
func TestICMPErrors(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto udp\npass out proto tcp\npass out proto icmp icmp-type echoreq\n")
	q := udp(inside, 5000, outside, 53, 1)
	w.pass(Out, q, ReasonRule, "query")
	w.pass(In, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, outside, inside, q), ReasonRelated, "port unreachable")
	w.pass(In, icmpError(header.ICMPv4TimeExceeded, 0, router, inside, q), ReasonRelated, "time exceeded from a router")

	untracked := udp(inside, 5001, outside, 53, 1)
	w.block(In, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, outside, inside, untracked), ReasonDefault, "error quoting an untracked flow")
	w.block(In, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, outside, other, q), ReasonDefault, "error addressed to another host")
	w.pass(Out, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, inside, outside, udp(outside, 53, inside, 5000, 1)), ReasonRelated,
		"error going out about an answer that came in")
	w.block(Out, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, inside, outside, udp(outside, 53, inside, 5001, 1)), ReasonDefault,
		"error going out about a datagram no state passed")

	c := w.conn(inside, 40000, outside, 80, Out)
	c.open()
	sent := c.fromClient(ack, 1000)
	w.pass(Out, sent, ReasonState, "data")
	w.pass(In, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, router, inside, sent), ReasonRelated, "fragmentation needed for the data")
	forged := seg{src: inside, dst: outside, sport: 40000, dport: 80, seq: c.cseq + 1<<30, flags: ack}.bytes()
	w.block(In, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, router, inside, forged), ReasonBadWindow, "error quoting a sequence number far out of window")

	ping := echo(header.ICMPv4Echo, inside, outside, 9, 1)
	w.pass(Out, ping, ReasonRule, "ping")
	w.pass(In, icmpError(header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, router, inside, ping), ReasonRelated, "host unreachable for the ping")
	w.advance(DefaultTimeouts().ICMPError)
	w.block(In, echo(header.ICMPv4EchoReply, outside, inside, 9, 1), ReasonDefault, "a late reply: icmp.error ended the state")

	if c := w.f.Counters(); c.ICMPErrors != 5 || c.BadWindow != 1 {
		t.Errorf("counters %+v, want 5 ICMP errors passed, 1 bad window", c)
	}
}

func TestMalformed(t *testing.T) {
	w := newWire(t, 0, "pass all no state\n")
	good := udp(outside, 1, inside, 2, 4)
	badVersion := append([]byte(nil), good...)
	badVersion[0] = 0x65
	badIHL := append([]byte(nil), good...)
	badIHL[0] = 0x44
	longTotal := append([]byte(nil), good...)
	header.IPv4(longTotal).SetTotalLength(uint16(len(good) + 1))
	shortTotal := append([]byte(nil), good...)
	header.IPv4(shortTotal).SetTotalLength(19)
	bigIHL := append([]byte(nil), good...)
	bigIHL[0] = 0x4f // 60 bytes of header, more than the datagram
	shortTCP := datagram(header.ProtocolTCP, outside, inside, make([]byte, 19))
	badOffset := seg{src: outside, dst: inside, sport: 1, dport: 2, flags: ack}.bytes()
	badOffset[header.IPv4MinimumSize+12] = 0xf0 // 60 bytes of TCP header in 20
	shortUDP := datagram(header.ProtocolUDP, outside, inside, make([]byte, 7))
	shortICMP := datagram(header.ProtocolICMP, outside, inside, make([]byte, 7))
	tinyFragment := datagram(header.ProtocolTCP, outside, inside, make([]byte, 8))
	header.IPv4(tinyFragment).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)

	for what, b := range map[string][]byte{
		"empty": nil, "19 bytes": good[:19], "version 6": badVersion, "IHL 4": badIHL,
		"total length past the end": longTotal, "total length below the header": shortTotal,
		"IHL past the end": bigIHL, "TCP header cut": shortTCP, "TCP data offset past the end": badOffset,
		"UDP header cut": shortUDP, "ICMP header cut": shortICMP, "first fragment too short for TCP": tinyFragment,
	} {
		w.block(In, b, ReasonMalformed, what)
	}
	w.pass(In, good, ReasonRule, "the good datagram")
	w.pass(In, append(good, 0, 0, 0), ReasonRule, "the good datagram with Ethernet padding")
}

func TestFragments(t *testing.T) {
	w := newWire(t, 0, "set default block\npass in proto udp to any port 53 no state\n")
	payload := make([]byte, 48)
	header.UDP(payload).Encode(&header.UDPFields{SrcPort: 1000, DstPort: 53, Length: 48})
	frag := func(id uint16, off int, more bool, b []byte) []byte {
		d := datagram(header.ProtocolUDP, outside, inside, b)
		header.IPv4(d).SetID(id)
		flags := uint16(0)
		if more {
			flags = header.IPv4FlagMoreFragments
		}
		header.IPv4(d).SetFlagsFragmentOffset(flags, off)
		return d
	}
	w.pass(In, frag(1, 0, true, payload[:24]), ReasonRule, "first fragment to port 53")
	w.pass(In, frag(1, 24, false, payload[24:]), ReasonFragment, "its second fragment")
	w.block(In, frag(2, 24, false, payload[24:]), ReasonFragment, "a later fragment whose first never passed")

	header.UDP(payload).SetDstPort(54)
	w.block(In, frag(3, 0, true, payload[:24]), ReasonDefault, "first fragment to port 54")
	w.block(In, frag(3, 24, false, payload[24:]), ReasonFragment, "its second fragment")
	w.advance(fragmentTimeout)
	w.block(In, frag(1, 24, false, payload[24:]), ReasonFragment, "a fragment of datagram 1 after the timeout")
	if c := w.f.Counters(); c.FragmentsPassed != 1 || c.FragmentsLost != 3 {
		t.Errorf("counters %+v, want 1 fragment passed, 3 lost", c)
	}
}

func TestStates(t *testing.T) {
	w := newWire(t, 0, "set default block\npass out proto udp\npass in proto tcp\n")
	w.pass(Out, udp(inside, 5000, outside, 53, 30), ReasonRule, "query")
	w.pass(In, udp(outside, 53, inside, 5000, 70), ReasonState, "answer")
	c := w.conn(other, 40000, inside, 22, In)
	c.open()
	w.advance(time.Second)
	got := w.f.States(w.now, -1)
	if len(got) != 2 {
		t.Fatalf("States = %v, want 2", got)
	}
	want := []string{
		"udp out 10.0.0.2:5000 -> 192.0.2.7:53 SINGLE:SINGLE pkts 1:1 bytes 58:98 rule 0",
		"tcp in 198.51.100.9:40000 -> 10.0.0.2:22 ESTABLISHED:ESTABLISHED pkts 2:1 bytes 80:40 rule 1",
	}
	for i, s := range got {
		if s.String() != want[i] {
			t.Errorf("state %d: %q, want %q", i, s, want[i])
		}
	}
	if exp := got[0].Expires.Sub(w.now); exp != DefaultTimeouts().UDPMultiple-time.Second {
		t.Errorf("UDP state expires in %v, want udp.multiple less the second gone", exp)
	}
}

// TestPortsOnlyForTCPAndUDP: a rule built with ports but no protocol (the
// parser refuses to) does not take an ICMP echo identifier for a port.
func TestPortsOnlyForTCPAndUDP(t *testing.T) {
	w := newWire(t, 0, "")
	w.f.Load(NewRuleset(Block, Timeouts{}, Rule{Action: Pass, To: Host{Ports: PortRange{7, 7}}}))
	w.block(In, echo(header.ICMPv4Echo, outside, inside, 7, 1), ReasonDefault, "echo with identifier 7")
	w.pass(In, udp(outside, 1, inside, 7, 1), ReasonRule, "udp to port 7")
}
