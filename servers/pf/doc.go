// Package pf is keepnet's packet filter: a rule set in the spirit of
// OpenBSD's pf.conf, and connection tracking whose state table outlives
// the pf server. The core (the Filter) has no I/O and no clock of its
// own: the pf server (server.go, run by cmd/pf) asks it for the verdict on
// every IPv4 and IPv6 datagram ip receives, sends or forwards, and hands
// it the time.
//
//	f, err := pf.New(keptMemory, pf.Config{MaxStates: 65536})
//	err = f.LoadText(rulesFile)          // a *ParseError names line, column, word
//	v := f.Verdict(pf.In, "e1000.0", datagram, now)
//	if v.Pass { ... }
//
// # Rules
//
// A rule set is a text of lines; # starts a comment. Grammar:
//
//	line     = [ statement ] [ "#" comment ]
//	statement = "set" "default" ( "pass" | "block" )
//	         | "set" "timeout" NAME SECONDS
//	         | rule
//	rule     = ( "pass" | "block" ) [ "in" | "out" ] [ "quick" ] [ "on" IFACE ]
//	           [ "inet" | "inet6" ]
//	           [ "proto" ( "tcp" | "udp" | "icmp" | "icmp6" | NUMBER ) ]
//	           [ "all" | [ "from" host ] [ "to" host ] ]
//	           [ "icmp-type" icmptype | "icmp6-type" icmp6type ]
//	           [ "keep" "state" | "no" "state" ]
//	host     = ( "any" | ADDRESS | ADDRESS "/" LENGTH ) [ port ] | port
//	port     = "port" ( N | LO ":" HI )
//	icmptype = "echoreq" | "echorep" | "unreach" | "timex" | NUMBER
//	icmp6type = "echoreq" | "echorep" | "unreach" | "toobig" | "timex" | "paramprob"
//	         | "routersol" | "routeradv" | "neighbrsol" | "neighbradv" | NUMBER
//
// The words come in this order. A rule without in or out applies both
// ways; without on, to every interface; without proto, from or to, to
// every protocol and address. Ports (inclusive ranges) need proto tcp or
// udp, icmp-type needs proto icmp, icmp6-type proto icmp6. An ADDRESS is
// IPv4 (10.0.0.2, 10.0.0.0/8) or IPv6 (2001:db8::/64, fe80::1; no zone).
//
// A rule applies to one address family, or both: inet says IPv4, inet6
// IPv6; an IPv4 address, or proto icmp, makes a rule IPv4's, an IPv6
// address or proto icmp6 IPv6's, and a rule that says both is refused;
// any and all match both families. SECONDS is 1 to 604800; NAME is one of
// tcp.first, tcp.opening, tcp.established, tcp.closing, tcp.finwait,
// tcp.closed, udp.first, udp.single, udp.multiple, icmp.first,
// icmp.error, other.first, other.single, other.multiple (DefaultTimeouts
// are pf's).
//
// Semantics, as in pf.conf: every rule is evaluated in order and the last
// one that matches decides, unless a matching rule is quick, which
// decides at once. A packet no rule matches gets the default (set
// default; pass if the rule set does not say, as pf passes with no rules —
// a firewall should say "set default block"). block drops silently.
// pass keeps state unless it says "no state": the flow's later packets,
// both ways, pass by the state without any rule being evaluated. Like pf's
// implicit "flags S/SA", a keep state rule matches only the packets that
// open a flow: for TCP a SYN without ACK; for ICMP and ICMPv6 it keeps
// state for echo requests only (other ICMP passes without state). The default action
// creates no state. Each rule counts the packets and bytes it decided and
// the states it created or could not create (RuleCounters); a new rule
// set starts its counters from zero and leaves the states alone.
//
// Example, a host that talks out but takes only SSH and ping, over both
// IPv4 and IPv6:
//
//	set default block
//	pass out all                                  # keep state: replies come back
//	pass in proto tcp to 10.0.0.2 port 22
//	pass in inet6 proto tcp to port 22
//	pass in proto icmp icmp-type echoreq
//	pass in proto icmp6 icmp6-type echoreq
//	block in quick on e1000.1 from 192.0.2.0/24   # never from there
//
// IPv6's Neighbor Discovery, router discovery and MLD on the link pass
// without rules (ReasonND; packet.go says which messages and why: a
// rule set that blocked them would cut the appliance off IPv6).
//
// Parse reads all of a text before it returns: a text with an error is
// refused whole and the rule set in force stays. Ruleset.String formats
// a rule set so that Parse gives it back (FuzzParse checks it).
//
// # Verdicts
//
// Verdict parses the datagram once (packet.go: IPv4 header, or IPv6
// header and extension headers; ports, TCP fields, the flow an ICMP or
// ICMPv6 error quotes; checksums are ip's business), then, in order:
//
//   - a datagram that is not well formed is blocked (ReasonMalformed);
//   - ICMPv6 Neighbor Discovery and MLD on the link pass (ReasonND);
//   - a later fragment passes only if its first fragment passed
//     (filter.go, "Fragments");
//   - an ICMP error (unreachable, time exceeded, parameter problem; for
//     ICMPv6 packet too big as well) that
//     quotes a tracked flow, sent to the host that sent the quoted
//     datagram, passes (ReasonRelated); one quoting a TCP sequence number
//     outside the flow's window is blocked;
//   - a packet of a tracked flow passes by its state (ReasonState), after
//     the TCP window checks (tcptrack.go), or is blocked if it is out of
//     window (ReasonBadWindow);
//   - else the rules decide, and a pass rule that keeps state creates one;
//     if the table is full the packet is blocked (ReasonStateLimit) and
//     the flows already tracked are not disturbed.
//
// States are found by a flow key that a packet and its reply share
// (state.go): one lookup either way. A key holds 16-byte addresses (IPv4
// ones mapped, addr.go) and the family, so an IPv4 flow and an IPv6 one
// never share a state. They are not bound to an interface,
// but to a direction: a forwarded flow is passed in on one interface and
// out on the other, by a rule and a state each. They expire after a
// timeout that depends on how far the flow has got (pf's names and
// defaults); each Verdict sweeps two slots of the table and a lookup that
// finds an expired state removes it, so expiry costs a bounded amount
// per packet and no timer.
//
// A packet of a tracked flow, the path most packets take, allocates
// nothing (TestEstablishedPathAllocatesNothing and its IPv6 twin;
// BenchmarkEstablished, BenchmarkEstablished6).
// A Filter is used from one goroutine.
//
// # Recovery
//
// The state table lives in memory handed to New (keep.go): in the server,
// memory init keeps across pf's restarts (kernel/keep), as tcp keeps its
// connections. Each state is a fixed slot of two checksummed copies,
// written before the verdict that changed it is returned. After a crash,
// the new pf calls New over the same memory, which adopts every valid
// state and drops the records that fail their checksums or invariants
// (Counters.Adopted, Discarded); then it takes the rules from a second
// piece of kept memory, which init writes (keeprules.go). Established
// flows go on; a flow whose record was lost is judged by the rules again
// (for TCP, a mid-connection segment matches no keep state rule and is
// dropped, as pf drops a connection it lost track of). While pf is down,
// ip holds the packets that wait for a verdict (bounded) and asks again:
// none passes unfiltered.
//
// # The server
//
// The steps of the process (server.go), and of its neighbours:
//
//  1. Init starts pf only if the appliance boots with rules (keepnet up
//     --pf-rules FILE, the kernel command line's keepnet.pfrules), and
//     then tells ip so (ip's -pf): without rules there is no pf, and no
//     datagram waits for one. Before pf's first start init writes the
//     rules into pf's rule memory; `keepnet pf load` writes a new rule
//     set there after init's parser accepted it (a refused one changes
//     nothing). pf looks at the memory's stamp every pass of its loop
//     (at least every 200 ms) and loads what is newer.
//  2. ip asks a question per IPv4 or IPv6 datagram over their channel
//     (servers/pf/verdict: the frame stays in ip's pool, pf reads it
//     there); pf drains every question per wake-up, decides them as a
//     batch (VerdictBatch) and answers in one send.
//  3. A new pf generation adopts the states and the rules from kept
//     memory, then answers the questions ip resubmits to it.
//  4. pf publishes its counters, the rules with theirs and the first
//     MaxPublishedStates states in the store (Stats), for `keepnet pf
//     rules`, `keepnet pf states` and `keepnet status`.
package pf
