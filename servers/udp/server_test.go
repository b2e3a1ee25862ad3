package udp

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// These tests run the process loop (server.go) against a fake ip and a fake
// syscall, over in-process channels and real pools: the dialogue on the
// wire, message by message.

const waitFor = 5 * time.Second

// fakePeer is one generation of a neighbour, played by the test.
type fakePeer struct {
	t      *testing.T
	ep     *channel.Endpoint // the fake's end
	pool   *pool.Pool        // its own pool (ip.up or syscall.io)
	peer   *wiring.Peer      // what the server is handed
	nextID uint64
}

func newFakePeer(t *testing.T, name string, gen int, poolID uint32) *fakePeer {
	t.Helper()
	a, b, err := channel.NewLocal(256)
	if err != nil {
		t.Fatal(err)
	}
	const bufs, size = 32, 2048
	own, err := pool.Create(poolID, bufs, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	mapped, err := pool.Open(poolID, own.Fd(), bufs, size) // the server's mapping
	if err != nil {
		t.Fatal(err)
	}
	return &fakePeer{t: t, ep: a, pool: own, peer: &wiring.Peer{Name: name, Generation: gen, Port: b, Pools: []*pool.Pool{mapped}},
		nextID: uint64(gen) << 32}
}

// send sends a request with a fresh id and returns it.
func (f *fakePeer) send(m channel.Msg) channel.Msg {
	f.t.Helper()
	f.nextID++
	m.ID = f.nextID
	f.sendRaw(m)
	return m
}

func (f *fakePeer) sendRaw(m channel.Msg) {
	f.t.Helper()
	deadline := time.Now().Add(waitFor)
	for f.ep.Send(m) == 0 {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: channel full", f.peer.Name)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits for the next message from the server.
func (f *fakePeer) recv() channel.Msg {
	f.t.Helper()
	var in [1]channel.Msg
	deadline := time.Now().Add(waitFor)
	for f.ep.Recv(in[:]) == 0 {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: no message from udp within %v", f.peer.Name, waitFor)
		}
		f.ep.Wait(10 * time.Millisecond)
	}
	return in[0]
}

// quiet checks that the server sends nothing for a while.
func (f *fakePeer) quiet(d time.Duration) {
	f.t.Helper()
	var in [1]channel.Msg
	time.Sleep(d)
	if f.ep.Recv(in[:]) != 0 {
		f.t.Errorf("%s: unexpected message from udp: %+v", f.peer.Name, in[0])
	}
}

// buffer puts data in a fresh buffer of the fake's pool; size, if larger,
// is the Ref's length (an empty receive buffer).
func (f *fakePeer) buffer(data []byte, size int) pool.Ref {
	f.t.Helper()
	ref, ok := f.pool.Alloc()
	if !ok {
		f.t.Fatalf("%s: pool exhausted", f.peer.Name)
	}
	b, _ := f.pool.Bytes(ref)
	ref.Len = uint32(max(copy(b, data), size))
	return ref
}

func (f *fakePeer) bytes(ref pool.Ref) []byte {
	b, err := f.pool.Bytes(ref)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// syncJournal is a Journal the test reads while the loop writes it.
type syncJournal struct {
	mu   sync.Mutex
	recs map[uint64]Record
}

func (j *syncJournal) Save(r Record)    { j.mu.Lock(); j.recs[r.ID] = r; j.mu.Unlock() }
func (j *syncJournal) Forget(id uint64) { j.mu.Lock(); delete(j.recs, id); j.mu.Unlock() }
func (j *syncJournal) get(id uint64) (Record, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.recs[id]
	return r, ok
}

// process is a running server loop with its fakes.
type process struct {
	t        *testing.T
	s        *server
	out      *pool.Pool
	ip, sys  *fakePeer
	peers    chan *wiring.Peer
	journal  *syncJournal
	mu       sync.Mutex
	released []uint32
}

func startProcess(t *testing.T, restore []Record) *process {
	t.Helper()
	out, err := pool.Create(100, 16, 65600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p := &process{t: t, out: out, peers: make(chan *wiring.Peer), journal: &syncJournal{recs: map[uint64]Record{}},
		ip: newFakePeer(t, "ip", 1, 200), sys: newFakePeer(t, "syscall", 1, 300)}
	p.s = newServer(ServerOptions{Name: "udp"}, 1, out, p.journal, nil)
	p.s.release = func(id uint32) { p.mu.Lock(); p.released = append(p.released, id); p.mu.Unlock() }
	if _, errs := p.s.table.Restore(restore); errs != nil {
		t.Fatal(errs)
	}
	p.s.attach(p.ip.peer)
	p.s.attach(p.sys.peer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.s.run(ctx, peerSource{C: p.peers, Fd: -1}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run() = %v", err)
		}
	})
	return p
}

// answerAddr plays IP answering udp's OpAddr.
func (p *process) answerAddr(ip *fakePeer) {
	p.t.Helper()
	m := ip.recv()
	if ops.OpOf(m) != ops.OpAddr {
		p.t.Fatalf("first request to ip: %v, want OpAddr", ops.OpOf(m))
	}
	ops.SetAddrReply(&m, ourNet, 0)
	ip.sendRaw(m)
}

// call sends a socket request from syscall and returns udp's reply.
func (p *process) call(op ops.Op, args ...uint64) channel.Msg {
	p.t.Helper()
	return p.callMsg(op.Msg(args...))
}

// callMsg sends request m from syscall and returns udp's reply.
func (p *process) callMsg(m channel.Msg) channel.Msg {
	p.t.Helper()
	req := p.sys.send(m)
	r := p.sys.recv()
	if r.ID != req.ID || ops.OpOf(r) != ops.OpOf(m) {
		p.t.Fatalf("reply to %v id %d: got %v id %d", ops.OpOf(m), req.ID, ops.OpOf(r), r.ID)
	}
	return r
}

// deliver plays IP delivering a datagram and returns udp's status.
func (p *process) deliver(ip *fakePeer, pkt []byte) ops.Status {
	p.t.Helper()
	req := ip.send(channel.Msg{Op: uint16(ops.OpDeliver), Ref: ip.buffer(pkt, 0)})
	r := ip.recv()
	if r.ID != req.ID || ops.OpOf(r) != ops.OpDeliver {
		p.t.Fatalf("reply to OpDeliver %d: got %v id %d", req.ID, ops.OpOf(r), r.ID)
	}
	ip.pool.Free(req.Ref)
	return ops.StatusOf(r)
}

func TestServerDialogue(t *testing.T) {
	p := startProcess(t, nil)
	p.answerAddr(p.ip)
	from := addr(peerIP, 5000)
	any7 := addr(netip.IPv4Unspecified(), 7)

	if r := p.call(ops.OpOpen, 1, uint64(ops.UDP)); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpOpen = %s", ops.StatusOf(r))
	}
	if r := p.callMsg(withAddr(ops.OpBind.Msg(1), any7)); ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != any7 {
		t.Fatalf("OpBind(:7) = %s, %v; want ok, %v", ops.StatusOf(r), replyAddr(r), any7)
	}
	if r, ok := p.journal.get(1); !ok || r.Local != any7 {
		t.Errorf("journal[1] = %+v, %v; want bound to %v", r, ok, any7)
	}

	// syscall posts a receive; ip delivers; the receive is answered.
	rbuf := p.sys.buffer(nil, 64)
	recv := p.sys.send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{1}})
	p.sys.quiet(20 * time.Millisecond)
	if st := p.deliver(p.ip, ipUDP(from, addr(ourIP, 7), []byte("ping"), nil)); st != ops.StatusOK {
		t.Errorf("OpDeliver to :7 = %s, want ok", st.Text())
	}
	r := p.sys.recv()
	if r.ID != recv.ID || ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 4 || replyAddr(r) != from || r.Ref.Off != rbuf.Off {
		t.Errorf("OpRecvFrom reply = %+v, want id %d, ok, 4 bytes in the same buffer, from %v", r, recv.ID, from)
	} else if got := string(p.sys.bytes(r.Ref)); got != "ping" {
		t.Errorf("received %q, want %q", got, "ping")
	}

	// Nobody on :9: IP is asked to send port unreachable.
	if st := p.deliver(p.ip, ipUDP(from, addr(ourIP, 9), []byte("x"), nil)); st != ops.StatusNoPort {
		t.Errorf("OpDeliver to :9 = %s, want %s", st.Text(), ops.StatusNoPort)
	}

	// syscall sends; ip gets a checksummed segment in udp.out.
	payload := p.sys.buffer([]byte("pong"), 0)
	send := p.sys.send(withAddr(channel.Msg{Op: uint16(ops.OpSendTo), Ref: payload, Arg: [4]uint64{1}}, from))
	if r := p.sys.recv(); r.ID != send.ID || ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != any7 || r.Ref != payload {
		t.Errorf("OpSendTo reply = %+v, want ok, local %v, the payload's Ref back", r, any7)
	}
	out := p.ip.recv()
	if ops.OpOf(out) != ops.OpOutput || ops.GetAddr(out, ops.AtArg0).IP() != peerIP || out.Arg[2] != header.ProtocolUDP || out.Ref.Pool != p.out.ID() {
		t.Fatalf("request to ip = %+v, want OpOutput to %v, protocol 17, in udp.out", out, peerIP)
	}
	seg, err := p.out.Bytes(out.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := header.ValidateUDP(seg, ourIP, peerIP); err != nil {
		t.Errorf("ValidateUDP(segment) = %v, want nil", err)
	} else if u := header.UDP(seg); u.SrcPort() != 7 || u.DstPort() != 5000 || string(u.Payload()) != "pong" {
		t.Errorf("segment %d -> %d %q, want 7 -> 5000 %q", u.SrcPort(), u.DstPort(), u.Payload(), "pong")
	}
	free := p.out.Len() - 1
	if got := p.out.Available(); got != free {
		t.Errorf("udp.out free = %d while IP holds the segment, want %d", got, free)
	}

	// ip restarts before answering: the OpOutput is resubmitted to the new
	// generation with a new id; a late reply to the old id is ignored.
	ip2 := newFakePeer(t, "ip", 2, 201)
	p.peers <- ip2.peer
	re := ip2.recv()
	if ops.OpOf(re) != ops.OpOutput || re.Ref != out.Ref || re.ID <= out.ID {
		t.Errorf("resubmitted = %+v, want OpOutput of the same Ref with an id above %d", re, out.ID)
	}
	p.answerAddr(ip2)
	p.ip.sendRaw(out) // the dead generation's late reply: its channel is gone
	ip2.sendRaw(channel.Msg{ID: out.ID, Op: uint16(ops.OpOutput)})
	time.Sleep(20 * time.Millisecond)
	if got := p.out.Available(); got != free {
		t.Errorf("udp.out free = %d after a stale reply, want %d", got, free)
	}
	ip2.sendRaw(re)
	waitUntil(t, "the segment is freed", func() bool { return p.out.Available() == p.out.Len() })
	p.mu.Lock()
	if !slices.Contains(p.released, 200) {
		t.Errorf("released pools %v, want ip generation 1's pool 200", p.released)
	}
	p.mu.Unlock()
	if st := p.deliver(ip2, ipUDP(from, addr(ourIP, 9), []byte("x"), nil)); st != ops.StatusNoPort {
		t.Errorf("OpDeliver from ip generation 2 = %s, want %s", st.Text(), ops.StatusNoPort)
	}

	// Close answers the posted receive first.
	recv = p.sys.send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{1}})
	cl := p.sys.send(ops.OpClose.Msg(1))
	if r := p.sys.recv(); r.ID != recv.ID || ops.StatusOf(r) != ops.StatusClosed {
		t.Errorf("first reply after OpClose = %+v, want the receive %d, closed", r, recv.ID)
	}
	if r := p.sys.recv(); r.ID != cl.ID || ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("second reply after OpClose = %+v, want the close %d, ok", r, cl.ID)
	}
	if _, ok := p.journal.get(1); ok {
		t.Errorf("journal still holds socket 1 after OpClose")
	}
	if r := p.call(0x99); ops.StatusOf(r) != ops.StatusInvalid {
		t.Errorf("unknown op = %s, want invalid", ops.StatusOf(r))
	}
}

func TestServerSyscallRestart(t *testing.T) {
	p := startProcess(t, nil)
	p.answerAddr(p.ip)
	p.call(ops.OpOpen, 1, uint64(ops.UDP))
	p.callMsg(withAddr(ops.OpBind.Msg(1), addr(netip.IPv4Unspecified(), 7)))
	p.sys.send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.buffer(nil, 64), Arg: [4]uint64{1}})
	p.sys.quiet(10 * time.Millisecond)

	// A new syscall generation: the old one's receive is dropped unanswered;
	// the socket stays, and the next datagram waits for the new generation.
	old := p.sys
	p.sys = newFakePeer(t, "syscall", 2, 301)
	p.peers <- p.sys.peer
	if st := p.deliver(p.ip, ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("kept"), nil)); st != ops.StatusOK {
		t.Fatalf("OpDeliver = %s, want ok", st.Text())
	}
	old.quiet(10 * time.Millisecond)
	recv := p.sys.send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.buffer(nil, 64), Arg: [4]uint64{1}})
	if r := p.sys.recv(); r.ID != recv.ID || ops.StatusOf(r) != ops.StatusOK || string(p.sys.bytes(r.Ref)) != "kept" {
		t.Errorf("OpRecvFrom from the new generation = %+v, want the queued datagram", r)
	}
	p.mu.Lock()
	if !slices.Contains(p.released, 300) {
		t.Errorf("released pools %v, want syscall generation 1's pool 300", p.released)
	}
	p.mu.Unlock()
	// A Ref into the old generation's pool is refused, not followed.
	stale := p.sys.send(withAddr(channel.Msg{Op: uint16(ops.OpSendTo), Ref: old.buffer([]byte("x"), 0), Arg: [4]uint64{1}}, addr(peerIP, 1)))
	if got := p.sys.recv(); got.ID != stale.ID || ops.StatusOf(got) != ops.StatusInvalid {
		t.Errorf("OpSendTo with a stale Ref = %+v, want invalid", got)
	}
	if r := p.call(ops.OpReset); ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("OpReset = %s", ops.StatusOf(r))
	}
	if _, ok := p.journal.get(1); ok {
		t.Errorf("journal holds socket 1 after OpReset")
	}
}

func TestServerSendWaitsForAddr(t *testing.T) {
	p := startProcess(t, nil)
	p.call(ops.OpOpen, 1, uint64(ops.UDP))
	// IP is not up: it answers OpAddr with an error; udp holds the send
	// and asks again.
	m := p.ip.recv()
	ops.SetStatus(&m, ops.StatusError)
	p.ip.sendRaw(m)
	send := p.sys.send(withAddr(channel.Msg{Op: uint16(ops.OpSendTo), Ref: p.sys.buffer([]byte("early"), 0), Arg: [4]uint64{1}}, addr(peerIP, 53)))
	p.sys.quiet(20 * time.Millisecond)
	p.answerAddr(p.ip) // the retry
	if r := p.sys.recv(); r.ID != send.ID || ops.StatusOf(r) != ops.StatusOK || replyAddr(r).Port() < EphemeralFirst {
		t.Errorf("held OpSendTo reply = %+v, want ok from an ephemeral port", r)
	}
	if out := p.ip.recv(); ops.OpOf(out) != ops.OpOutput {
		t.Errorf("request to ip = %+v, want OpOutput", out)
	}
}

// TestServerRestored: a udp restarted with its records serves the old
// sockets at once.
func TestServerRestored(t *testing.T) {
	p := startProcess(t, []Record{{ID: 7, Local: addr(netip.IPv4Unspecified(), 53)}})
	p.answerAddr(p.ip)
	if st := p.deliver(p.ip, ipUDP(addr(peerIP, 1), addr(ourIP, 53), []byte("q"), nil)); st != ops.StatusOK {
		t.Errorf("OpDeliver to a restored socket = %s, want ok", st.Text())
	}
	recv := p.sys.send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.buffer(nil, 64), Arg: [4]uint64{7}})
	if r := p.sys.recv(); r.ID != recv.ID || ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 1 {
		t.Errorf("OpRecvFrom on a restored socket = %+v, want the datagram", r)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestServerIPv6IsAFNoSupport: udp carries IPv4 only; an IPv6 address in a
// request is StatusAFNoSupport, never read as 0.0.0.0, and changes nothing.
func TestServerIPv6IsAFNoSupport(t *testing.T) {
	p := startProcess(t, nil)
	p.answerAddr(p.ip)
	v6 := ops.FromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:7"))
	if r := p.call(ops.OpOpen, 1, uint64(ops.UDP)); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpOpen = %s", ops.StatusOf(r))
	}
	for _, op := range []ops.Op{ops.OpBind, ops.OpConnect, ops.OpSendTo} {
		m := withAddr(op.Msg(1), v6)
		if op == ops.OpSendTo {
			m.Ref = p.sys.buffer([]byte("x"), 0)
		}
		if r := p.callMsg(m); ops.StatusOf(r) != ops.StatusAFNoSupport {
			t.Errorf("%v([2001:db8::1]:7) = %v, want StatusAFNoSupport", op, ops.StatusOf(r))
		}
	}
	if r, ok := p.journal.get(1); ok && (!r.Local.IsZero() || !r.Peer.IsZero()) {
		t.Errorf("a socket refused IPv6 addresses was recorded as %+v, want unbound", r)
	}
	any7 := addr(netip.IPv4Unspecified(), 7)
	if r := p.callMsg(withAddr(ops.OpBind.Msg(1), any7)); ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != any7 {
		t.Errorf("OpBind(:7) after the refusals = %v, %v; want ok, %v", ops.StatusOf(r), replyAddr(r), any7)
	}
}
