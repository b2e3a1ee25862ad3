package pid1

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"keepnet/servers/header"
	"keepnet/servers/pf"
)

// linuxNameOf is the Linux stack of the tests: NIC N is ethN.
func linuxNameOf(iface string) string {
	if n, ok := strings.CutPrefix(iface, "e1000."); ok {
		return "eth" + n
	}
	return iface
}

func mustParse(t *testing.T, text string) *pf.Ruleset {
	t.Helper()
	rs, err := pf.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// One rule, expression by expression: what `nft list ruleset` shows as
//
//	meta nfproto ipv4 iifname "eth1" meta l4proto tcp ip saddr 10.77.0.0/24
//	ip daddr 10.78.0.1 th dport 8000-8080 tcp flags & (fin|syn|rst|ack) == syn
//	ct direction original counter ct mark set ct mark | 0x1 accept
//
// and its twin for conntrack's reply direction, after the chain's
// prelude; the other chain has only its prelude.
func TestNFTablesRule(t *testing.T) {
	rs := mustParse(t, "set default block\npass in quick on e1000.1 proto tcp from 10.77.0.0/24 to 10.78.0.1 port 8000:8080\n")
	chains := nftChains(rs, linuxNameOf)
	if len(chains) != 2 || chains[0].Name != "in" || chains[1].Name != "out" {
		t.Fatalf("chains %v, want in and out", chains)
	}
	in, out := chains[0], chains[1]
	if in.Policy != nftables.ChainPolicyDrop || *in.Hook != *nftables.ChainHookPrerouting || *out.Hook != *nftables.ChainHookPostrouting {
		t.Errorf("in: policy %v hook %v; out: hook %v; want drop, prerouting, postrouting", in.Policy, *in.Hook, *out.Hook)
	}
	native := binaryutil.NativeEndian.PutUint32
	reg := uint32(1)
	prelude := []nftRule{
		{Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}, &expr.Cmp{Register: reg, Data: []byte("lo\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{Exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg}, &expr.Cmp{Register: reg, Data: []byte{0}},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: native(1), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{Exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg}, &expr.Cmp{Register: reg, Data: []byte{1}},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: native(2), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
	}
	rule := func(ctDir byte, bit uint32) nftRule {
		return nftRule{Line: 2, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg}, &expr.Cmp{Register: reg, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}, &expr.Cmp{Register: reg, Data: []byte("eth1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, &expr.Cmp{Register: reg, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4, DestRegister: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Register: reg, Data: []byte{10, 77, 0, 0}},
			&expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4, DestRegister: reg},
			&expr.Cmp{Register: reg, Data: []byte{10, 78, 0, 1}},
			&expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2, DestRegister: reg},
			&expr.Range{Register: reg, FromData: []byte{0x1f, 0x40}, ToData: []byte{0x1f, 0x90}},
			&expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1, DestRegister: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
			&expr.Cmp{Register: reg, Data: []byte{0x02}},
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg}, &expr.Cmp{Register: reg, Data: []byte{ctDir}},
			&expr.Counter{},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: native(^bit), Xor: native(bit)},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg, SourceRegister: true},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}}
	}
	want := append(prelude, rule(0, stateOriginalIn), rule(1, stateOriginalOut))
	if !reflect.DeepEqual(want, in.Rules) {
		t.Errorf("chain in:\n%s\nwant:\n%s", rulesText(in.Rules), rulesText(want))
	}
	if len(out.Rules) != 3 {
		t.Errorf("chain out has %d rules, want its prelude's 3", len(out.Rules))
	}
}

// rulesText is rules, an expression a line, for a failure message.
func rulesText(rules []nftRule) string {
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&b, "rule of line %d:\n", r.Line)
		for _, e := range r.Exprs {
			fmt.Fprintf(&b, "\t%T %+v\n", e, e)
		}
	}
	return b.String()
}

// The order of a quick and non-quick mix: in each chain the quick rules
// of its direction in order, then the others last first; rules without a
// direction in both. Each rule as (pf line, verdict), prelude left out.
func TestNFTablesOrder(t *testing.T) {
	const rules = `set default block
pass in proto udp no state
block in quick proto tcp to any port 23
pass out proto udp no state
block proto udp to any port 53
pass quick proto icmp icmp-type echorep
block out quick to 10.0.0.0/8
pass in proto tcp to any port 80 no state
`
	chains := nftChains(mustParse(t, rules), linuxNameOf)
	for i, want := range [][]string{
		{"3 drop", "6 accept", "8 accept", "5 drop", "2 accept"},
		{"6 accept", "7 drop", "5 drop", "4 accept"},
	} {
		var got []string
		for _, r := range chains[i].Rules[3:] {
			v := r.Exprs[len(r.Exprs)-1].(*expr.Verdict)
			got = append(got, fmt.Sprintf("%d %s", r.Line, map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop"}[v.Kind]))
		}
		if !slices.Equal(want, got) {
			t.Errorf("chain %s: %q, want %q", chains[i].Name, got, want)
		}
	}
}

// The translation decides as pf does. For random rule sets over a small
// vocabulary, flows through a router between A (10.77.0.0/24, on e1000.0)
// and B (10.78.0.0/24, on e1000.1), and to and from the router itself,
// each take the same verdicts, packet after packet, from pf's own filter
// and from the nftables chains run by nftEval over a model of conntrack.
// A flow ends at its first blocked packet (after which pf keeps a state
// that a dropped packet's conntrack entry does not: see the package
// notes on invalid packets).
func TestNFTablesDecidesAsPF(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	flows := testFlows()
	disagreements := 0
	for set := 0; set < 400 && disagreements < 5; set++ {
		text := randomRules(rng)
		rs := mustParse(t, text)
		chains := nftChains(rs, linuxNameOf)
		for _, fl := range flows {
			filter, err := pf.New(make([]byte, pf.KeptBytes(64)), pf.Config{MaxStates: 64, Nonce: 1})
			if err != nil {
				t.Fatal(err)
			}
			filter.Load(mustParse(t, text)) // its own counters
			ct := &conntrack{}
			now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
			for i, p := range fl.packets {
				now = now.Add(time.Millisecond)
				byPF := p.pfPasses(filter, now)
				byNFT := p.nftPasses(chains, ct)
				if byPF != byNFT {
					disagreements++
					t.Errorf("rules:\n%s\nflow %s, packet %d (%s): pf passes %v, nftables %v", text, fl.name, i, p.what, byPF, byNFT)
					break
				}
				if !byPF {
					break
				}
			}
		}
	}
}

// randomRules is a rule set of 1 to 6 rules over addresses, ports and
// ICMP types the test flows use.
func randomRules(rng *rand.Rand) string {
	pick := func(words ...string) string { return words[rng.IntN(len(words))] }
	var b strings.Builder
	fmt.Fprintf(&b, "set default %s\n", pick("pass", "block"))
	for range 1 + rng.IntN(6) {
		words := []string{pick("pass", "block"), pick("", "in", "out"), pick("", "", "quick"), pick("", "", "on e1000.0", "on e1000.1")}
		proto := pick("", "tcp", "udp", "icmp")
		if proto != "" {
			words = append(words, "proto "+proto)
		}
		from := pick("", "", "10.77.0.0/24", "10.78.0.0/24", "10.77.0.1", "10.77.0.2")
		to := pick("", "", "10.78.0.0/24", "10.77.0.0/24", "10.78.0.1", "10.77.0.2")
		port := ""
		if proto == "tcp" || proto == "udp" {
			port = pick("", "", " port 80", " port 1000:2000", " port 53")
		}
		if from != "" || port != "" && rng.IntN(2) == 0 {
			if from == "" {
				from = "any"
			}
			words = append(words, "from "+from)
			if port != "" && rng.IntN(2) == 0 {
				words = append(words, strings.TrimSpace(port))
				port = ""
			}
		}
		if to != "" || port != "" {
			if to == "" {
				to = "any"
			}
			words = append(words, "to "+to+port)
		}
		if proto == "icmp" {
			words = append(words, pick("", "", "icmp-type echoreq", "icmp-type echorep", "icmp-type unreach"))
		}
		if words[0] == "pass" {
			words = append(words, pick("", "", "keep state", "no state"))
		}
		var line []string
		for _, w := range words {
			if w != "" {
				line = append(line, w)
			}
		}
		b.WriteString(strings.Join(line, " ") + "\n")
	}
	return b.String()
}

// The hosts of the test topology.
var (
	hostA  = netip.MustParseAddr("10.77.0.1")
	hostB  = netip.MustParseAddr("10.78.0.1")
	router = netip.MustParseAddr("10.77.0.2") // the appliance, on A's side
)

// side is the NIC a host is reached by, or "" for the router itself.
func side(a netip.Addr) string {
	switch {
	case a == router:
		return ""
	case netip.MustParsePrefix("10.77.0.0/24").Contains(a):
		return "e1000.0"
	}
	return "e1000.1"
}

// flowPacket is one datagram of a test flow.
type flowPacket struct {
	what     string
	src, dst netip.Addr
	data     []byte
}

// pfPasses is pf's verdict on p: judged in on the NIC it comes by (unless
// the router sent it) and, if that passes, out on the one it leaves by
// (unless it is for the router).
func (p flowPacket) pfPasses(f *pf.Filter, now time.Time) bool {
	if in := side(p.src); in != "" && !f.Verdict(pf.In, in, p.data, now).Pass {
		return false
	}
	if out := side(p.dst); out != "" && !f.Verdict(pf.Out, out, p.data, now).Pass {
		return false
	}
	return true
}

// nftPasses is the chains' verdict on p, as Linux routes it: prerouting
// (chain in) on the NIC it comes by, postrouting (chain out) on the one
// it leaves by; conntrack confirms its flow's entry if it passes both.
func (p flowPacket) nftPasses(chains []nftChain, ct *conntrack) bool {
	entry := ct.lookup(p.data)
	pass := true
	if in := side(p.src); in != "" {
		pass = nftEval(chains[0], linuxNameOf(in), p.data, entry)
	}
	if out := side(p.dst); pass && out != "" {
		pass = nftEval(chains[1], linuxNameOf(out), p.data, entry)
	}
	if pass && entry != nil {
		ct.confirm(entry)
	}
	return pass
}

type testFlow struct {
	name    string
	packets []flowPacket
}

// testFlows are a TCP connection, a UDP exchange and an ping from A to B,
// from B to A, from A to the router and from the router to B, with
// sequence numbers pf's window tracking accepts.
func testFlows() []testFlow {
	var flows []testFlow
	for _, ends := range [][2]netip.Addr{{hostA, hostB}, {hostB, hostA}, {hostA, router}, {router, hostB}} {
		c, s := ends[0], ends[1]
		name := fmt.Sprintf("%v-%v", c, s)
		for _, dport := range []uint16{80, 1500} {
			flows = append(flows, testFlow{name: fmt.Sprintf("tcp %s:%d", name, dport), packets: []flowPacket{
				tcpPacket("SYN", c, s, 40000, dport, 1000, 0, header.TCPFlagSYN),
				tcpPacket("SYN-ACK", s, c, dport, 40000, 5000, 1001, header.TCPFlagSYN|header.TCPFlagACK),
				tcpPacket("ACK", c, s, 40000, dport, 1001, 5001, header.TCPFlagACK),
				tcpPacket("data", c, s, 40000, dport, 1001, 5001, header.TCPFlagACK|header.TCPFlagPSH),
				tcpPacket("data back", s, c, dport, 40000, 5001, 1001, header.TCPFlagACK|header.TCPFlagPSH),
			}})
		}
		for _, dport := range []uint16{53, 1500} {
			flows = append(flows, testFlow{name: fmt.Sprintf("udp %s:%d", name, dport), packets: []flowPacket{
				udpPacket("query", c, s, 40000, dport), udpPacket("answer", s, c, dport, 40000), udpPacket("again", c, s, 40000, dport),
			}})
		}
		flows = append(flows, testFlow{name: "ping " + name, packets: []flowPacket{
			icmpPacket("echo request", c, s, header.ICMPv4Echo, 1), icmpPacket("echo reply", s, c, header.ICMPv4EchoReply, 1),
			icmpPacket("echo request", c, s, header.ICMPv4Echo, 2), icmpPacket("echo reply", s, c, header.ICMPv4EchoReply, 2),
		}})
		// A segment of a connection nobody tracks: conntrack picks it up
		// (a new entry), pf's keep state rules do not match it.
		flows = append(flows, testFlow{name: "stray ACK " + name, packets: []flowPacket{
			tcpPacket("ACK", c, s, 40001, 80, 1001, 5001, header.TCPFlagACK),
		}})
		flows = append(flows, testFlow{name: "unreachable " + name, packets: []flowPacket{
			icmpPacket("unreachable", c, s, header.ICMPv4DstUnreachable, 0),
		}})
	}
	return flows
}

func ipv4(proto uint8, src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), ID: 7, TTL: 64, Protocol: proto, Src: src, Dst: dst})
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

func tcpPacket(what string, src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags uint8) flowPacket {
	b := make([]byte, header.TCPMinimumSize+10)
	header.TCP(b).Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags, Window: 65535})
	return flowPacket{what: what, src: src, dst: dst, data: ipv4(header.ProtocolTCP, src, dst, b)}
}

func udpPacket(what string, src, dst netip.Addr, sport, dport uint16) flowPacket {
	b := make([]byte, header.UDPMinimumSize+10)
	header.UDP(b).Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(b))})
	return flowPacket{what: what, src: src, dst: dst, data: ipv4(header.ProtocolUDP, src, dst, b)}
}

func icmpPacket(what string, src, dst netip.Addr, typ header.ICMPv4Type, seq uint16) flowPacket {
	b := make([]byte, header.ICMPv4MinimumSize+8)
	header.ICMPv4(b).Encode(&header.ICMPv4Fields{Type: typ, Rest: 0x1234<<16 | uint32(seq)})
	return flowPacket{what: what, src: src, dst: dst, data: ipv4(header.ProtocolICMP, src, dst, b)}
}

// conntrack models what the chains see of Linux's connection tracking:
// one entry per flow, its original direction the first packet's, its
// mark; an entry is kept once a packet of it has passed. An ICMP packet
// other than an echo request starts no entry (conntrack finds it
// invalid); the tests' flows quote none, so nothing is related.
type conntrack struct {
	entries []*ctEntry
}

type ctEntry struct {
	original  flowTuple
	mark      uint32
	confirmed bool
	reply     bool // the packet at hand goes in the reply direction
}

type flowTuple struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16 // for ICMP echo, both the identifier
}

func tupleOf(b []byte) flowTuple {
	ip := header.IPv4(b)
	t := flowTuple{proto: ip.Protocol(), src: ip.Src(), dst: ip.Dst()}
	l4 := b[header.IPv4MinimumSize:]
	switch t.proto {
	case header.ProtocolTCP, header.ProtocolUDP:
		t.sport, t.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case header.ProtocolICMP:
		t.sport = binary.BigEndian.Uint16(l4[4:])
		t.dport = t.sport
	}
	return t
}

func (t flowTuple) reversed() flowTuple {
	return flowTuple{t.proto, t.dst, t.src, t.dport, t.sport}
}

// lookup finds b's entry, with its direction for b, or starts one; nil
// for a packet conntrack would call invalid.
func (c *conntrack) lookup(b []byte) *ctEntry {
	t := tupleOf(b)
	for _, e := range c.entries {
		switch {
		case e.original == t:
			e.reply = false
			return e
		case e.original == t.reversed():
			e.reply = true
			return e
		}
	}
	if t.proto == header.ProtocolICMP && header.ICMPv4(b[header.IPv4MinimumSize:]).Type() != header.ICMPv4Echo {
		return nil
	}
	return &ctEntry{original: t}
}

func (c *conntrack) confirm(e *ctEntry) {
	if !e.confirmed {
		e.confirmed = true
		c.entries = append(c.entries, e)
	}
}

// nftEval runs chain on the datagram b crossing the interface named
// iface, of the conntrack entry ct (nil: none), as nf_tables would: each
// rule's expressions in order until one does not match (the next rule) or
// a verdict; the policy at the end. It knows the expressions the
// translation uses, and fails on any other.
func nftEval(chain nftChain, iface string, b []byte, ct *ctEntry) bool {
	ip := header.IPv4(b)
	l4 := b[ip.HeaderLength():]
	for _, r := range chain.Rules {
		var reg [16]byte
	exprs:
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Meta:
				reg = [16]byte{}
				switch e.Key {
				case expr.MetaKeyNFPROTO:
					reg[0] = unix.NFPROTO_IPV4
				case expr.MetaKeyL4PROTO:
					reg[0] = ip.Protocol()
				case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
					if (e.Key == expr.MetaKeyIIFNAME) == (chain.Dir == pf.In) {
						copy(reg[:], iface)
					}
				default:
					panic(fmt.Sprintf("meta key %v", e.Key))
				}
			case *expr.Payload:
				src := b
				if e.Base == expr.PayloadBaseTransportHeader {
					src = l4
				}
				reg = [16]byte{}
				copy(reg[:], src[e.Offset:e.Offset+e.Len])
			case *expr.Bitwise:
				for i := range e.Len {
					reg[i] = reg[i]&e.Mask[i] ^ e.Xor[i]
				}
			case *expr.Cmp:
				c := bytes.Compare(reg[:len(e.Data)], e.Data)
				if e.Op == expr.CmpOpEq && c != 0 || e.Op == expr.CmpOpNeq && c == 0 {
					break exprs
				}
				if e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq {
					panic(fmt.Sprintf("cmp op %v", e.Op))
				}
			case *expr.Range:
				n := len(e.FromData)
				in := bytes.Compare(reg[:n], e.FromData) >= 0 && bytes.Compare(reg[:n], e.ToData) <= 0
				if in != (e.Op == expr.CmpOpEq) {
					break exprs
				}
			case *expr.Ct:
				if ct == nil {
					break exprs // the kernel's NFT_BREAK: no conntrack entry
				}
				switch {
				case e.Key == expr.CtKeyMARK && e.SourceRegister:
					ct.mark = binaryutil.NativeEndian.Uint32(reg[:4])
				case e.Key == expr.CtKeyMARK:
					reg = [16]byte{}
					copy(reg[:], binaryutil.NativeEndian.PutUint32(ct.mark))
				case e.Key == expr.CtKeyDIRECTION:
					reg = [16]byte{}
					if ct.reply {
						reg[0] = ctReply
					}
				default:
					panic(fmt.Sprintf("ct key %v", e.Key))
				}
			case *expr.Counter:
			case *expr.Verdict:
				return e.Kind == expr.VerdictAccept
			default:
				panic(fmt.Sprintf("expression %T", e))
			}
		}
	}
	return chain.Policy == nftables.ChainPolicyAccept
}

// The kernel takes the translation: a rule set with every kind of rule,
// loaded into a network namespace of its own, reads back chain by chain
// with the same number of rules, each with its comment. Needs root (and
// a kernel with nf_tables); the QEMU tests run it in the appliance.
func TestNFTablesLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading nftables needs root")
	}
	const rules = `set default block
pass in quick on e1000.0 proto tcp from 10.77.0.0/24 to 10.78.0.0/24 port 80 keep state
block in quick on e1000.0 proto tcp to any port 8000:8080
pass out on e1000.1 proto udp from any port 53 no state
pass proto icmp
pass out proto icmp icmp-type unreach
pass in proto icmp icmp-type echoreq
block out all
pass out all
`
	chains := nftChains(mustParse(t, rules), linuxNameOf)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // and this thread is in it
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	if err := loadNFTables(c, chains); err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: nftTable, Family: nftables.TableFamilyINet}
	for _, ch := range chains {
		got, err := c.GetRules(table, &nftables.Chain{Name: ch.Name, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ch.Rules) {
			t.Fatalf("chain %s: the kernel has %d rules, want %d", ch.Name, len(got), len(ch.Rules))
		}
		for i, r := range got {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			want := "keepnet: " + ch.Name + " prelude"
			if ch.Rules[i].Line > 0 {
				want = fmt.Sprintf("pf line %d", ch.Rules[i].Line)
			}
			if comment != want {
				t.Errorf("chain %s, rule %d: comment %q, want %q", ch.Name, i, comment, want)
			}
		}
	}
}

// The Linux stack loads the filter's modules only when it has rules, and
// crc32c_generic before the group that needs it (modulesFor).
func TestFilterModules(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want [][]string
	}{
		{Config{Stack: StackLinux, Ctl: CtlVirtio}, [][]string{{"virtio_pci", "virtio_console", "e1000", "e1000e"}}},
		{Config{Stack: StackKeepnet, Ctl: CtlVirtio, PFRules: "pass all\n"}, [][]string{{"virtio_pci", "virtio_console", "uio_pci_generic"}}},
		{Config{Stack: StackKeepnet, Ctl: CtlVirtio, IOMMU: true}, [][]string{{"virtio_pci", "virtio_console", "vfio", "vfio_iommu_type1", "vfio_pci"}}},
		{Config{Stack: StackLinux, Ctl: CtlVsock, PFRules: "pass all\n"},
			[][]string{{"virtio_pci", "vmw_vsock_virtio_transport", "e1000", "e1000e", "crc32c_generic"}, {"nft_ct"}}},
	} {
		if got := modulesFor(c.cfg); !reflect.DeepEqual(c.want, got) {
			t.Errorf("modulesFor(stack %s, rules %q) = %q, want %q", c.cfg.Stack, c.cfg.PFRules, got, c.want)
		}
	}
}
