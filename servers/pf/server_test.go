package pf

import (
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/pf/verdict"
)

// fakeIP plays ip to a pf Server over a real channel, with a real pool
// of frames the Server maps.
type fakeIP struct {
	t      *testing.T
	frames *pool.Pool
	port   *channel.Endpoint // ours, to the current pf generation
	srv    *Server
	nextID uint64
}

func newFakeIP(t *testing.T) *fakeIP {
	t.Helper()
	p, err := pool.Create(7, 8, 2048)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &fakeIP{t: t, frames: p}
}

// meet gives srv, a new pf generation, a channel to us.
func (ip *fakeIP) meet(srv *Server, gen int) {
	ip.t.Helper()
	a, b, err := channel.NewLocal(64)
	if err != nil {
		ip.t.Fatal(err)
	}
	srv.now = func() time.Time { return epoch }
	srv.Attach(&wiring.Peer{Name: IPPeer, Generation: gen, Port: b, Pools: []*pool.Pool{ip.frames}})
	ip.port, ip.srv = a, srv
}

// ask asks pf whether datagram may go dir, as ip does: in a frame of its
// pool, behind an Ethernet header.
func (ip *fakeIP) ask(dir verdict.Dir, datagram []byte) verdict.Status {
	ip.t.Helper()
	ref, ok := ip.frames.Alloc()
	if !ok {
		ip.t.Fatal("frame pool empty")
	}
	defer ip.frames.Free(ref)
	b, _ := ip.frames.Bytes(ref)
	ref.Len = uint32(header.EthernetMinimumSize + copy(b[header.EthernetMinimumSize:], datagram))
	ip.nextID++
	q := verdict.Ask(ref, 0, header.EthernetMinimumSize, dir, 0)
	q.ID = ip.nextID
	return ip.call(q)
}

// call sends q, lets pf run once and returns its answer's status.
func (ip *fakeIP) call(q channel.Msg) verdict.Status {
	ip.t.Helper()
	if ip.port.Send(q) != 1 {
		ip.t.Fatal("channel full")
	}
	ip.srv.Poll()
	var in [1]channel.Msg
	if ip.port.Recv(in[:]) != 1 {
		ip.t.Fatalf("no answer to %v", verdict.OpOf(q))
	}
	if in[0].ID != q.ID {
		ip.t.Fatalf("answer to question %d, want %d", in[0].ID, q.ID)
	}
	return verdict.StatusOf(in[0])
}

// expect asks about datagram and checks pf's answer.
func (ip *fakeIP) expect(dir verdict.Dir, datagram []byte, want verdict.Status, what string) {
	ip.t.Helper()
	if got := ip.ask(dir, datagram); got != want {
		ip.t.Errorf("%s (%v) = %v, want %v", what, dir, got, want)
	}
}

// keptMemory is what init holds for pf: its state table and its rules.
func keptMemory(t *testing.T, rules string) (state, rulesMem []byte) {
	t.Helper()
	state, rulesMem = make([]byte, MemBytes(64)), make([]byte, RulesBytes)
	if rules != "" {
		if err := WriteRules(rulesMem, rules); err != nil {
			t.Fatal(err)
		}
	}
	return state, rulesMem
}

func newServer(t *testing.T, state, rules []byte) *Server {
	t.Helper()
	s, err := NewServer(ServerOptions{Name: "pf", IP: IPPeer, Ifaces: []string{"e1000.0"}, MaxStates: 64}, state, rules)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const webOnly = "set default block\npass in proto tcp to any port 80 keep state\n"

// A pf restart (a new Server over the same kept memory) lets an
// established flow go on, with rules that block by default; the flow's
// mid-connection segments would be blocked without its state.
func TestServerStateSurvivesRestart(t *testing.T) {
	state, rules := keptMemory(t, webOnly)
	ip := newFakeIP(t)
	ip.meet(newServer(t, state, rules), 1)
	c := &conn{client: outside, server: inside, cport: 40000, sport: 80, cseq: 1000, sseq: 500000}
	ip.expect(verdict.In, c.fromClient(syn, 0), verdict.StatusPass, "SYN to :80")
	ip.expect(verdict.Out, c.fromServer(syn|ack, 0), verdict.StatusPass, "SYN-ACK")
	ip.expect(verdict.In, c.fromClient(ack, 100), verdict.StatusPass, "data")

	// pf crashes; its next generation finds the same memory.
	gen2 := newServer(t, state, rules)
	ip.meet(gen2, 1)
	if got := gen2.Filter().Counters().Adopted; got != 1 {
		t.Errorf("generation 2 adopted %d states, want 1", got)
	}
	ip.expect(verdict.Out, c.fromServer(ack, 1000), verdict.StatusPass, "data after the restart")
	ip.expect(verdict.In, c.fromClient(ack, 100), verdict.StatusPass, "data after the restart")
	ip.expect(verdict.In, (&conn{client: outside, server: inside, cport: 40001, sport: 81}).fromClient(syn, 0), verdict.StatusBlock, "SYN to :81")

	// Without the kept states, the same flow is a stranger.
	fresh, _ := keptMemory(t, "")
	ip.meet(newServer(t, fresh, rules), 1)
	ip.expect(verdict.In, c.fromClient(ack, 100), verdict.StatusBlock, "data to a pf that lost the state")
}

// Rules come from the memory init writes: a new pf starts with them, and
// a running one takes new ones init writes (`keepnet pf load`).
func TestServerTakesRulesInitWrites(t *testing.T) {
	state, rules := keptMemory(t, webOnly)
	ip := newFakeIP(t)
	s := newServer(t, state, rules)
	ip.meet(s, 1)
	ping := echo(header.ICMPv4Echo, outside, inside, 1, 1)
	ip.expect(verdict.In, ping, verdict.StatusBlock, "ping, by "+webOnly)
	if err := WriteRules(rules, webOnly+"pass in proto icmp icmp-type echoreq\n"); err != nil {
		t.Fatal(err)
	}
	ip.expect(verdict.In, ping, verdict.StatusPass, "ping, after init wrote a rule for it")
	if got := len(s.Filter().Rules().Rules); got != 2 {
		t.Errorf("%d rules in force, want 2", got)
	}
	st := s.Stats()
	if st.Rules[1].Packets != 1 || st.RulesStamp != 2 {
		t.Errorf("Stats: rule 2 decided %d packets, stamp %d; want 1, 2", st.Rules[1].Packets, st.RulesStamp)
	}
}

// A pf that finds no rules blocks everything: it runs only when the
// appliance filters, and must not pass what it does not know about.
func TestServerWithoutRulesBlocks(t *testing.T) {
	state, rules := keptMemory(t, "")
	ip := newFakeIP(t)
	ip.meet(newServer(t, state, rules), 1)
	ip.expect(verdict.Out, udp(inside, 5000, outside, 53, 10), verdict.StatusBlock, "DNS query")
}

// A question naming a buffer pf does not map, or no question at all, is
// answered, and blocked.
func TestServerRefusesBadQuestions(t *testing.T) {
	state, rules := keptMemory(t, "pass all\n")
	ip := newFakeIP(t)
	ip.meet(newServer(t, state, rules), 1)
	q := verdict.Ask(pool.Ref{Pool: 99, Off: 2048, Len: 60}, 0, header.EthernetMinimumSize, verdict.In, 0)
	q.ID = 1
	if got := ip.call(q); got != verdict.StatusBadRef {
		t.Errorf("a question about pool 99 = %v, want StatusBadRef", got)
	}
	if got := ip.call(channel.Msg{ID: 2, Op: 42}); got != verdict.StatusBadOp {
		t.Errorf("Op 42 = %v, want StatusBadOp", got)
	}
}

// The rules memory has two copies; a copy torn by a write in progress (or
// scribbled on) is never read, the other one is.
func TestRulesMemory(t *testing.T) {
	mem := make([]byte, RulesBytes)
	if _, _, ok := ReadRules(mem); ok {
		t.Fatal("ReadRules of memory never written: ok")
	}
	for i, text := range []string{"pass all\n", "block all\n", "set default block\n"} {
		if err := WriteRules(mem, text); err != nil {
			t.Fatal(err)
		}
		got, stamp, ok := ReadRules(mem)
		if got != text || stamp != uint64(i+1) || !ok || RulesStamp(mem) != stamp {
			t.Fatalf("write %d: ReadRules = %q, %d, %v; want %q, %d, true", i+1, got, stamp, ok, text, i+1)
		}
	}
	// The third write went to copy 0; tear it.
	mem[rcText] ^= 0xff
	if got, stamp, ok := ReadRules(mem); got != "block all\n" || stamp != 2 || !ok {
		t.Errorf("ReadRules with the newest copy torn = %q, %d, %v; want the older copy, 2", got, stamp, ok)
	}
	if err := WriteRules(mem, string(make([]byte, MaxRulesText+1))); err == nil {
		t.Error("WriteRules of a text too long: no error")
	}
}

// A new ip generation replaces the old one's channel: pf unmaps the old
// generation's pools and tells init, which frees them once nobody holds
// them.
func TestServerReleasesOldIPPools(t *testing.T) {
	state, rules := keptMemory(t, webOnly)
	var released []uint32
	s, err := NewServer(ServerOptions{Name: "pf", IP: IPPeer, MaxStates: 64, Release: func(id uint32) { released = append(released, id) }}, state, rules)
	if err != nil {
		t.Fatal(err)
	}
	old, err := pool.Create(8, 4, 2048) // generation 1's, which pf maps
	if err != nil {
		t.Fatal(err)
	}
	_, end1, err := channel.NewLocal(8)
	if err != nil {
		t.Fatal(err)
	}
	s.Attach(&wiring.Peer{Name: IPPeer, Generation: 1, Port: end1, Pools: []*pool.Pool{old}})
	newFakeIP(t).meet(s, 2)
	if len(released) != 1 || released[0] != 8 {
		t.Errorf("released %v after ip's generation 2 came, want generation 1's pool [8]", released)
	}
}
