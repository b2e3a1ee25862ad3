package pf

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"keepnet/servers/header"
)

// DefaultMaxStates is Config.MaxStates when it is zero: 64 Ki flows,
// 16 MiB of kept memory (pages cost only once touched) and about as much
// again in the process. pf's default is 100,000; keepnet's tcp holds at
// most 8,192 connections of its own, so this leaves most of the table to
// forwarded flows.
const DefaultMaxStates = 65536

// Config is what a Filter is made with; rule sets come and go with Load.
type Config struct {
	// MaxStates bounds the state table. When it is full, a packet whose
	// rule would create a state is blocked (Counters.StateLimit) and the
	// established flows go on.
	MaxStates int
	// Nonce marks kept memory set up afresh (see keep.go); zero draws
	// one from crypto/rand. Tests fix it.
	Nonce uint64
}

// Counters are the Filter's, since New (Adopted and Discarded: by New).
type Counters struct {
	Packets uint64 // verdicts asked
	Passed  uint64
	Blocked uint64

	Malformed       uint64 // refused by parse: bad IP header or IPv6 extension headers, truncated, short transport header
	BadWindow       uint64 // a TCP segment of a tracked flow outside its windows, or an ICMP error quoting one
	StateLimit      uint64 // states not created: the table was full
	StateMatches    uint64 // packets passed by a state
	ICMPErrors      uint64 // ICMP errors passed because they quote a tracked flow
	FragmentsPassed uint64 // later fragments passed after their first
	FragmentsLost   uint64 // later fragments blocked: no first fragment passed
	NDPassed        uint64 // ICMPv6 Neighbor Discovery and MLD passed without rules (packet.go)

	StatesCreated uint64
	StatesExpired uint64
	StatesReused  uint64 // closed TCP states replaced by a new SYN

	Adopted   uint64 // states New found in kept memory
	Discarded uint64 // records New dropped: bad checksum or invariants, or a duplicate
}

// Reason says what decided a verdict.
type Reason uint8

const (
	ReasonRule       Reason = iota // a rule matched: Verdict.Rule
	ReasonDefault                  // no rule matched: the default action
	ReasonState                    // a tracked flow's packet
	ReasonRelated                  // an ICMP error quoting a tracked flow
	ReasonBadWindow                // a tracked TCP flow's segment out of window
	ReasonStateLimit               // the rule would create a state; the table is full
	ReasonMalformed                // not a well-formed IPv4 or IPv6 datagram
	ReasonFragment                 // a later fragment: passed as its first was, or not
	ReasonND                       // ICMPv6 Neighbor Discovery or MLD on the link: passed without rules
)

var reasonNames = [...]string{"rule", "default", "state", "related", "bad-window", "state-limit", "malformed", "fragment", "nd"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Verdict is the Filter's answer for one packet.
type Verdict struct {
	Pass   bool
	Reason Reason
	// Rule is the index in the rule set of the rule that decided
	// (ReasonRule, ReasonStateLimit) or that created the state
	// (ReasonState; in the rule set of its time); -1 otherwise.
	Rule int
}

// Packet is one question of a batch: a datagram, the way it goes and the
// interface it crosses; VerdictBatch fills in Verdict.
type Packet struct {
	Dir     Dir
	Iface   string
	Data    []byte
	Verdict Verdict
}

// sweepPerVerdict is how many slots each verdict's expiry sweep looks at:
// with it a table of MaxStates slots is swept every MaxStates/2 packets,
// and a lookup treats an expired state as gone anyway, so the sweep only
// frees slots early.
const sweepPerVerdict = 2

// sweepWhenFull is how many more slots a state creation sweeps when the
// table is full, before it refuses.
const sweepWhenFull = 64

// Filter decides packets: a rule set and a state table. It is not safe
// for concurrent use: the pf server calls it from its one loop.
type Filter struct {
	rules *Ruleset

	// states[i] is the state in kept memory slot i, live if live[i].
	states []state
	live   []bool
	index  map[flowKey]int32
	free   []int32 // slots not live, taken from the end
	sweep  int     // the next slot the expiry sweep looks at

	kept  *keeper
	frags fragments
	c     Counters
}

// New makes a Filter whose state table lives in mem, which must hold
// MemBytes(cfg.MaxStates) bytes (nil: the Filter allocates it). If mem
// holds a table of the same size from an earlier Filter (a crashed pf),
// its valid states are adopted and its bad records dropped (Counters);
// otherwise mem is set up empty. The rule set is "pass all, no state"
// until Load.
func New(mem []byte, cfg Config) (*Filter, error) {
	if cfg.MaxStates == 0 {
		cfg.MaxStates = DefaultMaxStates
	}
	if cfg.MaxStates < 0 {
		return nil, fmt.Errorf("pf: MaxStates %d", cfg.MaxStates)
	}
	size := MemBytes(cfg.MaxStates)
	if mem == nil {
		mem = make([]byte, size)
	}
	if len(mem) < size {
		return nil, fmt.Errorf("pf: kept memory of %d bytes, %d states need %d", len(mem), cfg.MaxStates, size)
	}
	f := &Filter{
		rules:  NewRuleset(Pass, Timeouts{}),
		states: make([]state, cfg.MaxStates),
		live:   make([]bool, cfg.MaxStates),
		index:  make(map[flowKey]int32, cfg.MaxStates),
		free:   make([]int32, 0, cfg.MaxStates),
		kept:   &keeper{mem: mem, slots: cfg.MaxStates, next: make([]uint8, cfg.MaxStates)},
	}
	if f.kept.validHeader() {
		f.kept.loadNonce()
		f.adoptAll()
		return f, nil
	}
	nonce := cfg.Nonce
	for nonce == 0 {
		var b [8]byte
		rand.Read(b[:])
		nonce = binary.LittleEndian.Uint64(b[:])
	}
	f.kept.setUp(nonce)
	for i := cfg.MaxStates - 1; i >= 0; i-- {
		f.free = append(f.free, int32(i))
	}
	return f, nil
}

// adoptAll takes the valid states of every slot; a second record of the
// same flow (which a correct table never has) loses to the newer one.
// Records dropped are overwritten free, once every stamp is known, so
// that the next restart does not count them again.
func (f *Filter) adoptAll() {
	stamps := make([]uint64, len(f.states))
	var dropped []int32
	drop := func(i int32) {
		dropped = append(dropped, i)
		f.free = append(f.free, i)
	}
	for i := int32(len(f.states) - 1); i >= 0; i-- {
		kind, stamp := f.kept.adopt(int(i), &f.states[i])
		switch kind {
		case slotEmpty:
			f.free = append(f.free, i)
			continue
		case slotCorrupt:
			drop(i)
			continue
		}
		key := f.states[i].key
		if j, dup := f.index[key]; dup {
			if stamps[j] > stamp {
				drop(i)
				continue
			}
			f.live[j] = false
			drop(j)
		}
		f.index[key], f.live[i], stamps[i] = i, true, stamp
	}
	for _, i := range dropped {
		f.kept.free(int(i))
	}
	f.c.Adopted, f.c.Discarded = uint64(len(f.index)), uint64(len(dropped))
}

// Load makes rs the rule set in force. States stay: flows the old rules
// passed go on, as in pf. rs is the Filter's from now on (its counters).
func (f *Filter) Load(rs *Ruleset) { f.rules = rs }

// LoadText parses text as a rule set and loads it. A text with an error
// in it is refused whole (a *ParseError says where), and the rule set in
// force stays in force.
func (f *Filter) LoadText(text string) error {
	rs, err := Parse(text)
	if err != nil {
		return err
	}
	f.Load(rs)
	return nil
}

// Rules is the rule set in force, with its counters.
func (f *Filter) Rules() *Ruleset { return f.rules }

// Counters returns the Filter's counters.
func (f *Filter) Counters() Counters { return f.c }

// NumStates is how many states are live.
func (f *Filter) NumStates() int { return len(f.index) }

// VerdictBatch decides each packet of ps, in order, at now.
func (f *Filter) VerdictBatch(ps []Packet, now time.Time) {
	for i := range ps {
		p := &ps[i]
		p.Verdict = f.Verdict(p.Dir, p.Iface, p.Data, now)
	}
}

// Verdict decides the IPv4 or IPv6 datagram b going dir through interface iface
// at now, updating states and counters. b is read once, here: it may lie
// in a pool a neighbour can write.
func (f *Filter) Verdict(dir Dir, iface string, b []byte, now time.Time) Verdict {
	t := now.UnixNano()
	f.expire(t, sweepPerVerdict)
	f.c.Packets++
	var p packet
	var v Verdict
	if p.parse(b) != wellFormed {
		f.c.Malformed++
		v = Verdict{Reason: ReasonMalformed, Rule: -1}
	} else {
		v = f.decide(&p, dir, iface, t)
	}
	if v.Pass {
		f.c.Passed++
	} else {
		f.c.Blocked++
	}
	return v
}

func (f *Filter) decide(p *packet, dir Dir, iface string, now int64) Verdict {
	if p.linkLocalControl() {
		f.c.NDPassed++
		return Verdict{Pass: true, Reason: ReasonND, Rule: -1}
	}
	if p.later {
		return f.laterFragment(p, dir, now)
	}
	v := f.decideWhole(p, dir, iface, now)
	if p.first && v.Pass {
		f.frags.remember(p, dir, now)
	}
	return v
}

// decideWhole decides a datagram that has its transport header: by the
// flow it belongs to, or the one an ICMP error quotes, else by the rules.
func (f *Filter) decideWhole(p *packet, dir Dir, iface string, now int64) Verdict {
	if p.isICMPError() && p.quoted.valid {
		if v, ok := f.related(p, dir, now); ok {
			return v
		}
	}
	if v, ok := f.matchState(p, dir, now); ok {
		return v
	}
	return f.evaluate(p, dir, iface, now)
}

// hasFlow reports whether p belongs to a kind of flow states track:
// TCP, UDP, ICMP echo (ICMPv6 echo in IPv6), and any protocol other than
// those.
func (p *packet) hasFlow() bool { return !p.icmp() || p.isEcho() }

// ports are p's TCP or UDP ports; 0 for other protocols (no port rule
// matches 0), whose flows key on other fields (the ICMP echo identifier).
func (p *packet) ports() (src, dst uint16) {
	if p.proto == header.ProtocolTCP || p.proto == header.ProtocolUDP {
		return p.sport, p.dport
	}
	return 0, 0
}

// makesState reports whether a keep state rule creates a state for p:
// the first packet of a flow (for TCP its SYN, for ICMP an echo request).
func (p *packet) makesState() bool {
	switch {
	case p.proto == header.ProtocolTCP:
		return p.initialSYN()
	case p.icmp():
		return p.isEchoRequest()
	}
	return true
}

// initialSYN reports whether p opens a TCP connection: SYN without ACK
// (nor RST or FIN).
func (p *packet) initialSYN() bool {
	const mask = header.TCPFlagSYN | header.TCPFlagACK | header.TCPFlagRST | header.TCPFlagFIN
	return p.flags&mask == header.TCPFlagSYN
}

// matchState decides p by its flow's state, if it has one.
func (f *Filter) matchState(p *packet, dir Dir, now int64) (Verdict, bool) {
	if !p.hasFlow() {
		return Verdict{}, false
	}
	k, fromLo := keyOf(p.v6, p.proto, p.src, p.dst, p.sport, p.dport, dir)
	i, ok := f.lookup(k, now)
	if !ok {
		return Verdict{}, false
	}
	st := &f.states[i]
	side := st.side(fromLo)
	switch {
	case p.proto == header.ProtocolTCP:
		if p.initialSYN() && st.reusable() {
			f.c.StatesReused++
			f.remove(i)
			return Verdict{}, false
		}
		if !st.trackTCP(p, side) {
			f.c.BadWindow++
			return Verdict{Reason: ReasonBadWindow, Rule: -1}, true
		}
	case p.icmp():
		// An echo state passes requests one way and replies the other.
		n := p.numbers()
		if want := [2]uint8{n.echoRequest, n.echoReply}[side]; p.icmpType != want {
			return Verdict{}, false
		}
		st.peers[side].count()
	default:
		st.peers[side].count()
	}
	st.last = now
	st.packets[side]++
	st.bytes[side] += uint64(p.length)
	f.kept.save(int(i), st)
	f.c.StateMatches++
	return Verdict{Pass: true, Reason: ReasonState, Rule: int(st.rule)}, true
}

// related decides an ICMP error by the flow it quotes. The quoted
// datagram went the other way from the error, from the host the error is
// addressed to; an error quoting a TCP segment must quote a sequence
// number within the sender's window (an error is as forgeable as an RST).
// An error that quotes no tracked flow is left to the rules.
func (f *Filter) related(p *packet, dir Dir, now int64) (Verdict, bool) {
	q := &p.quoted
	if q.src != p.dst {
		return Verdict{}, false
	}
	k, fromLo := keyOf(p.v6, q.proto, q.src, q.dst, q.sport, q.dport, dir.reverse())
	i, ok := f.lookup(k, now)
	if !ok {
		return Verdict{}, false
	}
	st := &f.states[i]
	side := st.side(fromLo)
	if q.proto == header.ProtocolTCP {
		s, o := &st.peers[side], &st.peers[1-side]
		if !seqLE(q.seq, s.limit) || !seqGE(q.seq, s.end-max(o.maxWin, minWindowSlack)) {
			f.c.BadWindow++
			return Verdict{Reason: ReasonBadWindow, Rule: -1}, true
		}
	}
	if q.proto == p.numbers().proto {
		st.icmpError, st.last = true, now
		f.kept.save(int(i), st)
	}
	f.c.ICMPErrors++
	return Verdict{Pass: true, Reason: ReasonRelated, Rule: int(st.rule)}, true
}

// evaluate decides p by the rules and creates the state a keep state
// rule asks for.
func (f *Filter) evaluate(p *packet, dir Dir, iface string, now int64) Verdict {
	rs := f.rules
	i := rs.match(p, dir, iface)
	if i < 0 {
		rs.DefaultCounters.add(p)
		return Verdict{Pass: rs.Default == Pass, Reason: ReasonDefault, Rule: -1}
	}
	r, c := &rs.Rules[i], &rs.Counters[i]
	c.add(p)
	if r.Action == Block {
		return Verdict{Reason: ReasonRule, Rule: i}
	}
	if r.KeepState && p.makesState() {
		if !f.create(p, dir, i, now) {
			c.Refused++
			f.c.StateLimit++
			return Verdict{Reason: ReasonStateLimit, Rule: i}
		}
		c.States++
	}
	return Verdict{Pass: true, Reason: ReasonRule, Rule: i}
}

func (c *RuleCounters) add(p *packet) {
	c.Packets++
	c.Bytes += uint64(p.length)
}

// create makes a state for p, the first packet of its flow, passed by
// rule. It reports false if the table is full even after a sweep.
func (f *Filter) create(p *packet, dir Dir, rule int, now int64) bool {
	if len(f.free) == 0 {
		f.expire(now, sweepWhenFull)
	}
	n := len(f.free)
	if n == 0 {
		return false
	}
	i := f.free[n-1]
	f.free = f.free[:n-1]
	k, fromLo := keyOf(p.v6, p.proto, p.src, p.dst, p.sport, p.dport, dir)
	st := &f.states[i]
	*st = state{key: k, initLo: fromLo, created: now, last: now, rule: int32(rule)}
	st.packets[initiator], st.bytes[initiator] = 1, uint64(p.length)
	if p.proto == header.ProtocolTCP {
		st.startTCP(p)
	} else {
		st.peers[initiator].count()
	}
	f.index[k], f.live[i] = i, true
	f.kept.save(int(i), st)
	f.c.StatesCreated++
	return true
}

// lookup finds the live state of k; an expired one is removed instead.
func (f *Filter) lookup(k flowKey, now int64) (int32, bool) {
	i, ok := f.index[k]
	if !ok {
		return 0, false
	}
	if f.states[i].expired(now, &f.rules.Timeouts) {
		f.c.StatesExpired++
		f.remove(i)
		return 0, false
	}
	return i, true
}

// remove ends state i.
func (f *Filter) remove(i int32) {
	delete(f.index, f.states[i].key)
	f.live[i] = false
	f.free = append(f.free, i)
	f.kept.free(int(i))
}

// expire looks at the next n slots and removes their expired states. The
// cost is bounded per call; calls go round the table.
func (f *Filter) expire(now int64, n int) {
	for range min(n, len(f.states)) {
		i := f.sweep
		if f.sweep++; f.sweep == len(f.states) {
			f.sweep = 0
		}
		if f.live[i] && f.states[i].expired(now, &f.rules.Timeouts) {
			f.c.StatesExpired++
			f.remove(int32(i))
		}
	}
}

// Expire sweeps up to n slots for expired states, for a server with time
// on its hands; Verdict sweeps a few on each call anyway.
func (f *Filter) Expire(now time.Time, n int) { f.expire(now.UnixNano(), n) }

// match returns the index of the rule that decides p, or -1 if none
// matches: the last matching rule, or the first matching quick one.
func (rs *Ruleset) match(p *packet, dir Dir, iface string) int {
	decided := -1
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if !r.matches(p, dir, iface) {
			continue
		}
		decided = i
		if r.Quick {
			break
		}
	}
	return decided
}

// matches reports whether r matches p. A pass rule that keeps state
// matches a TCP packet only if it opens a connection (pf's implicit
// "flags S/SA"): the rest of the connection passes by its state, and a
// segment of a connection the filter does not track is not passed by a
// rule meant for new ones.
func (r *Rule) matches(p *packet, dir Dir, iface string) bool {
	sport, dport := p.ports()
	switch {
	case r.Dir != dirAny && r.Dir != dir,
		r.Iface != "" && r.Iface != iface,
		r.Family != FamilyAny && r.Family != familyOf(p.v6),
		r.Proto != 0 && r.Proto != p.proto,
		!r.From.match(p.src, p.v6, sport),
		!r.To.match(p.dst, p.v6, dport),
		r.HasICMPType && (!p.icmp() || p.icmpType != r.ICMPType),
		r.Action == Pass && r.KeepState && p.proto == header.ProtocolTCP && !p.initialSYN():
		return false
	}
	return true
}

// # Fragments
//
// Only a datagram's first fragment has the transport header, so only it
// can be judged like a whole datagram; the rest follow its verdict. A
// first fragment that passes is remembered (family, source, destination,
// protocol, identification and direction) for fragmentTimeout, in a
// small ring; a later fragment passes only if its first did, and is
// blocked otherwise (a later fragment that overtakes its first is lost,
// and the sender's retransmission gets through). Fragments never match
// states or rules themselves, so no rule is decided on ports a fragment
// does not carry. The ring is bounded (fragmentSlots): under a flood of
// fragmented datagrams the oldest are forgotten and their fragments
// blocked. ip reassembles what it delivers locally; asking for a verdict
// after reassembly, where it can, is better still, as pf and netfilter
// reassemble before they filter.

// fragmentTimeout is how long a first fragment's verdict is remembered:
// ip's reassembly timeout.
const fragmentTimeout = 30 * time.Second

// fragmentSlots is how many first fragments are remembered.
const fragmentSlots = 256

type fragment struct {
	src, dst addr
	id       uint32
	proto    uint8
	v6       bool
	dir      Dir
	expires  int64
}

type fragments struct {
	ring [fragmentSlots]fragment
	next int
}

func fragmentOf(p *packet, dir Dir) fragment {
	e := fragment{src: p.src, dst: p.dst, id: p.fragID, proto: p.proto, v6: p.v6, dir: dir}
	if p.v6 {
		// Source, destination and identification name an IPv6 datagram
		// (RFC 8200 §4.5); its upper layer is known only to its first
		// fragment, whose chain may go on past the Fragment header.
		e.proto = 0
	}
	return e
}

func (fs *fragments) remember(p *packet, dir Dir, now int64) {
	e := fragmentOf(p, dir)
	e.expires = now + int64(fragmentTimeout)
	fs.ring[fs.next] = e
	fs.next = (fs.next + 1) % fragmentSlots
}

func (fs *fragments) passed(p *packet, dir Dir, now int64) bool {
	want := fragmentOf(p, dir)
	for i := range fs.ring {
		e := fs.ring[i]
		expires := e.expires
		e.expires = 0
		if e == want && now < expires {
			return true
		}
	}
	return false
}

func (f *Filter) laterFragment(p *packet, dir Dir, now int64) Verdict {
	if f.frags.passed(p, dir, now) {
		f.c.FragmentsPassed++
		return Verdict{Pass: true, Reason: ReasonFragment, Rule: -1}
	}
	f.c.FragmentsLost++
	return Verdict{Reason: ReasonFragment, Rule: -1}
}
