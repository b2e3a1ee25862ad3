package udp

import (
	"encoding/json"
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
	"keepnet/servers/transport"
	"keepnet/servers/transport/transporttest"
)

// These tests run the process — the core of server.go in the
// servers/transport framework and its loop — against a fake ip and a fake
// syscall, over in-process channels and real pools: the dialogue on the
// wire, message by message.

const waitFor = transporttest.Wait

// process is a running server loop with its fakes.
type process struct {
	t        *testing.T
	s        *transport.Server
	core     *core
	out      *pool.Pool
	ip, sys  *transporttest.Neighbour
	peers    chan *wiring.Peer
	journal  *transporttest.Journal[Record]
	stats    chan any // the last published
	mu       sync.Mutex
	released []uint32
}

func startProcess(t *testing.T, restore []Record) *process {
	t.Helper()
	return startProcessWith(t, restore, false)
}

// startProcessWith is startProcess, with the applications' pools granted
// (transport.Config.Grants) if grants.
func startProcessWith(t *testing.T, restore []Record, grants bool) *process {
	t.Helper()
	out, err := pool.Create(100, 16, 65600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p := &process{t: t, out: out, peers: make(chan *wiring.Peer), journal: transporttest.NewJournal[Record](),
		ip: transporttest.New(t, "ip", 1, 200, 32, 2048), sys: transporttest.New(t, "syscall", 1, 300, 32, 2048)}
	p.stats = make(chan any, 1)
	// Audited every few milliseconds: each test also checks that the
	// audit finds every request udp keeps (one called lost stops the loop).
	c := transport.Config{Name: "udp", Protocol: header.ProtocolUDP, AuditAfter: 10 * time.Millisecond, Grants: grants, Stored: p.journal,
		Publish: func(st any) {
			select {
			case <-p.stats:
			default:
			}
			p.stats <- st
		},
		Release: func(id uint32) { p.mu.Lock(); p.released = append(p.released, id); p.mu.Unlock() }}
	p.s = transport.New(c, 1, out, func(h transport.Host) transport.Protocol {
		p.core = newCore(h, Limits{}, p.journal, 1)
		return p.core
	})
	if _, errs := p.core.table.Restore(restore); errs != nil {
		t.Fatal(errs)
	}
	p.s.Attach(p.ip.Peer)
	p.s.Attach(p.sys.Peer)
	transporttest.Run(t, p.s, p.peers)
	return p
}

// answerAddr plays ip answering udp's OpAddr.
func (p *process) answerAddr(ip *transporttest.Neighbour) { ip.AnswerAddr(ourNet) }

// call sends a socket request from syscall and returns udp's reply.
func (p *process) call(op ops.Op, args ...uint64) channel.Msg {
	p.t.Helper()
	return p.callMsg(op.Msg(args...))
}

// callMsg sends request m from syscall and returns udp's reply.
func (p *process) callMsg(m channel.Msg) channel.Msg {
	p.t.Helper()
	req := p.sys.Send(m)
	r := p.sys.Recv(nil)
	if r.ID != req.ID || ops.OpOf(r) != ops.OpOf(m) {
		p.t.Fatalf("reply to %v id %d: got %v id %d", ops.OpOf(m), req.ID, ops.OpOf(r), r.ID)
	}
	return r
}

// deliver plays IP delivering a datagram, with its addresses and where
// the UDP header starts, and returns udp's status.
func (p *process) deliver(ip *transporttest.Neighbour, pkt []byte) ops.Status {
	p.t.Helper()
	req := ip.Deliver(pkt)
	r := ip.Recv(nil)
	if r.ID != req.ID || ops.OpOf(r) != ops.OpDeliver {
		p.t.Fatalf("reply to OpDeliver %d: got %v id %d", req.ID, ops.OpOf(r), r.ID)
	}
	ip.Pool.Free(req.Ref)
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
	if r, ok := p.journal.Get(1); !ok || r.Local != any7 {
		t.Errorf("journal[1] = %+v, %v; want bound to %v", r, ok, any7)
	}

	// syscall posts a receive; ip delivers; the receive is answered.
	rbuf := p.sys.Buffer(nil, 64)
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{1}})
	p.sys.Quiet(20 * time.Millisecond)
	if st := p.deliver(p.ip, ipUDP(from, addr(ourIP, 7), []byte("ping"), nil)); st != ops.StatusOK {
		t.Errorf("OpDeliver to :7 = %s, want ok", st.Text())
	}
	r := p.sys.Recv(nil)
	if r.ID != recv.ID || ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 4 || replyAddr(r) != from || r.Ref.Off != rbuf.Off {
		t.Errorf("OpRecvFrom reply = %+v, want id %d, ok, 4 bytes in the same buffer, from %v", r, recv.ID, from)
	} else if got := string(p.sys.Bytes(r.Ref)); got != "ping" {
		t.Errorf("received %q, want %q", got, "ping")
	}

	// Nobody on :9: IP is asked to send port unreachable.
	if st := p.deliver(p.ip, ipUDP(from, addr(ourIP, 9), []byte("x"), nil)); st != ops.StatusNoPort {
		t.Errorf("OpDeliver to :9 = %s, want %s", st.Text(), ops.StatusNoPort)
	}

	// syscall sends; ip gets a checksummed segment in udp.out.
	payload := p.sys.Buffer([]byte("pong"), 0)
	send := p.sys.Send(withAddr(channel.Msg{Op: uint16(ops.OpSendTo), Ref: payload, Arg: [4]uint64{1}}, from))
	if r := p.sys.Recv(nil); r.ID != send.ID || ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != any7 || r.Ref != payload {
		t.Errorf("OpSendTo reply = %+v, want ok, local %v, the payload's Ref back", r, any7)
	}
	out := p.ip.Recv(nil)
	if ops.OpOf(out) != ops.OpOutput || ops.GetAddr(out, ops.AtArg0).IP() != peerIP || ops.OutputProto(out) != header.ProtocolUDP || ops.OutputSource(out) != ourNet.Addr() || out.Ref.Pool != p.out.ID() {
		t.Fatalf("request to ip = %+v, want OpOutput from %v to %v, protocol 17, in udp.out", out, ourNet.Addr(), peerIP)
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
	ip2 := transporttest.New(t, "ip", 2, 201, 32, 2048)
	p.peers <- ip2.Peer
	re := ip2.Recv(nil)
	if ops.OpOf(re) != ops.OpOutput || re.Ref != out.Ref || re.ID <= out.ID {
		t.Errorf("resubmitted = %+v, want OpOutput of the same Ref with an id above %d", re, out.ID)
	}
	p.answerAddr(ip2)
	p.ip.SendRaw(out) // the dead generation's late reply: its channel is gone
	ip2.SendRaw(channel.Msg{ID: out.ID, Op: uint16(ops.OpOutput)})
	time.Sleep(20 * time.Millisecond)
	if got := p.out.Available(); got != free {
		t.Errorf("udp.out free = %d after a stale reply, want %d", got, free)
	}
	ip2.SendRaw(re)
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
	recv = p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{1}})
	cl := p.sys.Send(ops.OpClose.Msg(1))
	if r := p.sys.Recv(nil); r.ID != recv.ID || ops.StatusOf(r) != ops.StatusClosed {
		t.Errorf("first reply after OpClose = %+v, want the receive %d, closed", r, recv.ID)
	}
	if r := p.sys.Recv(nil); r.ID != cl.ID || ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("second reply after OpClose = %+v, want the close %d, ok", r, cl.ID)
	}
	if _, ok := p.journal.Get(1); ok {
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
	p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.Buffer(nil, 64), Arg: [4]uint64{1}})
	p.sys.Quiet(10 * time.Millisecond)

	// A new syscall generation: the old one's receive is dropped unanswered;
	// the socket stays, and the next datagram waits for the new generation.
	old := p.sys
	p.sys = transporttest.New(t, "syscall", 2, 301, 32, 2048)
	p.peers <- p.sys.Peer
	if st := p.deliver(p.ip, ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("kept"), nil)); st != ops.StatusOK {
		t.Fatalf("OpDeliver = %s, want ok", st.Text())
	}
	old.Quiet(10 * time.Millisecond)
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.Buffer(nil, 64), Arg: [4]uint64{1}})
	if r := p.sys.Recv(nil); r.ID != recv.ID || ops.StatusOf(r) != ops.StatusOK || string(p.sys.Bytes(r.Ref)) != "kept" {
		t.Errorf("OpRecvFrom from the new generation = %+v, want the queued datagram", r)
	}
	p.mu.Lock()
	if !slices.Contains(p.released, 300) {
		t.Errorf("released pools %v, want syscall generation 1's pool 300", p.released)
	}
	p.mu.Unlock()
	if r := p.call(ops.OpReset); ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("OpReset = %s", ops.StatusOf(r))
	}
	if _, ok := p.journal.Get(1); ok {
		t.Errorf("journal holds socket 1 after OpReset")
	}
}

func TestServerSendWaitsForAddr(t *testing.T) {
	p := startProcess(t, nil)
	p.call(ops.OpOpen, 1, uint64(ops.UDP))
	// IP is not up: it answers OpAddr with an error; udp holds the send
	// and asks again.
	m := p.ip.Recv(nil)
	ops.SetStatus(&m, ops.StatusError)
	p.ip.SendRaw(m)
	send := p.sys.Send(withAddr(channel.Msg{Op: uint16(ops.OpSendTo), Ref: p.sys.Buffer([]byte("early"), 0), Arg: [4]uint64{1}}, addr(peerIP, 53)))
	p.sys.Quiet(20 * time.Millisecond)
	p.answerAddr(p.ip) // the retry
	if r := p.sys.Recv(nil); r.ID != send.ID || ops.StatusOf(r) != ops.StatusOK || replyAddr(r).Port() < EphemeralFirst {
		t.Errorf("held OpSendTo reply = %+v, want ok from an ephemeral port", r)
	}
	if out := p.ip.Recv(nil); ops.OpOf(out) != ops.OpOutput {
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
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.Buffer(nil, 64), Arg: [4]uint64{7}})
	if r := p.sys.Recv(nil); r.ID != recv.ID || ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 1 {
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

// TestServerIPv6: a socket binds to [::] (not to a given IPv6 address:
// the transports do not track IP's IPv6 addresses), takes datagrams of both
// families, and what it sends to IPv6 goes to IP with no source and a
// checksum for IP to fill in (IP picks the source).
func TestServerIPv6(t *testing.T) {
	p := startProcess(t, nil)
	p.answerAddr(p.ip)
	if r := p.call(ops.OpOpen, 1, uint64(ops.UDP)); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpOpen = %s", ops.StatusOf(r))
	}
	if r := p.callMsg(withAddr(ops.OpBind.Msg(1), ops.FromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:7")))); ops.StatusOf(r) != ops.StatusInvalid {
		t.Errorf("OpBind([2001:db8::1]:7) = %v, want StatusInvalid", ops.StatusOf(r))
	}
	any7 := addr(netip.IPv6Unspecified(), 7)
	if r := p.callMsg(withAddr(ops.OpBind.Msg(1), any7)); ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != any7 {
		t.Fatalf("OpBind([::]:7) = %v, %v; want ok, %v", ops.StatusOf(r), replyAddr(r), any7)
	}
	if r, ok := p.journal.Get(1); !ok || r.Local != any7 {
		t.Errorf("recorded %+v, want bound to %v", r, any7)
	}
	peer6 := ops.FromAddrPort(netip.MustParseAddrPort("[fd00:77::2]:5000"))
	payload := p.sys.Buffer([]byte("pong"), 0)
	send := p.sys.Send(withAddr(channel.Msg{Op: uint16(ops.OpSendTo), Ref: payload, Arg: [4]uint64{1}}, peer6))
	if r := p.sys.Recv(nil); r.ID != send.ID || ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("OpSendTo reply = %+v, want ok", r)
	}
	out := p.ip.Recv(nil)
	if ops.OpOf(out) != ops.OpOutput || ops.GetAddr(out, ops.AtArg0).IP() != peer6.IP() || ops.OutputProto(out) != header.ProtocolUDP ||
		ops.OutputSource(out).IsValid() || ops.OutputOffload(out)&ops.OffloadChecksum == 0 {
		t.Fatalf("request to ip = %+v, want OpOutput to %v, protocol 17, no source, checksum by IP", out, peer6)
	}
}

// TestServerConnectIPv6: a socket connected to an IPv6 peer says which
// address it sends from, as ip chose it (OpSource), as Linux's
// getsockname does; ip with no source fails the connect and leaves the
// socket unconnected (it still takes any peer's datagrams); an ip that
// dies before answering is asked again through its next generation.
func TestServerConnectIPv6(t *testing.T) {
	p := startProcess(t, nil)
	p.answerAddr(p.ip)
	peer6 := ops.FromAddrPort(netip.MustParseAddrPort("[2001:db8:99::7]:53"))
	ours6 := netip.MustParseAddr("2001:db8:1::5054:ff:fe12:3456")
	source := func(ip *transporttest.Neighbour, src netip.Addr, st ops.Status) {
		t.Helper()
		q := ip.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpSource })
		if got := ops.GetAddr(q, ops.AtArg0).IP(); got != peer6.IP() {
			t.Fatalf("OpSource for %v, want %v", got, peer6.IP())
		}
		ops.SetStatus(&q, st)
		ops.PutAddr(&q, ops.AtArg0, ops.MakeAddr(src, 0))
		ip.SendRaw(q)
	}
	p.call(ops.OpOpen, 1, uint64(ops.UDP))
	conn := p.sys.Send(withAddr(ops.OpConnect.Msg(1), peer6))
	source(p.ip, netip.Addr{}, ops.StatusNetUnreach)
	if r := p.sys.Reply(conn); ops.StatusOf(r) != ops.StatusNetUnreach {
		t.Errorf("OpConnect with no route = %s, want StatusNetUnreach", ops.StatusOf(r))
	}
	if r, ok := p.journal.Get(1); ok && !r.Peer.IsZero() {
		t.Errorf("after a failed connect the socket is recorded connected to %v", r.Peer)
	}

	conn = p.sys.Send(withAddr(ops.OpConnect.Msg(1), peer6))
	p.ip.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpSource }) // unanswered: ip dies
	ip2 := transporttest.New(t, "ip", 2, 201, 32, 2048)
	p.peers <- ip2.Peer
	source(ip2, ours6, ops.StatusOK)
	r := p.sys.Reply(conn)
	if local := replyAddr(r); ops.StatusOf(r) != ops.StatusOK || local.IP() != ours6 || local.Port() == 0 {
		t.Errorf("OpConnect = %s, local %v; want ok from [%v]:port", ops.StatusOf(r), local, ours6)
	}
	if rec, ok := p.journal.Get(1); !ok || rec.Peer != peer6 {
		t.Errorf("recorded %+v, want connected to %v", rec, peer6)
	}
}

// TestServerDeliveryOutsideItsDatagram: a delivery whose transport header
// offset is outside the datagram IP lent is dropped and counted, and
// answered (IP frees it) without ICMP.
func TestServerDeliveryOutsideItsDatagram(t *testing.T) {
	p := startProcess(t, []Record{{ID: 7, Local: addr(netip.IPv4Unspecified(), 53)}})
	p.answerAddr(p.ip)
	pkt := ipUDP(addr(peerIP, 1), addr(ourIP, 53), []byte("q"), nil)
	for _, off := range []int{0, len(pkt) + 1} {
		ref := p.ip.Buffer(pkt, 0)
		req := p.ip.Send(ops.Deliver(ref, peerIP, ourIP, off))
		if r := p.ip.Recv(nil); r.ID != req.ID || ops.StatusOf(r) != ops.StatusOK {
			t.Errorf("OpDeliver with offset %d = %+v, want ok", off, r)
		}
		p.ip.Pool.Free(ref)
	}
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.Buffer(nil, 64), Arg: [4]uint64{7}})
	p.sys.Quiet(20 * time.Millisecond)
	// The next good one is the first the socket gets.
	if st := p.deliver(p.ip, pkt); st != ops.StatusOK {
		t.Fatalf("OpDeliver = %s, want ok", st.Text())
	}
	if r := p.sys.Recv(nil); r.ID != recv.ID || r.Ref.Len != 1 {
		t.Errorf("OpRecvFrom = %+v, want the one good datagram", r)
	}
	waitUntil(t, "the stats count 2 bad deliveries", func() bool {
		select {
		case st := <-p.stats:
			return st.(Stats).InBadIP == 2 && st.(Stats).InDatagrams == 1
		default:
			return false
		}
	})
}

// TestStatsFieldsAreDistinct: the framework's counters and udp's are
// published as one JSON object; a name in both would drop both.
func TestStatsFieldsAreDistinct(t *testing.T) {
	b, err := json.Marshal(Stats{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"Generation", "InBadIP", "BadRequests", "DroppedRequests", "OutPoolFree", "Sockets", "QueuedBytes", "InQueueDrops", "OutDatagrams"} {
		if _, ok := m[k]; !ok {
			t.Errorf("published stats %s lack %q", b, k)
		}
	}
}

// TestBindAnsweredOnceStored: open, bind and close are answered only once
// the socket's record is in the store (a crash of udp right after must not
// lose a socket the application was told it has, nor bring back one it
// closed); a receive is answered meanwhile.
func TestBindAnsweredOnceStored(t *testing.T) {
	p := startProcess(t, nil)
	p.answerAddr(p.ip)
	if r := p.call(ops.OpOpen, 1, uint64(ops.UDP)); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpOpen = %s", ops.StatusOf(r))
	}
	p.journal.Hold()
	bind := p.sys.Send(withAddr(ops.OpBind.Msg(1), addr(netip.IPv4Unspecified(), 7)))
	p.sys.Quiet(30 * time.Millisecond)
	p.journal.Release()
	if r := p.sys.Reply(bind); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpBind = %s", ops.StatusOf(r))
	}

	rbuf := p.sys.Buffer(nil, 64)
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{1}})
	p.journal.Hold()
	closed := p.sys.Send(ops.OpClose.Msg(1))
	if r := p.sys.Reply(recv); ops.StatusOf(r) != ops.StatusClosed {
		t.Errorf("the posted receive = %s, want %s at once", ops.StatusOf(r), ops.StatusClosed)
	}
	p.sys.Quiet(30 * time.Millisecond)
	p.journal.Release()
	if r := p.sys.Reply(closed); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpClose = %s", ops.StatusOf(r))
	}
}
