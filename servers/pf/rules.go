package pf

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"keepnet/servers/header"
)

// Dir is the direction a packet crosses an interface: In (received) or Out
// (to be sent). A rule with no direction matches both (dirAny).
type Dir uint8

const (
	dirAny Dir = 0
	In     Dir = 1
	Out    Dir = 2
)

func (d Dir) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	case dirAny:
		return "any"
	}
	return "Dir(" + strconv.Itoa(int(d)) + ")"
}

// reverse is the direction of the replies to a packet that went d.
func (d Dir) reverse() Dir { return d ^ (In | Out) }

// Action is what a rule does with the packets it decides.
type Action uint8

const (
	Block Action = iota
	Pass
)

func (a Action) String() string {
	if a == Pass {
		return "pass"
	}
	return "block"
}

// PortRange is an inclusive range of ports; the zero value matches any
// port (and any packet without ports).
type PortRange struct{ Lo, Hi uint16 }

func (p PortRange) any() bool { return p == PortRange{} }

func (p PortRange) match(port uint16) bool { return p.any() || p.Lo <= port && port <= p.Hi }

func (p PortRange) String() string {
	if p.Lo == p.Hi {
		return strconv.Itoa(int(p.Lo))
	}
	return strconv.Itoa(int(p.Lo)) + ":" + strconv.Itoa(int(p.Hi))
}

// Host is one side of a rule: an address prefix (the zero Prefix is "any")
// and a port range (tcp and udp rules only).
type Host struct {
	Addr  netip.Prefix
	Ports PortRange

	// net and mask are Addr as integers, for matching without netip.
	net, mask uint32
}

func (h Host) any() bool { return !h.Addr.IsValid() && h.Ports.any() }

// prepare computes net and mask from Addr.
func (h *Host) prepare() {
	if !h.Addr.IsValid() {
		h.net, h.mask = 0, 0
		return
	}
	a := h.Addr.Masked().Addr().As4()
	h.net = be32(a)
	h.mask = ^uint32(0) << (32 - h.Addr.Bits())
	if h.Addr.Bits() == 0 {
		h.mask = 0
	}
}

func (h *Host) match(addr uint32, port uint16) bool {
	return addr&h.mask == h.net && h.Ports.match(port)
}

func (h Host) String() string {
	s := "any"
	if h.Addr.IsValid() {
		s = h.Addr.String()
		if h.Addr.IsSingleIP() {
			s = h.Addr.Addr().String()
		}
	}
	if !h.Ports.any() {
		s += " port " + h.Ports.String()
	}
	return s
}

// Rule is one line of a rule set. The zero values of its match fields
// match everything.
type Rule struct {
	Action Action
	Dir    Dir    // dirAny: both directions
	Quick  bool   // the rule decides at once when it matches
	Iface  string // "": any interface
	Proto  uint8  // 0: any protocol
	From   Host
	To     Host
	// ICMPType is the ICMP type to match, when HasICMPType.
	ICMPType    header.ICMPv4Type
	HasICMPType bool
	// KeepState: a pass rule creates a state for the flow it passes, so
	// the flow's replies pass without a rule. The default for pass rules.
	KeepState bool

	// Line is where the rule was in the text it was parsed from.
	Line int
}

// RuleCounters are what a rule has decided since its rule set was loaded.
type RuleCounters struct {
	Packets uint64 // packets the rule decided
	Bytes   uint64 // their IP lengths
	States  uint64 // states it created
	Refused uint64 // states it could not create: the table was full
}

// Ruleset is a parsed rule set: the rules in order, the default action for
// packets no rule matches, and the state timeouts. Its counters belong to
// it: loading a new rule set starts them from zero.
type Ruleset struct {
	Rules    []Rule
	Default  Action
	Timeouts Timeouts

	// Counters[i] are Rules[i]'s; DefaultCounters the default's.
	Counters        []RuleCounters
	DefaultCounters RuleCounters
}

// NewRuleset returns a rule set of rules with default action def and
// timeouts tm (DefaultTimeouts if zero), ready to load.
func NewRuleset(def Action, tm Timeouts, rules ...Rule) *Ruleset {
	if tm == (Timeouts{}) {
		tm = DefaultTimeouts()
	}
	rs := &Ruleset{Rules: rules, Default: def, Timeouts: tm, Counters: make([]RuleCounters, len(rules))}
	for i := range rs.Rules {
		rs.Rules[i].From.prepare()
		rs.Rules[i].To.prepare()
	}
	return rs
}

var protoNames = map[uint8]string{header.ProtocolTCP: "tcp", header.ProtocolUDP: "udp", header.ProtocolICMP: "icmp"}

var icmpTypeNames = map[header.ICMPv4Type]string{
	header.ICMPv4Echo:           "echoreq",
	header.ICMPv4EchoReply:      "echorep",
	header.ICMPv4DstUnreachable: "unreach",
	header.ICMPv4TimeExceeded:   "timex",
}

// String formats the rule as the parser reads it.
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	if r.Dir != dirAny {
		b.WriteString(" " + r.Dir.String())
	}
	if r.Quick {
		b.WriteString(" quick")
	}
	if r.Iface != "" {
		b.WriteString(" on " + r.Iface)
	}
	if r.Proto != 0 {
		name, ok := protoNames[r.Proto]
		if !ok {
			name = strconv.Itoa(int(r.Proto))
		}
		b.WriteString(" proto " + name)
	}
	if r.From.any() && r.To.any() {
		b.WriteString(" all")
	} else {
		fmt.Fprintf(&b, " from %v to %v", r.From, r.To)
	}
	if r.HasICMPType {
		name, ok := icmpTypeNames[r.ICMPType]
		if !ok {
			name = strconv.Itoa(int(r.ICMPType))
		}
		b.WriteString(" icmp-type " + name)
	}
	if r.Action == Pass {
		if r.KeepState {
			b.WriteString(" keep state")
		} else {
			b.WriteString(" no state")
		}
	}
	return b.String()
}

// String formats the rule set as the parser reads it: Parse(rs.String())
// gives the same rules back.
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "set default %v\n", rs.Default)
	rs.Timeouts.format(&b)
	for i := range rs.Rules {
		b.WriteString(rs.Rules[i].String())
		b.WriteByte('\n')
	}
	return b.String()
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}
