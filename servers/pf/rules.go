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

// Family is the address family a rule applies to, pf.conf's inet and
// inet6; the zero value is both.
type Family uint8

const (
	FamilyAny Family = 0
	Inet      Family = 4
	Inet6     Family = 6
)

func (f Family) String() string {
	switch f {
	case Inet:
		return "inet"
	case Inet6:
		return "inet6"
	case FamilyAny:
		return "any"
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// familyOf is the family of a datagram (v6) or of an address.
func familyOf(v6 bool) Family {
	if v6 {
		return Inet6
	}
	return Inet
}

// Host is one side of a rule: an address prefix (the zero Prefix is "any")
// and a port range (tcp and udp rules only). An IPv4 prefix matches only
// IPv4 datagrams, an IPv6 one only IPv6 datagrams.
type Host struct {
	Addr  netip.Prefix
	Ports PortRange

	// family, net and mask are Addr as prepare computed them, for
	// matching without netip; family is FamilyAny for any address.
	family    Family
	net, mask addr
}

func (h Host) any() bool { return !h.Addr.IsValid() && h.Ports.any() }

// prepare computes family, net and mask from Addr.
func (h *Host) prepare() {
	h.family, h.net, h.mask = FamilyAny, addr{}, addr{}
	if !h.Addr.IsValid() {
		return
	}
	bits := h.Addr.Bits()
	h.family = familyOf(!h.Addr.Addr().Is4())
	if h.family == Inet {
		bits += 96 // the mapped form's prefix
	}
	h.mask = prefixMask(bits)
	h.net = addrFrom(h.Addr.Addr()).and(h.mask)
}

func (h *Host) match(a addr, v6 bool, port uint16) bool {
	return (h.family == FamilyAny || h.family == familyOf(v6)) && a.and(h.mask) == h.net && h.Ports.match(port)
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
	Family Family // FamilyAny: both, unless an address or proto says
	Proto  uint8  // 0: any protocol
	From   Host
	To     Host
	// ICMPType is the ICMP type (proto icmp) or ICMPv6 type (proto
	// icmp6) to match, when HasICMPType.
	ICMPType    uint8
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

var protoNames = map[uint8]string{
	header.ProtocolTCP: "tcp", header.ProtocolUDP: "udp", header.ProtocolICMP: "icmp", header.ProtocolICMPv6: "icmp6",
}

// icmpTypeNames are pf.conf's names of ICMP types (icmp-type) and
// icmp6TypeNames of ICMPv6 types (icmp6-type).
var icmpTypeNames = map[uint8]string{
	uint8(header.ICMPv4Echo):           "echoreq",
	uint8(header.ICMPv4EchoReply):      "echorep",
	uint8(header.ICMPv4DstUnreachable): "unreach",
	uint8(header.ICMPv4TimeExceeded):   "timex",
}

var icmp6TypeNames = map[uint8]string{
	uint8(header.ICMPv6EchoRequest):    "echoreq",
	uint8(header.ICMPv6EchoReply):      "echorep",
	uint8(header.ICMPv6DstUnreachable): "unreach",
	uint8(header.ICMPv6PacketTooBig):   "toobig",
	uint8(header.ICMPv6TimeExceeded):   "timex",
	uint8(header.ICMPv6ParamProblem):   "paramprob",
	uint8(header.ICMPv6RouterSolicit):  "routersol",
	uint8(header.ICMPv6RouterAdvert):   "routeradv",
	uint8(header.ICMPv6NeighborSolic):  "neighbrsol",
	uint8(header.ICMPv6NeighborAdvert): "neighbradv",
}

// icmpTypeWord is the rule word for proto's types and their names.
func icmpTypeWord(proto uint8) (string, map[uint8]string) {
	if proto == header.ProtocolICMPv6 {
		return "icmp6-type", icmp6TypeNames
	}
	return "icmp-type", icmpTypeNames
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
	if r.Family != FamilyAny {
		b.WriteString(" " + r.Family.String())
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
		word, names := icmpTypeWord(r.Proto)
		name, ok := names[r.ICMPType]
		if !ok {
			name = strconv.Itoa(int(r.ICMPType))
		}
		b.WriteString(" " + word + " " + name)
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
