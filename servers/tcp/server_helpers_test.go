package tcp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// The server tests run the process loop (server.go) against a fake ip and
// a fake syscall, over in-process channels and real pools: the dialogue on
// the wire, message by message, with the segments the fake ip sees.

const srvWait = 5 * time.Second

var (
	srvNet = netip.MustParsePrefix("10.0.2.15/24") // the server's address, as ip tells it
	srvIP  = srvNet.Addr()
	cliNet = netip.MustParsePrefix("10.0.2.2/24") // the remote end
	cliIP  = cliNet.Addr()
)

func sockAddr(ip netip.Addr, port uint16) ops.Addr { return ops.MakeAddr(ip, port) }

// fakeNeighbour is one generation of ip or syscall, played by the test.
type fakeNeighbour struct {
	t      *testing.T
	name   string
	ep     *channel.Endpoint // the fake's end
	pool   *pool.Pool        // its own pool (ip.up or syscall.io)
	peer   *wiring.Peer      // what the server is handed
	nextID uint64
	stash  []channel.Msg // received, not yet asked for
}

func newFakeNeighbour(t *testing.T, name string, gen int, poolID uint32, bufs, size int) *fakeNeighbour {
	t.Helper()
	a, b, err := channel.NewLocal(1024)
	if err != nil {
		t.Fatal(err)
	}
	own, err := pool.Create(poolID, bufs, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	mapped, err := pool.Open(poolID, own.Fd(), bufs, size) // the server's mapping
	if err != nil {
		t.Fatal(err)
	}
	return &fakeNeighbour{t: t, name: name, ep: a, pool: own,
		peer:   &wiring.Peer{Name: name, Generation: gen, Port: b, Pools: []*pool.Pool{mapped}},
		nextID: uint64(gen) << 32}
}

// send sends a request with a fresh id and returns it.
func (f *fakeNeighbour) send(m channel.Msg) channel.Msg {
	f.t.Helper()
	f.nextID++
	m.ID = f.nextID
	f.sendRaw(m)
	return m
}

func (f *fakeNeighbour) sendRaw(m channel.Msg) {
	f.t.Helper()
	if err := f.trySend(m); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeNeighbour) trySend(m channel.Msg) error {
	deadline := time.Now().Add(srvWait)
	for f.ep.Send(m) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: channel full", f.name)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// recv waits for the next message from the server that match accepts (nil:
// any); the others are kept for later calls.
func (f *fakeNeighbour) recv(match func(channel.Msg) bool) channel.Msg {
	f.t.Helper()
	m, err := f.tryRecv(match)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *fakeNeighbour) tryRecv(match func(channel.Msg) bool) (channel.Msg, error) {
	deadline := time.Now().Add(srvWait)
	for {
		for i, m := range f.stash {
			if match == nil || match(m) {
				f.stash = append(f.stash[:i], f.stash[i+1:]...)
				return m, nil
			}
		}
		var in [16]channel.Msg
		n := f.ep.Recv(in[:])
		if n == 0 {
			if time.Now().After(deadline) {
				return channel.Msg{}, fmt.Errorf("%s: no message from tcp within %v", f.name, srvWait)
			}
			f.ep.Wait(time.Millisecond)
		}
		f.stash = append(f.stash, in[:n]...)
	}
}

// reply waits for the reply to req.
func (f *fakeNeighbour) reply(req channel.Msg) channel.Msg {
	f.t.Helper()
	return f.recv(func(m channel.Msg) bool { return m.ID == req.ID && m.Op == req.Op })
}

// quiet checks that the server sends nothing for a while.
func (f *fakeNeighbour) quiet(d time.Duration) {
	f.t.Helper()
	time.Sleep(d)
	var in [16]channel.Msg
	f.stash = append(f.stash, in[:f.ep.Recv(in[:])]...)
	if len(f.stash) != 0 {
		f.t.Errorf("%s: unexpected message from tcp: %+v", f.name, f.stash[0])
	}
}

// buffer puts data in a fresh buffer of the fake's pool; size, if larger,
// is the Ref's length (an empty receive buffer).
func (f *fakeNeighbour) buffer(data []byte, size int) pool.Ref {
	f.t.Helper()
	ref, ok := f.pool.Alloc()
	if !ok {
		f.t.Fatalf("%s: pool exhausted", f.name)
	}
	b, _ := f.pool.Bytes(ref)
	ref.Len = uint32(max(copy(b, data), size))
	return ref
}

func (f *fakeNeighbour) bytes(ref pool.Ref) []byte {
	f.t.Helper()
	b, err := f.pool.Bytes(ref)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// memListeners is a Journal the test reads while the loop writes it.
type memListeners struct {
	mu   sync.Mutex
	recs map[uint64]ListenerRecord
}

func (j *memListeners) Save(r ListenerRecord) { j.mu.Lock(); j.recs[r.ID] = r; j.mu.Unlock() }
func (j *memListeners) Forget(id uint64)      { j.mu.Lock(); delete(j.recs, id); j.mu.Unlock() }
func (j *memListeners) get(id uint64) (ListenerRecord, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.recs[id]
	return r, ok
}

// lockedClock is a fake clock the test advances while the loop reads it.
type lockedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *lockedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *lockedClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// proc is a running server loop with its fakes.
type proc struct {
	t       *testing.T
	s       *server
	out     *pool.Pool // tcp.out
	ip, sys *fakeNeighbour
	peers   chan *wiring.Peer
	journal *memListeners
	stats   chan Stats
	stop    func() // ends the loop (idempotent); then s may be read
}

type procOptions struct {
	restore []ListenerRecord
	clock   Clock
	outBufs int // tcp.out buffers; 0: 16
	ioSize  int // syscall.io buffer size; 0: 2048
	poolIDs uint32
	sendBuf int // the Table's SendBuffer; 0: its default
}

func startProc(t *testing.T, o procOptions) *proc {
	t.Helper()
	if o.outBufs == 0 {
		o.outBufs = 16
	}
	if o.ioSize == 0 {
		o.ioSize = 2048
	}
	out, err := pool.Create(o.poolIDs+100, o.outBufs, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p := &proc{t: t, out: out, peers: make(chan *wiring.Peer), journal: &memListeners{recs: map[uint64]ListenerRecord{}},
		ip:    newFakeNeighbour(t, "ip", 1, o.poolIDs+200, 256, 2048),
		sys:   newFakeNeighbour(t, "syscall", 1, o.poolIDs+300, 16, o.ioSize),
		stats: make(chan Stats, 1)}
	p.s = newServer(ServerOptions{Name: "tcp", Config: Config{Clock: o.clock, Seed: 1, SendBuffer: o.sendBuf}}, 1, out, p.journal,
		func(st Stats) {
			select {
			case p.stats <- st:
			default:
			}
		})
	if _, errs := p.s.restore(o.restore); errs != nil {
		t.Fatal(errs)
	}
	p.s.attach(p.ip.peer)
	p.s.attach(p.sys.peer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.s.run(ctx, peerSource{C: p.peers, Fd: -1}) }()
	p.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run() = %v", err)
		}
	})
	t.Cleanup(p.stop)
	return p
}

// answerAddr plays IP answering tcp's OpAddr.
func (p *proc) answerAddr() {
	p.t.Helper()
	m := p.ip.recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpAddr })
	ops.SetAddrReply(&m, srvNet, 0)
	p.ip.sendRaw(m)
}

// call sends a socket request from syscall and returns tcp's reply.
func (p *proc) call(op ops.Op, args ...uint64) channel.Msg {
	p.t.Helper()
	return p.callMsg(op.Msg(args...))
}

// callMsg sends request m from syscall and returns tcp's reply.
func (p *proc) callMsg(m channel.Msg) channel.Msg {
	p.t.Helper()
	return p.sys.reply(p.sys.send(m))
}

// mustCall is call expecting StatusOK.
func (p *proc) mustCall(op ops.Op, args ...uint64) channel.Msg {
	p.t.Helper()
	return p.mustCallMsg(op.Msg(args...))
}

// mustCallMsg is callMsg expecting StatusOK.
func (p *proc) mustCallMsg(m channel.Msg) channel.Msg {
	p.t.Helper()
	r := p.callMsg(m)
	if ops.StatusOf(r) != ops.StatusOK {
		p.t.Fatalf("%v %v = %s, want ok", ops.OpOf(m), m.Arg, ops.StatusOf(r))
	}
	return r
}

// withAddr is socket request m with address a (ops.AtArg1).
func withAddr(m channel.Msg, a ops.Addr) channel.Msg {
	ops.PutAddr(&m, ops.AtArg1, a)
	return m
}

// replyAddr is the first address a reply carries (ops.AtArg0); replyAddr2
// the second (ops.AtArg2).
func replyAddr(r channel.Msg) ops.Addr  { return ops.GetAddr(r, ops.AtArg0) }
func replyAddr2(r channel.Msg) ops.Addr { return ops.GetAddr(r, ops.AtArg2) }

// pkt is a segment as the tests write it: from cliIP to srvIP.
type pkt struct {
	from, to uint16 // ports
	flags    uint8
	seq, ack uint32
	data     string
	mss      bool // carry an MSS option (1460)
}

// encode builds the whole IPv4 datagram.
func (s pkt) encode() []byte {
	var opts []byte
	if s.mss {
		o := header.TCPOptions{MSS: 1460, HasMSS: true}
		opts = make([]byte, o.Size())
		o.Encode(opts)
	}
	n := header.TCPMinimumSize + len(opts) + len(s.data)
	b := make([]byte, header.IPv4MinimumSize+n)
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: header.ProtocolTCP, Src: cliIP, Dst: srvIP})
	h := header.TCP(b[header.IPv4MinimumSize:])
	h.Encode(&header.TCPFields{SrcPort: s.from, DstPort: s.to, Seq: s.seq, Ack: s.ack, Flags: s.flags, Window: 65535, Options: opts})
	copy(h[header.TCPMinimumSize+len(opts):], s.data)
	h.SetChecksum(h.ComputeChecksum(cliIP, srvIP))
	return b
}

// deliver plays IP delivering s; tcp must answer StatusOK.
func (p *proc) deliver(s pkt) {
	p.t.Helper()
	req := p.ip.send(channel.Msg{Op: uint16(ops.OpDeliver), Ref: p.ip.buffer(s.encode(), 0)})
	r := p.ip.reply(req)
	p.ip.pool.Free(req.Ref)
	if ops.StatusOf(r) != ops.StatusOK {
		p.t.Fatalf("OpDeliver = %s, want ok", ops.StatusOf(r))
	}
}

// outSeg is a segment tcp handed to IP.
type outSeg struct {
	dst              netip.Addr
	from, to         uint16
	flags            uint8
	seq, ack         uint32
	data             string
	protocol         uint64
	checksumVerifies bool
}

func (s outSeg) String() string {
	return fmt.Sprintf("%d->%d %s seq %d ack %d %q", s.from, s.to, flagString(s.flags), s.seq, s.ack, s.data)
}

// next takes tcp's next OpOutput and answers it (the buffer is freed).
func (p *proc) next() outSeg {
	p.t.Helper()
	m := p.ip.recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput })
	b, err := p.out.Bytes(m.Ref)
	if err != nil {
		p.t.Fatal(err)
	}
	dst := ops.GetAddr(m, ops.AtArg0).IP()
	h := header.TCP(b)
	s := outSeg{dst: dst, protocol: m.Arg[2], from: h.SrcPort(), to: h.DstPort(), flags: h.Flags(),
		seq: h.Seq(), ack: h.Ack(), data: string(h.Payload()),
		checksumVerifies: header.ValidateTCP(b, srvIP, dst) == nil}
	p.ip.sendRaw(m) // StatusOK: copied out
	return s
}

// expect takes segments until one with flags (PSH ignored) comes, skipping
// pure ACKs (delayed ones, window updates) unless flags is ACK.
func (p *proc) expect(flags uint8) outSeg {
	p.t.Helper()
	for {
		s := p.next()
		if !s.checksumVerifies || s.protocol != header.ProtocolTCP || s.dst != cliIP {
			p.t.Fatalf("segment %v to %v, protocol %d: checksum verifies %v", s, s.dst, s.protocol, s.checksumVerifies)
		}
		if s.flags&^header.TCPFlagPSH == flags {
			return s
		}
		if s.flags != header.TCPFlagACK || s.data != "" {
			p.t.Fatalf("segment %v, want flags %s", s, flagString(flags))
		}
	}
}
