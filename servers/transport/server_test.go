package transport_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
	"keepnet/servers/transport/transporttest"
)

// These tests drive the framework with a fake core: what it dispatches,
// and how its Output hands segments to a fake ip.

var (
	ourNet = netip.MustParsePrefix("10.0.2.15/24")
	peerIP = netip.MustParseAddr("10.0.2.2")
)

// fakeCore is a datagram-only core: it answers every socket request
// StatusOK, counting them by op, and on OpSendTo sends the segments
// Arg[1] says, through the Output.
type fakeCore struct {
	h     transport.Host
	calls chan ops.Op
	sends func(h transport.Host)
}

func (c *fakeCore) answer(m channel.Msg) {
	c.calls <- ops.OpOf(m)
	ops.SetStatus(&m, ops.StatusOK)
	c.h.Reply(m)
}

func (c *fakeCore) Open(m channel.Msg)       { c.answer(m) }
func (c *fakeCore) Bind(m channel.Msg)       { c.answer(m) }
func (c *fakeCore) Connect(m channel.Msg)    { c.answer(m) }
func (c *fakeCore) RecvFrom(m channel.Msg)   { c.answer(m) }
func (c *fakeCore) Close(m channel.Msg)      { c.answer(m) }
func (c *fakeCore) Reset(m channel.Msg)      { c.answer(m) }
func (c *fakeCore) Adopt(m channel.Msg)      { c.answer(m) }
func (c *fakeCore) CloseRange(m channel.Msg) { c.answer(m) }
func (c *fakeCore) SendTo(m channel.Msg) {
	c.sends(c.h)
	c.answer(m)
}
func (c *fakeCore) SetAddr(netip.Prefix, transport.Offloads)          {}
func (c *fakeCore) Deliver([]byte, netip.Addr, netip.Addr) ops.Status { return ops.StatusOK }
func (c *fakeCore) DropRequests() int                                 { return 0 }
func (c *fakeCore) Hold()                                             {}
func (c *fakeCore) Flush()                                            {}
func (c *fakeCore) Poll() (bool, time.Time)                           { return false, time.Time{} }
func (c *fakeCore) Stats(common transport.Stats) any                  { return common }

// outPool is the transport's "<name>.out" pool for a test: bufs buffers
// of size bytes, closed when the test ends.
func outPool(t *testing.T, bufs, size int) *pool.Pool {
	t.Helper()
	out, err := pool.Create(100, bufs, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return out
}

type bed struct {
	out     *pool.Pool
	core    *fakeCore
	ip, sys *transporttest.Neighbour
}

func start(t *testing.T, outBufs int, sends func(transport.Host)) *bed {
	t.Helper()
	return startSized(t, outBufs, 2048, sends)
}

// startSized is start with out pool buffers of bufSize bytes.
func startSized(t *testing.T, outBufs, bufSize int, sends func(transport.Host)) *bed {
	t.Helper()
	out := outPool(t, outBufs, bufSize)
	b := &bed{out: out, core: &fakeCore{calls: make(chan ops.Op, 16), sends: sends},
		ip: transporttest.New(t, "ip", 1, 200, 16, 2048), sys: transporttest.New(t, "syscall", 1, 300, 16, 2048)}
	s := transport.New(transport.Config{Name: "fake", Protocol: 99}, 1, out, func(h transport.Host) transport.Protocol {
		b.core.h = h
		return b.core
	})
	s.Attach(b.ip.Peer)
	s.Attach(b.sys.Peer)
	transporttest.Run(t, s, make(chan *wiring.Peer))
	b.ip.AnswerAddr(ourNet)
	return b
}

// TestDispatch: each socket op reaches the core's method for it; a
// stream op on a datagram core, and an op of no socket, are refused
// StatusInvalid without reaching it.
func TestDispatch(t *testing.T) {
	b := start(t, 4, func(transport.Host) {})
	for _, op := range []ops.Op{ops.OpOpen, ops.OpBind, ops.OpConnect, ops.OpRecvFrom, ops.OpClose, ops.OpReset} {
		if r := b.sys.Reply(b.sys.Send(op.Msg(1))); ops.StatusOf(r) != ops.StatusOK {
			t.Errorf("%v = %v, want StatusOK", op, ops.StatusOf(r))
		}
		if got := <-b.core.calls; got != op {
			t.Errorf("%v reached the core's %v", op, got)
		}
	}
	for _, op := range []ops.Op{ops.OpListen, ops.OpAccept, ops.OpShutdown, ops.OpDeliver, ops.Op(0x99)} {
		if r := b.sys.Reply(b.sys.Send(op.Msg(1))); ops.StatusOf(r) != ops.StatusInvalid {
			t.Errorf("%v from syscall = %v, want StatusInvalid", op, ops.StatusOf(r))
		}
	}
	select {
	case op := <-b.core.calls:
		t.Errorf("%v reached a datagram core", op)
	default:
	}
}

// TestOutputHoldsSegmentsInOrder: with two buffers in the out pool, four
// copied segments go two at once, the rest in order as IP answers; a
// segment built in a lent buffer goes without a copy.
func TestOutputHoldsSegmentsInOrder(t *testing.T) {
	b := start(t, 2, func(h transport.Host) {
		for _, s := range []string{"one", "two", "three", "four"} {
			if err := h.Send([]byte(s), ourNet.Addr(), peerIP, transport.Offload{}); err != nil {
				t.Errorf("Send(%q) = %v", s, err)
			}
		}
	})
	isOutput := func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput }
	b.sys.Send(ops.OpSendTo.Msg(1))
	var got []string
	for round := range 2 {
		var pair [2]channel.Msg
		for i := range pair {
			pair[i] = b.ip.Recv(isOutput)
			seg, err := b.out.Bytes(pair[i].Ref)
			if err != nil {
				t.Fatal(err)
			}
			if ops.GetAddr(pair[i], ops.AtArg0).IP() != peerIP || ops.OutputProto(pair[i]) != 99 {
				t.Errorf("OpOutput to %v, protocol %d; want %v, 99", ops.GetAddr(pair[i], ops.AtArg0), ops.OutputProto(pair[i]), peerIP)
			}
			got = append(got, string(seg))
		}
		if round == 0 {
			b.ip.Quiet(20 * time.Millisecond) // both buffers with IP: the rest wait
		}
		for _, m := range pair {
			b.ip.SendRaw(m) // copied out: the buffer comes back
		}
	}
	if want := []string{"one", "two", "three", "four"}; !slices.Equal(got, want) {
		t.Errorf("segments to IP %q, want %q", got, want)
	}
}

// TestOutputBoundsHeldBytes: while every buffer is with IP, segments are
// held up to a bound in bytes (16 MiB), not only in number: past it Send
// refuses, and what was held goes out in order as buffers come back.
func TestOutputBoundsHeldBytes(t *testing.T) {
	const size = 64 << 10
	var held, refused atomic.Int32 // counted by the loop's goroutine
	b := startSized(t, 1, size, func(h transport.Host) {
		seg := make([]byte, size)
		for i := range 300 { // 1 to IP, 256 held (16 MiB), the rest refused
			seg[0] = byte(i)
			switch err := h.Send(seg, ourNet.Addr(), peerIP, transport.Offload{}); {
			case err == nil:
				held.Add(1)
			case errors.Is(err, transport.ErrNoBuffer):
				refused.Add(1)
			default:
				t.Errorf("Send = %v", err)
			}
		}
	})
	isOutput := func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput }
	b.sys.Send(ops.OpSendTo.Msg(1))
	for i := range 257 {
		m := b.ip.Recv(isOutput)
		seg, err := b.out.Bytes(m.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if seg[0] != byte(i) {
			t.Fatalf("segment %d to IP is the %dth sent", i, seg[0])
		}
		b.ip.SendRaw(m)
	}
	b.ip.Quiet(20 * time.Millisecond)
	if held.Load() != 257 || refused.Load() != 43 {
		t.Errorf("%d sends taken, %d refused; want 257 (one in the buffer, 16 MiB held) and 43", held.Load(), refused.Load())
	}
}

func TestOutputLentBuffer(t *testing.T) {
	var lent []byte
	b := start(t, 2, func(h transport.Host) {
		lent = h.Buffer(5)
		copy(lent, "built")
		if err := h.Send(lent, ourNet.Addr(), peerIP, transport.Offload{Checksum: true}); err != nil {
			t.Errorf("Send(lent) = %v", err)
		}
	})
	b.sys.Send(ops.OpSendTo.Msg(1))
	m := b.ip.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput })
	seg, err := b.out.Bytes(m.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if string(seg) != "built" || &seg[0] != &lent[0] || m.Arg[3] != ops.OffloadChecksum {
		t.Errorf("OpOutput %q (in the lent buffer: %v), offload %#x; want %q in it, checksum offload", seg, &seg[0] == &lent[0], m.Arg[3], "built")
	}
}

// TestSyscallRefNotOursStops: a reference from syscall names one of its
// buffers or none (a zero Ref: an application's readiness receive on a
// datagram socket, refused), or one of the two servers is corrupt, and the
// transport stops
// (a panic, which its supervisor restarts) rather than follow it or break
// the connection with a refusal.
func TestSyscallRefNotOursStops(t *testing.T) {
	out := outPool(t, 4, 2048)
	sys := transporttest.New(t, "syscall", 1, 300, 4, 2048)
	other := transporttest.New(t, "syscall", 2, 301, 4, 2048)
	s := transport.New(transport.Config{Name: "fake", Protocol: 99}, 1, out, func(h transport.Host) transport.Protocol {
		return &fakeCore{h: h, calls: make(chan ops.Op, 16), sends: func(transport.Host) {}}
	})
	s.Attach(sys.Peer)
	if b, ok := s.SyscallBytes(sys.Buffer([]byte("ours"), 0)); !ok || string(b) != "ours" {
		t.Fatalf("SyscallBytes(a buffer of syscall's) = %q, %v", b, ok)
	}
	if _, ok := s.SyscallBytes(pool.Ref{}); ok {
		t.Fatalf("SyscallBytes(no buffer) = ok, want refused")
	}
	defer func() {
		r := recover()
		if msg, _ := r.(string); !strings.Contains(msg, "a request from syscall names") {
			t.Errorf("SyscallBytes(another pool's buffer) panicked with %v, want the reference named", r)
		}
	}()
	s.SyscallBytes(other.Buffer([]byte("not ours"), 0))
	t.Errorf("SyscallBytes(another pool's buffer) returned")
}

// TestOutputECN: a segment's ECN codepoint reaches IP in its OpOutput,
// also when it waited for a buffer.
func TestOutputECN(t *testing.T) {
	b := start(t, 1, func(h transport.Host) {
		for _, ecn := range []uint8{ops.ECNECT0, ops.ECNECT0, ops.ECNNotECT} {
			if err := h.Send([]byte("seg"), ourNet.Addr(), peerIP, transport.Offload{Checksum: true, ECN: ecn}); err != nil {
				t.Errorf("Send(ECN %d) = %v", ecn, err)
			}
		}
	})
	b.sys.Send(ops.OpSendTo.Msg(1))
	var got []uint8
	for range 3 {
		m := b.ip.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput })
		got = append(got, ops.OutputECN(m))
		if ops.OutputOffload(m) != ops.OffloadChecksum {
			t.Errorf("offload %#x, want checksum", ops.OutputOffload(m))
		}
		b.ip.SendRaw(m)
	}
	if want := []uint8{ops.ECNECT0, ops.ECNECT0, ops.ECNNotECT}; !slices.Equal(got, want) {
		t.Errorf("ECN of the OpOutputs %v, want %v", got, want)
	}
}

// sharedCore is a fakeCore that reads delivered segments where IP left
// them (transport.SharedReceiver).
type sharedCore struct {
	*fakeCore
	got chan []byte
}

func (c *sharedCore) DeliverShared(shared []byte, _, _ netip.Addr, _ uint8, verified bool) ops.Status {
	c.got <- shared
	return ops.StatusOK
}

// A core that copies out of IP's buffer itself gets the segment there, not
// a private copy of it: tcp copies a received byte once, into the
// connection's buffer.
func TestDeliverShared(t *testing.T) {
	out := outPool(t, 2, 2048)
	ip := transporttest.New(t, "ip", 1, 200, 16, 2048)
	core := &sharedCore{fakeCore: &fakeCore{calls: make(chan ops.Op, 16)}, got: make(chan []byte, 1)}
	s := transport.New(transport.Config{Name: "fake", Protocol: 99}, 1, out, func(h transport.Host) transport.Protocol {
		core.h = h
		return core
	})
	s.Attach(ip.Peer)
	transporttest.Run(t, s, make(chan *wiring.Peer))
	ip.AnswerAddr(ourNet)

	pkt := make([]byte, 28) // an IPv4 header and 8 bytes of protocol 99
	pkt[0], pkt[9] = 0x45, 99
	copy(pkt[12:], ourNet.Addr().AsSlice())
	copy(pkt[16:], peerIP.AsSlice())
	copy(pkt[20:], "segment!")
	req := ip.Deliver(pkt)
	got := <-core.got
	if string(got) != "segment!" {
		t.Fatalf("the core got %q, want %q", got, "segment!")
	}
	ip.Bytes(req.Ref)[20] = 'S' // IP's memory, as the core sees it
	if string(got) != "Segment!" {
		t.Errorf("after IP wrote its buffer the core's segment is %q, want %q: a copy, not IP's buffer", got, "Segment!")
	}
}

// grantCore is a fakeCore for grants: a send reads its buffer (recorded),
// a receive is posted until DropPool answers it.
type grantCore struct {
	*fakeCore
	sent    chan string
	posted  []channel.Msg
	dropped chan uint32
}

func (c *grantCore) SendTo(m channel.Msg) {
	b, ok := c.h.SyscallBytes(m.Ref)
	if !ok {
		c.h.Invalid(m)
		return
	}
	c.sent <- string(b)
	c.answer(m)
}

func (c *grantCore) RecvFrom(m channel.Msg) { c.posted = append(c.posted, m) }

func (c *grantCore) DropPool(id uint32) int {
	c.dropped <- id
	n := 0
	c.posted = slices.DeleteFunc(c.posted, func(m channel.Msg) bool {
		if m.Ref.Pool != id {
			return false
		}
		ops.SetStatus(&m, ops.StatusClosed)
		c.h.Reply(m)
		n++
		return true
	})
	return n
}

// grantPool is generation gen of an application's pool id, as a grant of
// it (wiring.TypeGrant) reaches a transport.
func grantPool(t *testing.T, id uint32, gen int) (*pool.Pool, *wiring.Peer) {
	own, err := pool.Create(id, 4, 2048)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	mapped, err := pool.Open(id, own.Fd(), 4, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return own, &wiring.Peer{Name: "app", Generation: gen, Pools: []*pool.Pool{mapped}}
}

// With Config.Grants a transport maps the applications' pools it is
// granted: a request with a buffer in one reaches the core, which reads
// it there; one with a buffer in a pool not granted (yet) is answered
// StatusNoPool without reaching it; when the application's next
// generation is granted, the requests into the old pool are answered
// (DropPool) before that pool is unmapped and released.
func TestGrants(t *testing.T) {
	out := outPool(t, 2, 2048)
	ip := transporttest.New(t, "ip", 1, 200, 16, 2048)
	sys := transporttest.New(t, "syscall", 1, 300, 16, 2048)
	core := &grantCore{fakeCore: &fakeCore{calls: make(chan ops.Op, 16)}, sent: make(chan string, 4), dropped: make(chan uint32, 4)}
	released := make(chan uint32, 4)
	s := transport.New(transport.Config{Name: "fake", Protocol: 99, Grants: true, Release: func(id uint32) { released <- id }}, 1, out,
		func(h transport.Host) transport.Protocol {
			core.h = h
			return core
		})
	s.Attach(ip.Peer)
	s.Attach(sys.Peer)
	peers := make(chan *wiring.Peer)
	transporttest.Run(t, s, peers)
	ip.AnswerAddr(ourNet)

	app1, grant1 := grantPool(t, 400, 1)
	peers <- grant1
	ref, _ := app1.Alloc()
	buf, _ := app1.Bytes(ref)
	ref.Len = uint32(copy(buf, "the app's own bytes"))
	if r := sys.Reply(sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: ref})); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("a send from the granted pool answered %s", ops.StatusOf(r))
	}
	if got := <-core.sent; got != "the app's own bytes" {
		t.Errorf("the core read %q, want the application's buffer", got)
	}

	stranger := pool.Ref{Pool: 401, Len: 10}
	for _, op := range []ops.Op{ops.OpSendTo, ops.OpRecvFrom} {
		if r := sys.Reply(sys.Send(channel.Msg{Op: uint16(op), Ref: stranger})); ops.StatusOf(r) != ops.StatusNoPool {
			t.Errorf("%v with a buffer in a pool not granted answered %s, want StatusNoPool", op, ops.StatusOf(r))
		}
	}

	recv, _ := app1.Alloc()
	posted := sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: recv})
	sys.Quiet(20 * time.Millisecond) // posted, unanswered
	_, grant2 := grantPool(t, 402, 2)
	peers <- grant2
	if r := sys.Reply(posted); ops.StatusOf(r) != ops.StatusClosed {
		t.Errorf("the receive into the old generation's pool answered %s, want StatusClosed", ops.StatusOf(r))
	}
	if id := <-core.dropped; id != 400 {
		t.Errorf("DropPool(%d), want the old pool 400", id)
	}
	if id := <-released; id != 400 {
		t.Errorf("released pool %d, want 400", id)
	}
}

// gateJournal is a journal whose changes the test declares stored.
type gateJournal struct{ last, stored atomic.Uint64 }

func (g *gateJournal) Last() uint64         { return g.last.Load() }
func (g *gateJournal) Stored(n uint64) bool { return n <= g.stored.Load() }

// savingCore answers a bind once its record is stored, every other
// request at once.
type savingCore struct {
	fakeCore
	j *gateJournal
}

func (c *savingCore) Bind(m channel.Msg) {
	c.j.last.Add(1) // the record of the bound socket, queued
	ops.SetStatus(&m, ops.StatusOK)
	c.h.ReplyStored(m)
}

// TestReplyStored: an answer given with ReplyStored leaves only once the
// journal has stored what was queued before it; other answers are not
// held behind it; an answer held when SYSCALL restarts goes with its
// generation (the reissue is answered by the new one).
func TestReplyStored(t *testing.T) {
	out := outPool(t, 4, 2048)
	j := &gateJournal{}
	core := &savingCore{fakeCore: fakeCore{calls: make(chan ops.Op, 16)}, j: j}
	ip, sys := transporttest.New(t, "ip", 1, 200, 16, 2048), transporttest.New(t, "syscall", 1, 300, 16, 2048)
	s := transport.New(transport.Config{Name: "fake", Protocol: 99, Stored: j}, 1, out, func(h transport.Host) transport.Protocol {
		core.h = h
		return core
	})
	s.Attach(ip.Peer)
	s.Attach(sys.Peer)
	peers := make(chan *wiring.Peer, 1)
	transporttest.Run(t, s, peers)
	ip.AnswerAddr(ourNet)

	bind := sys.Send(ops.OpBind.Msg(1))
	open := sys.Send(ops.OpOpen.Msg(2))
	if r := sys.Reply(open); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("open = %v", ops.StatusOf(r))
	}
	sys.Quiet(50 * time.Millisecond) // the bind's record is not stored
	j.stored.Store(1)
	if r := sys.Reply(bind); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("bind = %v", ops.StatusOf(r))
	}

	sys.Send(ops.OpBind.Msg(3)) // held: record 2 is not stored
	<-core.calls                // the open's
	sys.Quiet(20 * time.Millisecond)
	sys2 := transporttest.New(t, "syscall", 2, 301, 16, 2048)
	peers <- sys2.Peer
	reissued := sys2.Send(ops.OpBind.Msg(3))
	j.stored.Store(3)
	if r := sys2.Reply(reissued); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("reissued bind = %v", ops.StatusOf(r))
	}
	sys2.Quiet(20 * time.Millisecond) // the first generation's answer is not sent here
	sys.Quiet(20 * time.Millisecond)  // nor to the dead generation
}
