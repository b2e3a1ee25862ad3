package pf

import (
	"context"
	"fmt"
	"log"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/loop"
	"keepnet/kernel/wiring"
	"keepnet/servers/pf/verdict"
	"keepnet/servers/store"
)

// The pf server process: a Filter behind one channel to ip
// (servers/pf/verdict), its state table and its rules in memory init keeps
// across its restarts (keep.go, keeprules.go). The process lives in this
// package, beside the Filter it drives, as ip's and tcp's do in theirs;
// only the protocol is a package of its own, so that ip imports the
// questions and not the filter.
//
// pf has no requests of its own to resubmit: it answers. After its
// restart ip resubmits the unanswered questions to the new generation;
// after ip's restart pf answers the new generation and the old one's
// questions go with their buffers.

// IPPeer is the IP component's name, as the component table gives it.
const IPPeer = "ip"

// ServerOptions configure the process.
type ServerOptions struct {
	Name string // the component, "pf"
	IP   string // the IP component, "ip"
	// Ifaces names the interfaces by the index ip gives in a question
	// (verdict.Ask): what rules say after "on".
	Ifaces []string
	// MaxStates bounds the state table (DefaultMaxStates if zero); the
	// kept memory must hold MemBytes of it.
	MaxStates int
	Store     *store.Client // for the counters (nil: none published)
	// Release, if not nil, tells init that pf no longer maps the pool
	// (wiring.TypeRelease): an old ip generation's, so that init can free
	// it.
	Release func(id uint32)
}

// StatsNS is the store namespace components publish their counters in.
const StatsNS = "stats"

const (
	joinTimeout = 10 * time.Second
	// rulesEvery is how often an idle pf looks whether init wrote new
	// rules (a busy one looks every pass of its loop).
	rulesEvery = 200 * time.Millisecond
	// batchMax is how many questions one pass takes off the channel.
	batchMax = 256
	// MaxPublishedStates bounds the states a publication lists (`keepnet
	// pf states`); the count is always whole.
	MaxPublishedStates = 100
)

// Server answers ip's questions. Its loop (kernel/loop) calls it from one
// goroutine; tests drive it the same way.
type Server struct {
	o     ServerOptions
	f     *Filter
	rules []byte // kept rule memory, written by init
	stamp uint64 // of the rules in force (0: none: everything blocked)

	ip    *wiring.Peer
	gen   int // the current ip generation's
	in    []channel.Msg
	out   []channel.Msg // answers the channel had no room for
	batch []Packet

	reloads, badRefs uint64
	now              func() time.Time
}

// NewServer makes a Server over the kept state memory (MemBytes of
// o.MaxStates) and rule memory (RulesBytes), adopting the states and the
// rules an earlier generation left there. With no whole rule text in
// rules, it blocks everything until init writes one: pf is started only
// when the appliance filters, and a filter that does not know its rules
// must not pass.
func NewServer(o ServerOptions, state, rules []byte) (*Server, error) {
	if len(rules) < RulesBytes {
		return nil, fmt.Errorf("pf: rules memory of %d bytes, want %d", len(rules), RulesBytes)
	}
	f, err := New(state, Config{MaxStates: o.MaxStates})
	if err != nil {
		return nil, err
	}
	f.Load(NewRuleset(Block, Timeouts{}))
	s := &Server{o: o, f: f, rules: rules, in: make([]channel.Msg, batchMax),
		batch: make([]Packet, 0, batchMax), now: time.Now}
	s.reload()
	c := f.Counters()
	log.Printf("%d states adopted, %d discarded; %d rules", c.Adopted, c.Discarded, len(f.Rules().Rules))
	return s, nil
}

// Filter is the server's Filter (for tests and publication).
func (s *Server) Filter() *Filter { return s.f }

// reload loads the rules init wrote if they are newer than those in
// force. init parsed them, so Parse accepts them; if it does not (memory
// scribbled on with a good checksum), the rules in force stay.
func (s *Server) reload() {
	if RulesStamp(s.rules) == s.stamp {
		return
	}
	text, stamp, ok := ReadRules(s.rules)
	if !ok || stamp == s.stamp {
		return // being written: the next pass reads it
	}
	if err := s.f.LoadText(text); err != nil {
		log.Printf("rules %d refused, those in force stay: %v", stamp, err)
	} else {
		s.reloads++
		log.Printf("rules %d loaded: %d rules", stamp, len(s.f.Rules().Rules))
	}
	s.stamp = stamp
}

// Attach is the loop's: a (new generation of) ip. Answers the old one
// had no room for are its, and go.
func (s *Server) Attach(p *wiring.Peer) {
	if p.Name != s.o.IP {
		log.Printf("a channel to %s, who asks nothing of pf: ignored", p.Name)
		p.Close()
		return
	}
	s.retire()
	s.ip, s.gen, s.out = p, p.Generation, s.out[:0]
	log.Printf("%s generation %d", p.Name, p.Generation)
}

// retire closes the channel to the ip generation being replaced and
// unmaps its pools, telling init: pf keeps no reference into them (its
// unanswered questions go with that generation).
func (s *Server) retire() {
	if s.ip == nil {
		return
	}
	s.ip.Retire(s.o.Release)
}

// AppendPorts is the loop's: the channel to ip.
func (s *Server) AppendPorts(dst []*channel.Endpoint) []*channel.Endpoint {
	if s.ip != nil {
		dst = append(dst, s.ip.Port)
	}
	return dst
}

// Poll is the loop's: take new rules, answer every question waiting, in
// one batch.
func (s *Server) Poll() (bool, time.Time) {
	s.reload()
	now := s.now()
	if s.ip == nil {
		return false, now.Add(rulesEvery)
	}
	work := false
	if len(s.out) == 0 {
		n := s.ip.Port.Recv(s.in)
		s.answer(s.in[:n], now)
		work = n > 0
	}
	var sent int
	s.out, sent = channel.Flush(s.ip.Port, s.out)
	work = work || sent > 0
	return work, now.Add(rulesEvery)
}

// answer decides the questions qs and queues their answers, in order.
func (s *Server) answer(qs []channel.Msg, now time.Time) {
	s.batch = s.batch[:0]
	for _, q := range qs {
		s.batch = append(s.batch, Packet{Dir: Dir(verdict.DirOf(q)), Iface: s.iface(q.Aux[0]), Data: s.datagram(q)})
	}
	s.f.VerdictBatch(s.batch, now)
	for i, q := range qs {
		p := &s.batch[i]
		st := verdict.StatusBlock
		switch {
		case verdict.OpOf(q) != verdict.OpAsk:
			st = verdict.StatusBadOp
		case p.Data == nil:
			st = verdict.StatusBadRef
			s.badRefs++
		case p.Verdict.Pass:
			st = verdict.StatusPass
		}
		s.out = append(s.out, verdict.Answer(q, st, uint8(p.Verdict.Reason), p.Verdict.Rule))
		p.Data = nil // the buffer goes back to ip
	}
}

// iface is the name of interface i.
func (s *Server) iface(i uint16) string {
	if int(i) < len(s.o.Ifaces) {
		return s.o.Ifaces[i]
	}
	return ""
}

// datagram is the IPv4 datagram question q names, or nil if q names none
// of ip's buffers (the Filter then blocks it as malformed).
func (s *Server) datagram(q channel.Msg) []byte {
	if verdict.OpOf(q) != verdict.OpAsk {
		return nil
	}
	p := s.ip.Pool(q.Ref.Pool)
	if p == nil {
		return nil
	}
	b, err := p.Bytes(q.Ref)
	if err != nil || int(q.Aux[1]) >= len(b) {
		return nil
	}
	return b[q.Aux[1]:]
}

// Stats is what the pf server publishes for `keepnet stats pf`, `keepnet
// pf rules`, `keepnet pf states` and `keepnet status`.
type Stats struct {
	IPGeneration int
	RulesStamp   uint64 // of the rules in force (init's count of loads)
	Reloads      uint64
	BadRefs      uint64 // questions naming no buffer of ip's: blocked
	Default      string
	NumRules     int
	Rules        []RuleStats
	NumStates    int
	States       []string // the first MaxPublishedStates
	Counters
}

// RuleStats is one rule and what it decided.
type RuleStats struct {
	Rule string
	Line int
	RuleCounters
}

// Stats gathers the server's counters (it allocates: it is for the
// operator, once a second).
func (s *Server) Stats() Stats {
	rs := s.f.Rules()
	st := Stats{IPGeneration: s.gen, RulesStamp: s.stamp, Reloads: s.reloads, BadRefs: s.badRefs,
		Default: rs.Default.String(), NumRules: len(rs.Rules), NumStates: s.f.NumStates(), Counters: s.f.Counters()}
	for i := range rs.Rules {
		st.Rules = append(st.Rules, RuleStats{Rule: rs.Rules[i].String(), Line: rs.Rules[i].Line, RuleCounters: rs.Counters[i]})
	}
	for _, info := range s.f.States(s.now(), MaxPublishedStates) {
		st.States = append(st.States, info.String())
	}
	return st
}

// Serve runs the pf server process until ctx ends.
func Serve(ctx context.Context, o ServerOptions) error {
	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	o.Release = conn.Release
	s, err := NewServer(o, setup.Kept[StateName], setup.Kept[RulesName])
	if err != nil {
		return err
	}
	watch, err := wiring.Watch(conn)
	if err != nil {
		return err
	}
	defer watch.Close()
	for _, p := range setup.Peers {
		s.Attach(p)
	}
	if err := conn.Send(wiring.Message{Type: wiring.TypeUp}); err != nil {
		log.Printf("wiring: %v", err)
	}
	pub := store.NewPublisher(o.Store, StatsNS, o.Name)
	defer pub.Close()
	publish := func() { pub.Publish(s.Stats()) }
	if err := loop.Run(ctx, loop.FromWatcher(watch), s, loop.Options{Publish: publish}); err != nil {
		return fmt.Errorf("pf: %w", err)
	}
	return nil
}
