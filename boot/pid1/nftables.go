package pid1

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"keepnet/servers/header"
	"keepnet/servers/pf"
)

// # The Linux baseline's packet filter
//
// With keepnet.stack=linux and keepnet.pfrules, the kernel's nf_tables
// filters instead of keepnet's pf, with the same rule set (parsed by
// servers/pf's own parser), so that the baseline does the same job. The
// translation keeps pf's semantics (servers/pf's package doc):
//
//   - pf judges a packet in on the interface it arrives by and out on the
//     one it leaves by: table inet keepnet has a chain "in" at the
//     prerouting hook and a chain "out" at postrouting, both at priority
//     filter (0), after conntrack (-200) has found the packet's flow. A
//     forwarded packet crosses both, a local one one of them, as in pf.
//     Loopback is not filtered (pf never sees it).
//   - The last matching rule decides, unless a matching rule is quick:
//     nftables takes the first matching rule, so each chain holds the
//     quick rules of its direction in order, then the others in reverse
//     order. The first match there is pf's verdict: the first matching
//     quick rule, else the last matching rule. A rule without in or out
//     goes into both chains. The chain's policy is the default action.
//   - pass keeps state unless it says "no state", and a state belongs to
//     a direction: the state a rule makes for a packet going in passes
//     the flow's later packets going in the same way and its replies
//     going out (servers/pf's flowKey); a forwarded flow has one made in
//     and one made out. Conntrack has one entry per flow, whatever the
//     rules; what pf's states were is kept in its mark, one bit for each
//     of the two states a flow can have: stateOriginalIn for the one that
//     passes packets of conntrack's original direction going in (and so
//     replies going out), stateOriginalOut for the other. A pass rule
//     that keeps state sets the bit its packet stands for; each chain
//     first accepts a packet whose flow has the bit of its direction and
//     of the chain's. So a "no state" rule makes no state, and a flow
//     passed in but not out is still judged out by the rules, as in pf.
//   - Like pf, a pass rule that keeps state matches TCP only when the
//     segment opens a connection (SYN without ACK, RST or FIN), and makes
//     a state for ICMP only for echo requests: other ICMP it passes
//     without one.
//
// Where nf_tables cannot be pf: a packet that would make a state but
// that conntrack refuses to track (its state "invalid": a UDP datagram
// with a bad checksum, say, which keepnet's ip drops anyway) has no flow
// to mark, so the rule does not match it; pf would pass it and track it.
// The TCP window checks of an established flow are conntrack's, not pf's
// (tcptrack.go). Counters are nf_tables' own, per nftables rule (`nft
// list ruleset` shows them, and each rule's comment names its pf line);
// `keepnet pf load` is refused: the rules are fixed at boot. The
// translation is IPv4's: rules only IPv6 datagrams match (inet6, proto
// icmp6, IPv6 addresses) are left out, and IPv6 meets the chains'
// policy, where keepnet's pf judges it by the rules.

// nftTable is the name of the inet table the rules go into.
const nftTable = "keepnet"

// The bits of a flow's conntrack mark that stand for pf's states.
const (
	stateOriginalIn  uint32 = 1 << 0 // made in by conntrack's original direction (or out by its reply)
	stateOriginalOut uint32 = 1 << 1 // made out by the original direction (or in by the reply)
)

// Conntrack's directions, as `ct direction` loads them.
const (
	ctOriginal byte = 0
	ctReply    byte = 1
)

// stateBit is the mark bit of the state that a packet crossing dir in
// conntrack direction ctDir makes, or passes by.
func stateBit(dir pf.Dir, ctDir byte) uint32 {
	if (dir == pf.In) == (ctDir == ctOriginal) {
		return stateOriginalIn
	}
	return stateOriginalOut
}

// nftChain is one base chain of the translated rule set.
type nftChain struct {
	Name   string
	Dir    pf.Dir
	Hook   *nftables.ChainHook
	Policy nftables.ChainPolicy
	Rules  []nftRule // in the order nf_tables evaluates them
}

// nftRule is one nftables rule: Line is the pf rule's line it comes from
// (one pf rule can make several nftables rules), 0 for the chain's own.
type nftRule struct {
	Line  int
	Exprs []expr.Any
}

// nftChains translates rs into the chains "in" and "out". linuxName maps
// a pf interface name (e1000.N) to the Linux name of that NIC; a name it
// does not know is kept, and matches no Linux interface, as a pf rule
// naming a NIC the appliance does not have matches nothing.
func nftChains(rs *pf.Ruleset, linuxName func(iface string) string) []nftChain {
	policy := nftables.ChainPolicyDrop
	if rs.Default == pf.Pass {
		policy = nftables.ChainPolicyAccept
	}
	chains := []nftChain{
		{Name: "in", Dir: pf.In, Hook: nftables.ChainHookPrerouting, Policy: policy},
		{Name: "out", Dir: pf.Out, Hook: nftables.ChainHookPostrouting, Policy: policy},
	}
	for i := range chains {
		c := &chains[i]
		c.Rules = chainPrelude(c.Dir)
		var quick, last []*pf.Rule
		for j := range rs.Rules {
			r := &rs.Rules[j]
			switch {
			case r.Dir != pf.In && r.Dir != pf.Out: // both directions
			case r.Dir != c.Dir:
				continue
			}
			if r.Quick {
				quick = append(quick, r)
			} else {
				last = append(last, r)
			}
		}
		for _, r := range quick {
			c.Rules = append(c.Rules, translateRule(r, c.Dir, linuxName)...)
		}
		for j := len(last) - 1; j >= 0; j-- {
			c.Rules = append(c.Rules, translateRule(last[j], c.Dir, linuxName)...)
		}
	}
	return chains
}

// chainPrelude are the rules each chain starts with: loopback passes,
// and so does a packet of a flow that has the state of its direction.
func chainPrelude(dir pf.Dir) []nftRule {
	rules := []nftRule{{Exprs: slices.Concat(ifname(dir, "lo"), verdict(expr.VerdictAccept))}}
	for _, ctDir := range []byte{ctOriginal, ctReply} {
		rules = append(rules, nftRule{Exprs: slices.Concat(ctDirection(ctDir), hasState(stateBit(dir, ctDir)), verdict(expr.VerdictAccept))})
	}
	return rules
}

// translateRule is r as it applies in the chain of dir: one nftables rule
// for each kind of packet it treats differently. They are disjoint, or
// ordered so that the first that matches is right.
func translateRule(r *pf.Rule, dir pf.Dir, linuxName func(string) string) []nftRule {
	if ipv6Only(r) {
		return nil // the baseline translates IPv4 rules only
	}
	match := isIPv4()
	if r.Iface != "" {
		match = slices.Concat(match, ifname(dir, linuxName(r.Iface)))
	}
	if r.Proto != 0 {
		match = slices.Concat(match, l4proto(expr.CmpOpEq, r.Proto))
	}
	match = slices.Concat(match, hostMatch(r.From, ipv4Src), hostMatch(r.To, ipv4Dst))
	if r.From.Ports != (pf.PortRange{}) {
		match = slices.Concat(match, portMatch(r.From.Ports, sourcePort))
	}
	if r.To.Ports != (pf.PortRange{}) {
		match = slices.Concat(match, portMatch(r.To.Ports, destinationPort))
	}
	if r.HasICMPType {
		match = slices.Concat(match, icmpIs(expr.CmpOpEq, header.ICMPv4Type(r.ICMPType)))
	}
	action := expr.VerdictDrop
	if r.Action == pf.Pass {
		action = expr.VerdictAccept
	}

	// without is a rule that decides the packets that match r and conds,
	// and makes no state; withState is two that pass them, one per
	// conntrack direction, and mark their flow with the state of theirs.
	without := func(conds ...[]expr.Any) []nftRule {
		return []nftRule{{Line: r.Line, Exprs: slices.Concat(match, slices.Concat(conds...), counter(), verdict(action))}}
	}
	withState := func(conds ...[]expr.Any) []nftRule {
		var rules []nftRule
		for _, ctDir := range []byte{ctOriginal, ctReply} {
			rules = append(rules, nftRule{Line: r.Line, Exprs: slices.Concat(match, slices.Concat(conds...), ctDirection(ctDir),
				counter(), setState(stateBit(dir, ctDir)), verdict(expr.VerdictAccept))})
		}
		return rules
	}

	if r.Action == pf.Block || !r.KeepState {
		return without()
	}
	// pass ... keep state
	isTCP, isICMP := l4proto(expr.CmpOpEq, header.ProtocolTCP), l4proto(expr.CmpOpEq, header.ProtocolICMP)
	echo, notEcho := icmpIs(expr.CmpOpEq, header.ICMPv4Echo), icmpIs(expr.CmpOpNeq, header.ICMPv4Echo)
	switch {
	case r.Proto == header.ProtocolTCP:
		return withState(opensConnection())
	case r.HasICMPType && r.ICMPType == uint8(header.ICMPv4Echo):
		return withState()
	case r.HasICMPType:
		return without()
	case r.Proto == header.ProtocolICMP:
		return slices.Concat(withState(echo), without(notEcho))
	case r.Proto != 0:
		return withState()
	}
	// Every protocol: TCP by its SYN, ICMP echo requests with a state and
	// other ICMP without, the rest with a state.
	return slices.Concat(withState(isTCP, opensConnection()), withState(isICMP, echo), without(isICMP, notEcho),
		withState(l4proto(expr.CmpOpNeq, header.ProtocolTCP), l4proto(expr.CmpOpNeq, header.ProtocolICMP)))
}

// ipv6Only reports whether r matches only IPv6 datagrams: it says inet6,
// proto icmp6 or has an IPv6 address.
func ipv6Only(r *pf.Rule) bool {
	return r.Family == pf.Inet6 || r.Proto == header.ProtocolICMPv6 ||
		r.From.Addr.IsValid() && r.From.Addr.Addr().Is6() || r.To.Addr.IsValid() && r.To.Addr.Addr().Is6()
}

// The expressions. Every one works in register 1 (NFT_REG_1, 16 bytes).

// Where the fields are: the addresses in the IPv4 header (RFC 791, 3.1),
// the ports in the TCP and UDP headers (RFC 9293, 3.1; RFC 768), the
// flags in TCP's, the type in ICMP's (RFC 792).
const (
	ipv4Src         = 12
	ipv4Dst         = 16
	sourcePort      = 0
	destinationPort = 2
	tcpFlags        = 13
	icmpType        = 0
)

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func counter() []expr.Any { return []expr.Any{&expr.Counter{}} }

// isIPv4: meta nfproto ipv4. pf judges only IPv4, and an inet table sees
// IPv6 too, whose header the address matches would misread.
func isIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ifname: iifname NAME in the chain of packets in, oifname NAME out.
func ifname(dir pf.Dir, name string) []expr.Any {
	key := expr.MetaKeyIIFNAME
	if dir == pf.Out {
		key = expr.MetaKeyOIFNAME
	}
	padded := make([]byte, unix.IFNAMSIZ)
	copy(padded, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: padded}}
}

// l4proto: meta l4proto (==|!=) proto.
func l4proto(op expr.CmpOp, proto uint8) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte{proto}}}
}

// hostMatch: ip saddr or daddr (at offset in the IPv4 header) in h's
// prefix; nothing for any address.
func hostMatch(h pf.Host, offset uint32) []expr.Any {
	if !h.Addr.IsValid() || h.Addr.Bits() == 0 {
		return nil
	}
	p := h.Addr.Masked()
	load := &expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4, DestRegister: 1}
	want := &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()}
	if p.IsSingleIP() {
		return []expr.Any{load, want}
	}
	m := binaryutil.BigEndian.PutUint32(^uint32(0) << (32 - p.Bits()))
	return []expr.Any{load, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)}, want}
}

// portMatch: th sport (offset 0) or dport (offset 2) equal to the port, or
// within the range.
func portMatch(pr pf.PortRange, offset uint32) []expr.Any {
	load := transport(offset, 2)
	if pr.Lo == pr.Hi {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(pr.Lo)}}
	}
	return []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1,
		FromData: binaryutil.BigEndian.PutUint16(pr.Lo), ToData: binaryutil.BigEndian.PutUint16(pr.Hi)}}
}

// icmpIs: icmp type (==|!=) t.
func icmpIs(op expr.CmpOp, t header.ICMPv4Type) []expr.Any {
	return []expr.Any{transport(icmpType, 1), &expr.Cmp{Op: op, Register: 1, Data: []byte{byte(t)}}}
}

// transport loads n bytes at offset of the transport header.
func transport(offset, n uint32) *expr.Payload {
	return &expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: n, DestRegister: 1}
}

// opensConnection: tcp flags & (fin|syn|rst|ack) == syn, pf's implicit
// "flags S/SA" of a keep state rule (servers/pf, initialSYN).
func opensConnection() []expr.Any {
	const mask = header.TCPFlagFIN | header.TCPFlagSYN | header.TCPFlagRST | header.TCPFlagACK
	return []expr.Any{
		transport(tcpFlags, 1),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{header.TCPFlagSYN}},
	}
}

// ctDirection: ct direction original or reply. A packet conntrack does
// not track has none, and the rule ends there without matching.
func ctDirection(d byte) []expr.Any {
	return []expr.Any{&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{d}}}
}

// hasState: ct mark & bit != 0. The mark is in host byte order.
func hasState(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// setState: ct mark set ct mark | bit.
func setState(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	}
}

// loadNFTables puts chains into table inet keepnet through c, in one
// transaction: the kernel takes all of it or none.
func loadNFTables(c *nftables.Conn, chains []nftChain) error {
	t := c.AddTable(&nftables.Table{Name: nftTable, Family: nftables.TableFamilyINet})
	for _, ch := range chains {
		policy := ch.Policy
		chain := c.AddChain(&nftables.Chain{Name: ch.Name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: ch.Hook, Priority: nftables.ChainPriorityFilter, Policy: &policy})
		for _, r := range ch.Rules {
			comment := "keepnet: " + ch.Name + " prelude"
			if r.Line > 0 {
				comment = fmt.Sprintf("pf line %d", r.Line)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: r.Exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}
