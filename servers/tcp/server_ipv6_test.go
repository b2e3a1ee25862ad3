package tcp

import (
	"net/netip"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/transport/transporttest"
)

// Active opens over IPv6: tcp asks ip which address the connection goes
// from (OpSource, RFC 6724 being ip's), names the connection by its
// 4-tuple, and only then sends its SYN.

var (
	far6  = netip.MustParseAddr("2001:db8:99::7")                // the server we dial
	ours6 = netip.MustParseAddr("2001:db8:1::5054:ff:fe12:3456") // the source ip picks
)

// askedSource takes tcp's next OpSource from ip n and checks its
// destination.
func askedSource(t *testing.T, n *transporttest.Neighbour, dst netip.Addr) channel.Msg {
	t.Helper()
	m := n.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpSource })
	if got := ops.GetAddr(m, ops.AtArg0); got.IP() != dst || got.Port() != 0 {
		t.Fatalf("OpSource for %v, want %v", got, dst)
	}
	return m
}

// answerSource plays ip answering question q: src, or st when it is not
// StatusOK.
func answerSource(n *transporttest.Neighbour, q channel.Msg, src netip.Addr, st ops.Status) {
	r := q
	ops.SetStatus(&r, st)
	if st == ops.StatusOK {
		ops.PutAddr(&r, ops.AtArg0, ops.MakeAddr(src, 0))
	}
	n.SendRaw(r)
}

// seg6 is a TCP segment in an IPv6 datagram from src to dst.
func seg6(src, dst netip.Addr, f header.TCPFields, o header.TCPOptions, data string) []byte {
	f.Options = make([]byte, o.Size())
	o.Encode(f.Options)
	n := header.TCPMinimumSize + len(f.Options) + len(data)
	b := make([]byte, header.IPv6MinimumSize+n)
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(n), NextHeader: header.ProtocolTCP, HopLimit: 64, Src: src, Dst: dst})
	h := header.TCP(b[header.IPv6MinimumSize:])
	h.Encode(&f)
	copy(h[header.TCPMinimumSize+len(f.Options):], data)
	h.SetChecksum(h.ComputeChecksum(src, dst))
	return b
}

// out6 is a segment tcp handed ip, with the addresses of its OpOutput.
type out6 struct {
	src, dst netip.Addr
	h        header.TCP // a copy
	opts     header.TCPOptions
	verifies bool // its checksum is tcp's and verifies over the IPv6 pseudo-header
}

// next6 takes tcp's next OpOutput from ip n and answers it.
func (p *proc) next6(n *transporttest.Neighbour) out6 {
	p.t.Helper()
	m := n.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput })
	b, err := p.out.Bytes(m.Ref)
	if err != nil {
		p.t.Fatal(err)
	}
	o := out6{src: ops.OutputSource(m), dst: ops.GetAddr(m, ops.AtArg0).IP(), h: header.TCP(append([]byte(nil), b...))}
	o.opts, _ = header.ParseTCPOptions(o.h.Options())
	o.verifies = ops.OutputOffload(m)&ops.OffloadChecksum == 0 && header.ValidateTCP(b, o.src, o.dst) == nil
	n.SendRaw(m)
	return o
}

// deliver6 plays ip n delivering an IPv6 datagram.
func (p *proc) deliver6(n *transporttest.Neighbour, d []byte) {
	p.t.Helper()
	req := n.Deliver(d)
	r := n.Reply(req)
	n.Pool.Free(req.Ref)
	if ops.StatusOf(r) != ops.StatusOK {
		p.t.Fatalf("OpDeliver = %s, want ok", ops.StatusOf(r))
	}
}

// TestServerConnectIPv6: an OpConnect to an IPv6 address asks ip for the
// source, then sends its SYN from it, with IPv6's MSS and the options of
// any SYN; the SYN-ACK establishes the connection, whose local address is
// that source, and data goes both ways.
func TestServerConnectIPv6(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	conn := p.sys.Send(withAddr(ops.OpConnect.Msg(1), sockAddr(far6, 80)))
	q := askedSource(t, p.ip, far6)
	p.ip.Quiet(20 * time.Millisecond) // no SYN before the answer
	answerSource(p.ip, q, ours6, ops.StatusOK)

	syn := p.next6(p.ip)
	if syn.src != ours6 || syn.dst != far6 || syn.h.Flags() != synF || syn.h.DstPort() != 80 || !syn.verifies {
		t.Fatalf("SYN %v -> %v port %d flags %s, checksum verifies %v; want %v -> %v port 80, SYN, verifying",
			syn.src, syn.dst, syn.h.DstPort(), flagString(syn.h.Flags()), syn.verifies, ours6, far6)
	}
	if o := syn.opts; o.MSS != 1440 || !o.HasWS || !o.SACKPermitted || !o.HasTimestamps {
		t.Errorf("SYN's options %+v, want MSS 1440 (IPv6's), window scale, SACK permitted, timestamps", o)
	}
	port, iss := syn.h.SrcPort(), syn.h.Seq()
	p.deliver6(p.ip, seg6(far6, ours6, header.TCPFields{SrcPort: 80, DstPort: port, Seq: 5000, Ack: iss + 1, Flags: synF | ackF, Window: 65535},
		header.TCPOptions{MSS: 1440, HasMSS: true}, ""))
	r := p.sys.Reply(conn)
	if ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != sockAddr(ours6, port) {
		t.Fatalf("OpConnect = %s, local %v; want ok, %v", ops.StatusOf(r), replyAddr(r), sockAddr(ours6, port))
	}
	if ack := p.next6(p.ip); ack.h.Flags() != ackF || ack.h.Ack() != 5001 || ack.src != ours6 {
		t.Errorf("handshake's ACK: flags %s ack %d from %v, want ACK 5001 from %v", flagString(ack.h.Flags()), ack.h.Ack(), ack.src, ours6)
	}

	if r := p.mustCallMsg(streamSend(p.sys, 1, 0, "GET /")); r.Arg[2] != 5 {
		t.Fatalf("OpSendTo took %d, want 5", r.Arg[2])
	}
	if d := p.next6(p.ip); string(d.h.Payload()) != "GET /" || d.h.Seq() != iss+1 || d.src != ours6 || d.dst != far6 || !d.verifies {
		t.Errorf("data segment %q seq %d %v -> %v (verifies %v), want %q at %d %v -> %v", d.h.Payload(), d.h.Seq(), d.src, d.dst, d.verifies, "GET /", iss+1, ours6, far6)
	}
	p.deliver6(p.ip, seg6(far6, ours6, header.TCPFields{SrcPort: 80, DstPort: port, Seq: 5001, Ack: iss + 6, Flags: ackF | pshF, Window: 65535},
		header.TCPOptions{}, "200 OK"))
	if r := p.callMsg(streamRecv(p.sys, 1, 0)); ops.StatusOf(r) != ops.StatusOK || string(p.sys.Bytes(r.Ref)[:r.Ref.Len]) != "200 OK" {
		t.Errorf("OpRecvFrom = %s %q, want ok %q", ops.StatusOf(r), p.sys.Bytes(r.Ref)[:r.Ref.Len], "200 OK")
	}
}

// TestServerConnectIPv6NoSource: when ip has no source for the
// destination the connect fails as Linux's does: no route
// (ENETUNREACH), no address yet (EADDRNOTAVAIL); nothing is sent. A
// socket bound to an IPv4 address does not dial IPv6.
func TestServerConnectIPv6NoSource(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	for i, st := range []ops.Status{ops.StatusNetUnreach, ops.StatusAddrNotAvail} {
		id := uint64(1 + i)
		p.mustCall(ops.OpOpen, id, uint64(ops.TCP))
		conn := p.sys.Send(withAddr(ops.OpConnect.Msg(id), sockAddr(far6, 80)))
		answerSource(p.ip, askedSource(t, p.ip, far6), netip.Addr{}, st)
		if r := p.sys.Reply(conn); ops.StatusOf(r) != st {
			t.Errorf("OpConnect with ip answering %s = %s, want the same", st, ops.StatusOf(r))
		}
	}
	p.ip.Quiet(20 * time.Millisecond)

	p.mustCall(ops.OpOpen, 3, uint64(ops.TCP))
	p.mustCallMsg(withAddr(ops.OpBind.Msg(3), sockAddr(srvIP, 0)))
	if r := p.callMsg(withAddr(ops.OpConnect.Msg(3), sockAddr(far6, 80))); ops.StatusOf(r) != ops.StatusAFNoSupport {
		t.Errorf("OpConnect to IPv6 from a socket bound to %v = %s, want StatusAFNoSupport", srvIP, ops.StatusOf(r))
	}
}

// TestServerConnectIPv6IPRestart: ip dies before it answers where the
// connection goes from; its next generation is asked again, and the
// connection opens through it. The dead one's answer never counts.
func TestServerConnectIPv6IPRestart(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	conn := p.sys.Send(withAddr(ops.OpConnect.Msg(1), sockAddr(far6, 80)))
	old := askedSource(t, p.ip, far6)

	ip2 := transporttest.New(t, "ip", 2, 201, 32, 2048)
	p.peers <- ip2.Peer
	q := askedSource(t, ip2, far6)
	if q.ID == old.ID {
		t.Errorf("the question to the new ip reuses id %d", q.ID)
	}
	answerSource(p.ip, old, netip.MustParseAddr("2001:db8:dead::1"), ops.StatusOK) // into the retired channel
	answerSource(ip2, q, ours6, ops.StatusOK)
	syn := p.next6(ip2)
	if syn.src != ours6 || syn.dst != far6 || syn.h.Flags() != synF {
		t.Fatalf("SYN %v -> %v flags %s, want %v -> %v SYN", syn.src, syn.dst, flagString(syn.h.Flags()), ours6, far6)
	}
	port := syn.h.SrcPort()
	p.deliver6(ip2, seg6(far6, ours6, header.TCPFields{SrcPort: 80, DstPort: port, Seq: 9, Ack: syn.h.Seq() + 1, Flags: synF | ackF, Window: 65535},
		header.TCPOptions{MSS: 1440, HasMSS: true}, ""))
	if r := p.sys.Reply(conn); ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != sockAddr(ours6, port) {
		t.Errorf("OpConnect = %s, local %v; want ok, %v", ops.StatusOf(r), replyAddr(r), sockAddr(ours6, port))
	}
}

// TestServerConnectIPv6SourceTimesOut: an ip that never answers fails the
// connect after sourceWait (ETIMEDOUT), and its late answer is ignored:
// no SYN leaves.
func TestServerConnectIPv6SourceTimesOut(t *testing.T) {
	clock := &lockedClock{now: time.Unix(1_700_000_000, 0)}
	p := startProc(t, procOptions{clock: clock})
	p.answerAddr()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	conn := p.sys.Send(withAddr(ops.OpConnect.Msg(1), sockAddr(far6, 80)))
	q := askedSource(t, p.ip, far6)
	clock.advance(sourceWait / 2)
	p.sys.Quiet(20 * time.Millisecond)
	clock.advance(sourceWait / 2)
	if r := p.sys.Reply(conn); ops.StatusOf(r) != ops.StatusTimedOut {
		t.Errorf("OpConnect = %s, want StatusTimedOut", ops.StatusOf(r))
	}
	answerSource(p.ip, q, ours6, ops.StatusOK)
	p.ip.Quiet(20 * time.Millisecond)
}
