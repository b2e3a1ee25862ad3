package pf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"keepnet/servers/header"
)

// ParseError is why a rule set was refused: where (line and column, both
// from 1), the word found there ("" at the end of the line) and what is
// wrong with it.
type ParseError struct {
	Line, Col int
	Token     string
	Msg       string
}

func (e *ParseError) Error() string {
	if e.Token == "" {
		return fmt.Sprintf("line %d, column %d: at end of line: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("line %d, column %d: %q: %s", e.Line, e.Col, e.Token, e.Msg)
}

// maxTimeout bounds set timeout values: a day is pf's default for
// tcp.established; a week leaves room and keeps nanoseconds far from
// overflow.
const maxTimeout = 7 * 24 * time.Hour

// Parse reads a rule set (the grammar is in the package doc). It parses
// all of text before it returns: a rule set with an error in it is never
// half applied, since nothing is applied until the caller loads the
// result.
func Parse(text string) (*Ruleset, error) {
	p := parser{def: Pass, timeouts: DefaultTimeouts()}
	for i, line := range strings.Split(text, "\n") {
		p.startLine(i+1, line)
		if p.done() {
			continue
		}
		if err := p.statement(); err != nil {
			return nil, err
		}
	}
	return NewRuleset(p.def, p.timeouts, p.rules...), nil
}

// token is a word of a line and its column.
type token struct {
	s   string
	col int
}

// parser holds the rule set being read and the line being read.
type parser struct {
	rules    []Rule
	def      Action
	timeouts Timeouts

	line   int
	endCol int // the column just past the line's last word
	toks   []token

	// family is the rule's so far: from its inet or inet6, its proto
	// icmp or icmp6, or its first address; every later one must agree.
	family Family
}

// startLine splits a line into words, dropping a comment.
func (p *parser) startLine(n int, line string) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	p.line, p.toks = n, p.toks[:0]
	for i := 0; i < len(line); {
		if line[i] == ' ' || line[i] == '\t' || line[i] == '\r' {
			i++
			continue
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '\r' {
			j++
		}
		p.toks = append(p.toks, token{line[i:j], i + 1})
		i = j
	}
	p.endCol = len(strings.TrimRight(line, " \t\r")) + 1
}

func (p *parser) done() bool { return len(p.toks) == 0 }

// peek is the next word, "" at the end of the line.
func (p *parser) peek() string {
	if p.done() {
		return ""
	}
	return p.toks[0].s
}

func (p *parser) next() token {
	if p.done() {
		return token{"", p.endCol}
	}
	t := p.toks[0]
	p.toks = p.toks[1:]
	return t
}

// accept takes the next word if it is w.
func (p *parser) accept(w string) bool {
	if p.peek() == w {
		p.next()
		return true
	}
	return false
}

// errAt is a ParseError at token t.
func (p *parser) errAt(t token, format string, args ...any) error {
	return &ParseError{Line: p.line, Col: t.col, Token: t.s, Msg: fmt.Sprintf(format, args...)}
}

// errNext is a ParseError at the next word, which is not taken.
func (p *parser) errNext(format string, args ...any) error {
	if p.done() {
		return p.errAt(token{"", p.endCol}, format, args...)
	}
	return p.errAt(p.toks[0], format, args...)
}

// statement parses one non-empty line.
func (p *parser) statement() error {
	switch p.peek() {
	case "set":
		p.next()
		return p.set()
	case "pass", "block":
		return p.rule()
	}
	return p.errNext("expected pass, block or set")
}

// set parses the rest of a set line.
func (p *parser) set() error {
	switch t := p.next(); t.s {
	case "default":
		a := p.next()
		switch a.s {
		case "pass":
			p.def = Pass
		case "block":
			p.def = Block
		default:
			return p.errAt(a, "expected pass or block")
		}
	case "timeout":
		if err := p.setTimeout(); err != nil {
			return err
		}
	default:
		return p.errAt(t, "expected default or timeout after set")
	}
	return p.end()
}

func (p *parser) setTimeout() error {
	name := p.next()
	field := p.timeouts.named(name.s)
	if field == nil {
		return p.errAt(name, "unknown timeout (tcp.first, tcp.established, udp.first, icmp.first, ...)")
	}
	v := p.next()
	n, err := strconv.ParseUint(v.s, 10, 32)
	if err != nil || n == 0 || time.Duration(n)*time.Second > maxTimeout {
		return p.errAt(v, "timeout must be a number of seconds from 1 to %d", int64(maxTimeout/time.Second))
	}
	*field = time.Duration(n) * time.Second
	return nil
}

// end checks that nothing is left on the line.
func (p *parser) end() error {
	if !p.done() {
		return p.errNext("unexpected word at the end of the statement")
	}
	return nil
}

// rule parses a pass or block line:
// action [in|out] [quick] [on IFACE] [inet|inet6] [proto P]
// [all | [from H] [to H]] [icmp-type T | icmp6-type T]
// [keep state | no state].
func (p *parser) rule() error {
	r := Rule{Line: p.line}
	p.family = FamilyAny
	if p.next().s == "pass" {
		r.Action, r.KeepState = Pass, true
	}
	switch {
	case p.accept("in"):
		r.Dir = In
	case p.accept("out"):
		r.Dir = Out
	}
	r.Quick = p.accept("quick")
	if p.accept("on") {
		t := p.next()
		if !validIface(t.s) {
			return p.errAt(t, "expected an interface name after on")
		}
		r.Iface = t.s
	}
	switch p.peek() {
	case "inet", "inet6":
		t := p.next()
		r.Family = Inet
		if t.s == "inet6" {
			r.Family = Inet6
		}
		p.family = r.Family
	}
	if p.accept("proto") {
		if err := p.proto(&r); err != nil {
			return err
		}
	}
	if err := p.hosts(&r); err != nil {
		return err
	}
	if err := p.options(&r); err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	p.rules = append(p.rules, r)
	return nil
}

// validIface reports whether s can name an interface: not empty and not a
// word of the grammar (so "pass on proto tcp" is an error, not an
// interface called proto).
func validIface(s string) bool {
	switch s {
	case "", "proto", "from", "to", "all", "quick", "in", "out", "keep", "no", "icmp-type", "icmp6-type", "port", "inet", "inet6":
		return false
	}
	return true
}

func (p *parser) proto(r *Rule) error {
	t := p.next()
	r.Proto = 0
	for num, name := range protoNames {
		if t.s == name {
			r.Proto = num
		}
	}
	if r.Proto == 0 {
		n, err := strconv.ParseUint(t.s, 10, 8)
		if err != nil || n == 0 {
			return p.errAt(t, "expected tcp, udp, icmp, icmp6 or a protocol number from 1 to 255")
		}
		r.Proto = uint8(n)
	}
	// ICMP is IPv4's, ICMPv6 IPv6's (pf.conf: "proto icmp6" wants inet6).
	switch r.Proto {
	case header.ProtocolICMP:
		return p.agree(Inet, t)
	case header.ProtocolICMPv6:
		return p.agree(Inet6, t)
	}
	return nil
}

// agree records that the word t asks for family f: an error if the rule
// already asked for the other one.
func (p *parser) agree(f Family, t token) error {
	if p.family != FamilyAny && p.family != f {
		return p.errAt(t, "%v in a rule that is %v", f, p.family)
	}
	p.family = f
	return nil
}

// hosts parses "all" or "[from H] [to H]"; both may be left out.
func (p *parser) hosts(r *Rule) error {
	if p.accept("all") {
		return nil
	}
	if p.accept("from") {
		if err := p.host(r, &r.From); err != nil {
			return err
		}
	}
	if p.accept("to") {
		if err := p.host(r, &r.To); err != nil {
			return err
		}
	}
	return nil
}

// host parses ADDR[/LEN]|any [port N[:M]], or port N[:M] alone (any
// address, as pf.conf's "to port 80").
func (p *parser) host(r *Rule, h *Host) error {
	if p.peek() == "port" {
		return p.port(r, h)
	}
	t := p.next()
	if t.s != "any" {
		pfx, err := parseAddr(t.s)
		if err != nil {
			return p.errAt(t, "%v", err)
		}
		if err := p.agree(familyOf(!pfx.Addr().Is4()), t); err != nil {
			return err
		}
		h.Addr = pfx
	}
	if p.peek() != "port" {
		return nil
	}
	return p.port(r, h)
}

// port parses port N[:M].
func (p *parser) port(r *Rule, h *Host) error {
	if kw := p.next(); r.Proto != header.ProtocolTCP && r.Proto != header.ProtocolUDP {
		return p.errAt(kw, "port needs proto tcp or proto udp before it")
	}
	pt := p.next()
	pr, ok := parsePorts(pt.s)
	if !ok {
		return p.errAt(pt, "expected a port (1-65535) or a range LO:HI")
	}
	h.Ports = pr
	return nil
}

// parseAddr reads an IPv4 or IPv6 address or prefix; an address alone is
// a /32 or a /128. Zones (fe80::1%e1000.0) are not addresses pf matches:
// they are refused, as are IPv4-mapped IPv6 addresses, which would read
// as IPv4 ones.
func parseAddr(s string) (netip.Prefix, error) {
	const want = "expected any, an IPv4 address, an IPv6 address or ADDR/LEN"
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || pfx.Addr().Is4In6() {
			return netip.Prefix{}, errors.New(want)
		}
		if pfx.Masked() != pfx {
			return netip.Prefix{}, fmt.Errorf("address has bits set past its prefix length (did you mean %v?)", pfx.Masked())
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return netip.Prefix{}, errors.New(want)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parsePorts reads N or LO:HI, inclusive, with 1 <= LO <= HI.
func parsePorts(s string) (PortRange, bool) {
	lo, hi, isRange := strings.Cut(s, ":")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil || l == 0 {
		return PortRange{}, false
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(hi, 10, 16); err != nil || h < l {
			return PortRange{}, false
		}
	}
	return PortRange{uint16(l), uint16(h)}, true
}

// options parses [icmp-type T | icmp6-type T] [keep state | no state].
func (p *parser) options(r *Rule) error {
	switch p.peek() {
	case "icmp-type", "icmp6-type":
		t := p.next()
		word, names := icmpTypeWord(r.Proto)
		if t.s != word || r.Proto != header.ProtocolICMP && r.Proto != header.ProtocolICMPv6 {
			return p.errAt(t, "icmp-type needs proto icmp before it, icmp6-type proto icmp6")
		}
		if err := p.icmpType(r, names); err != nil {
			return err
		}
	}
	switch p.peek() {
	case "keep", "no":
		t := p.next()
		if s := p.next(); s.s != "state" {
			return p.errAt(s, "expected state after %s", t.s)
		}
		if r.Action != Pass {
			return p.errAt(t, "a block rule creates no state")
		}
		r.KeepState = t.s == "keep"
	}
	return nil
}

func (p *parser) icmpType(r *Rule, names map[uint8]string) error {
	t := p.next()
	for typ, name := range names {
		if t.s == name {
			r.ICMPType, r.HasICMPType = typ, true
			return nil
		}
	}
	n, err := strconv.ParseUint(t.s, 10, 8)
	if err != nil {
		return p.errAt(t, "expected echoreq, echorep, unreach, timex, ... or a type number from 0 to 255")
	}
	r.ICMPType, r.HasICMPType = uint8(n), true
	return nil
}
