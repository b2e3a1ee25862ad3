package tcp

import (
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
	"keepnet/servers/transport"
	"keepnet/servers/transport/transporttest"
)

// The server tests run the process — the core of server.go in the
// servers/transport framework and its loop — against a fake ip and a fake
// syscall, over in-process channels and real pools: the dialogue on
// the wire, message by message, with the segments the fake ip sees.

const srvWait = transporttest.Wait

var (
	srvNet = netip.MustParsePrefix("10.0.2.15/24") // the server's address, as ip tells it
	srvIP  = srvNet.Addr()
	cliNet = netip.MustParsePrefix("10.0.2.2/24") // the remote end
	cliIP  = cliNet.Addr()
)

func sockAddr(ip netip.Addr, port uint16) ops.Addr { return ops.MakeAddr(ip, port) }

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
	s       *server           // the core
	fw      *transport.Server // the framework around it
	out     *pool.Pool        // tcp.out
	ip, sys *transporttest.Neighbour
	peers   chan *wiring.Peer
	journal *transporttest.Journal[ListenerRecord]
	stats   chan Stats
	stop    func() // ends the loop (idempotent); then s may be read
}

// testAudit is the audit's age in the process tests: every request tcp
// holds for a few milliseconds is looked for, so each test also checks
// that the audit finds what tcp keeps (a request called lost stops the
// loop and fails the test).
const testAudit = 10 * time.Millisecond

type procOptions struct {
	restore []ListenerRecord
	clock   Clock
	outBufs int // tcp.out buffers; 0: 16
	ioSize  int // syscall.io buffer size; 0: 2048
	poolIDs uint32
	sendBuf int           // the Table's SendBuffer; 0: its default
	audit   time.Duration // transport.Config.AuditAfter; 0: testAudit
	grants  bool          // transport.Config.Grants
}

func startProc(t *testing.T, o procOptions) *proc {
	t.Helper()
	if o.outBufs == 0 {
		o.outBufs = 16
	}
	if o.ioSize == 0 {
		o.ioSize = 2048
	}
	if o.audit == 0 {
		o.audit = testAudit
	}
	out, err := pool.Create(o.poolIDs+100, o.outBufs, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p := &proc{t: t, out: out, peers: make(chan *wiring.Peer), journal: transporttest.NewJournal[ListenerRecord](),
		ip:    transporttest.New(t, "ip", 1, o.poolIDs+200, 256, 2048),
		sys:   transporttest.New(t, "syscall", 1, o.poolIDs+300, 16, o.ioSize),
		stats: make(chan Stats, 1)}
	c := transport.Config{Name: "tcp", Protocol: header.ProtocolTCP, AuditAfter: o.audit, Grants: o.grants, Stored: p.journal,
		Publish: func(st any) {
			select {
			case p.stats <- st.(Stats):
			default:
			}
		}}
	o2 := ServerOptions{Name: "tcp", Config: Config{Clock: o.clock, Seed: 1, SendBuffer: o.sendBuf}}
	p.fw = transport.New(c, 1, out, func(h transport.Host) transport.Protocol {
		p.s = newServer(h, o2, p.journal)
		return p.s
	})
	if _, errs := p.s.Restore(o.restore); errs != nil {
		t.Fatal(errs)
	}
	p.fw.Attach(p.ip.Peer)
	p.fw.Attach(p.sys.Peer)
	p.stop = transporttest.Run(t, p.fw, p.peers)
	return p
}

// answerAddr plays ip answering tcp's OpAddr.
func (p *proc) answerAddr() { p.ip.AnswerAddr(srvNet) }

// call sends a socket request from syscall and returns tcp's reply.
func (p *proc) call(op ops.Op, args ...uint64) channel.Msg {
	p.t.Helper()
	return p.callMsg(op.Msg(args...))
}

// callMsg sends request m from syscall and returns tcp's reply.
func (p *proc) callMsg(m channel.Msg) channel.Msg {
	p.t.Helper()
	return p.sys.Reply(p.sys.Send(m))
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
	req := p.ip.Deliver(s.encode())
	r := p.ip.Reply(req)
	p.ip.Pool.Free(req.Ref)
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
	m := p.ip.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput })
	b, err := p.out.Bytes(m.Ref)
	if err != nil {
		p.t.Fatal(err)
	}
	dst, src := ops.GetAddr(m, ops.AtArg0).IP(), ops.OutputSource(m)
	h := header.TCP(b)
	s := outSeg{dst: dst, protocol: uint64(ops.OutputProto(m)), from: h.SrcPort(), to: h.DstPort(), flags: h.Flags(),
		seq: h.Seq(), ack: h.Ack(), data: string(h.Payload()),
		// from our address, which tcp names (the checksum covers it)
		checksumVerifies: src == srvIP && header.ValidateTCP(b, src, dst) == nil}
	p.ip.SendRaw(m) // StatusOK: copied out
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
