package tcp

import (
	"net/netip"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
	"keepnet/servers/transport/transporttest"
)

const (
	synF = header.TCPFlagSYN
	ackF = header.TCPFlagACK
	finF = header.TCPFlagFIN
	rstF = header.TCPFlagRST
	pshF = header.TCPFlagPSH
)

// TestServerPassiveOpen: listen, a client connects, data both ways, the
// client closes, we close.
func TestServerPassiveOpen(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	any80 := sockAddr(netip.IPv4Unspecified(), 80)
	cli := sockAddr(cliIP, 4000)

	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	if r := p.mustCallMsg(withAddr(ops.OpBind.Msg(1), any80)); replyAddr(r) != any80 {
		t.Errorf("OpBind(:80) = %v, want %v", replyAddr(r), any80)
	}
	if r := p.call(ops.OpOpen, 9, uint64(ops.TCP)); ops.StatusOf(r) != ops.StatusOK {
		t.Fatal(ops.StatusOf(r))
	}
	if r := p.callMsg(withAddr(ops.OpBind.Msg(9), any80)); ops.StatusOf(r) != ops.StatusInUse {
		t.Errorf("second OpBind(:80) = %s, want %s", ops.StatusOf(r), ops.StatusInUse)
	}
	p.mustCall(ops.OpListen, 1, 8)
	if r, ok := p.journal.Get(1); !ok || r != (ListenerRecord{ID: 1, Local: any80, Backlog: 8}) {
		t.Errorf("journal[1] = %+v, %v; want socket 1 listening on %v, backlog 8", r, ok, any80)
	}

	// SYN, SYN-ACK, ACK: the posted accept is answered.
	acc := p.sys.Send(ops.OpAccept.Msg(1, 2))
	p.sys.Quiet(10 * time.Millisecond)
	p.deliver(pkt{from: 4000, to: 80, flags: synF, seq: 100, mss: true})
	synack := p.expect(synF | ackF)
	if synack.ack != 101 || synack.from != 80 || synack.to != 4000 {
		t.Fatalf("SYN-ACK = %v, want 80->4000 ack 101", synack)
	}
	iss := synack.seq
	p.sys.Quiet(10 * time.Millisecond)
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 101, ack: iss + 1})
	r := p.sys.Reply(acc)
	if ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != cli || replyAddr2(r) != sockAddr(srvIP, 80) {
		t.Fatalf("OpAccept reply = %s, remote %v, local %v; want ok, %v, %v",
			ops.StatusOf(r), replyAddr(r), replyAddr2(r), cli, sockAddr(srvIP, 80))
	}

	// Data in: a posted receive gets it.
	rbuf := p.sys.Buffer(nil, 512)
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{2}})
	p.sys.Quiet(10 * time.Millisecond)
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 101, ack: iss + 1, data: "hello"})
	if r := p.sys.Reply(recv); ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 5 || r.Ref.Off != rbuf.Off {
		t.Errorf("OpRecvFrom reply = %+v, want 5 bytes in the same buffer", r)
	} else if got := string(p.sys.Bytes(r.Ref)); got != "hello" {
		t.Errorf("received %q, want %q", got, "hello")
	}

	// Data out: the send is taken whole, a segment carries it.
	send := p.sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: p.sys.Buffer([]byte("world"), 0), Arg: [4]uint64{2}})
	if r := p.sys.Reply(send); ops.StatusOf(r) != ops.StatusOK || r.Arg[2] != 5 {
		t.Errorf("OpSendTo reply = %s, %d bytes taken; want ok, 5", ops.StatusOf(r), r.Arg[2])
	}
	if d := p.expect(ackF); d.data != "world" || d.seq != iss+1 || d.ack != 106 {
		t.Errorf("data segment = %v, want seq %d ack 106 %q", d, iss+1, "world")
	}

	// The client's FIN: the posted receive gets the end of the stream.
	recv = p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{2}})
	p.deliver(pkt{from: 4000, to: 80, flags: finF | ackF, seq: 106, ack: iss + 6})
	if r := p.sys.Reply(recv); ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 0 || r.Flags&ops.FlagEOF == 0 {
		t.Errorf("OpRecvFrom after FIN = %+v, want ok, 0 bytes, FlagEOF", r)
	}
	// We close: our FIN; the client's ACK ends it.
	p.mustCall(ops.OpClose, 2)
	fin := p.expect(finF | ackF)
	if fin.seq != iss+6 || fin.ack != 107 {
		t.Errorf("FIN = %v, want seq %d ack 107", fin, iss+6)
	}
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 107, ack: iss + 7})

	// A port nobody listens on: RST, and the delivery is still ok.
	p.deliver(pkt{from: 4001, to: 81, flags: synF, seq: 7})
	if rst := p.expect(rstF | ackF); rst.ack != 8 || rst.to != 4001 {
		t.Errorf("answer to a SYN to :81 = %v, want RST-ACK ack 8", rst)
	}

	// Close of the listener forgets its record.
	p.mustCall(ops.OpClose, 1)
	if _, ok := p.journal.Get(1); ok {
		t.Errorf("journal still holds listener 1 after OpClose")
	}
	if r := p.call(0x99, 1); ops.StatusOf(r) != ops.StatusInvalid {
		t.Errorf("unknown op = %s, want invalid", ops.StatusOf(r))
	}
}

// TestServerActiveOpen: connect, established, reset by the peer; connect
// refused; the unknown-socket policy.
func TestServerActiveOpen(t *testing.T) {
	p := startProc(t, procOptions{})
	p.mustCall(ops.OpOpen, 3, uint64(ops.TCP))
	conn := p.sys.Send(withAddr(ops.OpConnect.Msg(3), sockAddr(cliIP, 7000)))
	p.sys.Quiet(10 * time.Millisecond) // waits for our address
	p.answerAddr()
	syn := p.expect(synF)
	if syn.to != 7000 || syn.from < EphemeralFirst {
		t.Fatalf("SYN = %v, want from an ephemeral port to 7000", syn)
	}
	p.deliver(pkt{from: 7000, to: syn.from, flags: synF | ackF, seq: 500, ack: syn.seq + 1, mss: true})
	if r := p.sys.Reply(conn); ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != sockAddr(srvIP, syn.from) {
		t.Fatalf("OpConnect reply = %s, local %v; want ok, %v", ops.StatusOf(r), replyAddr(r), sockAddr(srvIP, syn.from))
	}
	p.expect(ackF)

	// An RST: the pending receive and later operations get StatusReset.
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.Buffer(nil, 64), Arg: [4]uint64{3}})
	p.sys.Quiet(10 * time.Millisecond)
	p.deliver(pkt{from: 7000, to: syn.from, flags: rstF, seq: 501})
	if r := p.sys.Reply(recv); ops.StatusOf(r) != ops.StatusReset {
		t.Errorf("OpRecvFrom after RST = %s, want %s", ops.StatusOf(r), ops.StatusReset)
	}
	send := p.sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: p.sys.Buffer([]byte("x"), 0), Arg: [4]uint64{3}})
	if r := p.sys.Reply(send); ops.StatusOf(r) != ops.StatusReset {
		t.Errorf("OpSendTo after RST = %s, want %s", ops.StatusOf(r), ops.StatusReset)
	}
	p.mustCall(ops.OpClose, 3)

	// Refused: the SYN is answered with RST-ACK.
	p.mustCall(ops.OpOpen, 4, uint64(ops.TCP))
	conn = p.sys.Send(withAddr(ops.OpConnect.Msg(4), sockAddr(cliIP, 7001)))
	syn = p.expect(synF)
	p.deliver(pkt{from: 7001, to: syn.from, flags: rstF | ackF, ack: syn.seq + 1})
	if r := p.sys.Reply(conn); ops.StatusOf(r) != ops.StatusRefused {
		t.Errorf("OpConnect answered by RST = %s, want %s", ops.StatusOf(r), ops.StatusRefused)
	}

	// Sockets tcp does not know (a predecessor's connections).
	for _, c := range []struct {
		op   ops.Op
		want ops.Status
	}{
		{ops.OpRecvFrom, ops.StatusReset},
		{ops.OpSendTo, ops.StatusReset},
		{ops.OpShutdown, ops.StatusReset},
		{ops.OpConnect, ops.StatusReset},
		{ops.OpAccept, ops.StatusNoSocket},
		{ops.OpListen, ops.StatusNoSocket},
		{ops.OpClose, ops.StatusOK},
	} {
		if r := p.callMsg(withAddr(c.op.Msg(99), sockAddr(cliIP, 1))); ops.StatusOf(r) != c.want {
			t.Errorf("%v on an unknown socket = %v, want %v", c.op, ops.StatusOf(r), c.want)
		}
	}
}

// TestServerConnectTimesOut: SYN retries on the injected clock, then
// StatusTimedOut; nothing sleeps for the timers.
func TestServerConnectTimesOut(t *testing.T) {
	clock := &lockedClock{now: time.Unix(1_700_000_000, 0)}
	p := startProc(t, procOptions{clock: clock})
	p.answerAddr()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	conn := p.sys.Send(withAddr(ops.OpConnect.Msg(1), sockAddr(cliIP, 80)))
	first := p.expect(synF)
	for i := range maxSynRetries {
		clock.advance(MaxRTO + time.Second)
		if syn := p.expect(synF); syn.seq != first.seq {
			t.Fatalf("retry %d = %v, want the same SYN", i+1, syn)
		}
	}
	clock.advance(MaxRTO + time.Second)
	if r := p.sys.Reply(conn); ops.StatusOf(r) != ops.StatusTimedOut {
		t.Errorf("OpConnect = %s, want %s", ops.StatusOf(r), ops.StatusTimedOut)
	}
}

// TestServerListenerRestored: a tcp restarted with its records listens at
// once; a connection of its predecessor is reset.
func TestServerListenerRestored(t *testing.T) {
	first := startProc(t, procOptions{})
	first.answerAddr()
	first.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	first.mustCall(ops.OpListen, 1, 4) // unbound: an ephemeral port
	rec, ok := first.journal.Get(1)
	if !ok || rec.Local.Port() < EphemeralFirst || rec.Backlog != 4 {
		t.Fatalf("journal[1] = %+v, %v; want socket 1 on an ephemeral port, backlog 4", rec, ok)
	}
	b, _ := rec.MarshalBinary()
	if got, err := ParseRecord(transport.RecordKey(1), b); err != nil || got != rec {
		t.Fatalf("ParseRecord(MarshalBinary(%+v)) = %+v, %v", rec, got, err)
	}

	p := startProc(t, procOptions{restore: []ListenerRecord{rec}, poolIDs: 1000})
	p.answerAddr()
	port := rec.Local.Port()
	acc := p.sys.Send(ops.OpAccept.Msg(1, 2))
	p.deliver(pkt{from: 4000, to: port, flags: synF, seq: 1})
	synack := p.expect(synF | ackF)
	p.deliver(pkt{from: 4000, to: port, flags: ackF, seq: 2, ack: synack.seq + 1})
	if r := p.sys.Reply(acc); ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != sockAddr(cliIP, 4000) {
		t.Errorf("OpAccept on the restored listener = %+v, want ok from %v", r, sockAddr(cliIP, 4000))
	}
	// A restored listener answers a resubmitted OpListen as done.
	p.mustCall(ops.OpListen, 1, 4)
	// Socket 5 was a connection of the dead generation.
	if r := p.call(ops.OpRecvFrom, 5); ops.StatusOf(r) != ops.StatusReset {
		t.Errorf("OpRecvFrom on a lost connection = %s, want %s", ops.StatusOf(r), ops.StatusReset)
	}
}

// TestServerSyscallRestart: the old generation's posted requests are
// dropped, the listener stays, OpReset closes it.
func TestServerSyscallRestart(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	p.mustCallMsg(withAddr(ops.OpBind.Msg(1), sockAddr(srvIP, 80)))
	p.mustCall(ops.OpListen, 1, 4)
	p.sys.Send(ops.OpAccept.Msg(1, 2))
	p.sys.Quiet(10 * time.Millisecond)

	old := p.sys
	p.sys = transporttest.New(t, "syscall", 2, 301, 16, 2048)
	p.peers <- p.sys.Peer
	p.deliver(pkt{from: 4000, to: 80, flags: synF, seq: 1})
	synack := p.expect(synF | ackF)
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 2, ack: synack.seq + 1})
	old.Quiet(10 * time.Millisecond)
	acc := p.sys.Send(ops.OpAccept.Msg(1, 7))
	if r := p.sys.Reply(acc); ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("OpAccept from the new generation = %s, want ok", ops.StatusOf(r))
	}
	p.mustCall(ops.OpReset)
	p.expect(finF | ackF) // connection 7 closes
	if _, ok := p.journal.Get(1); ok {
		t.Errorf("journal holds listener 1 after OpReset")
	}
	p.deliver(pkt{from: 4001, to: 80, flags: synF, seq: 1})
	p.expect(rstF | ackF)
	select {
	case st := <-p.stats:
		if st.Generation != 1 || st.SyscallGeneration == 0 {
			t.Errorf("stats = %+v", st)
		}
	case <-time.After(srvWait):
		t.Errorf("no stats published")
	}
}

// acceptOne listens on port as socket 1 and has a client connect from
// cliPort, accepted as socket 2; it returns our initial sequence number.
func (p *proc) acceptOne(port, cliPort uint16) (iss uint32) {
	p.t.Helper()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	p.mustCallMsg(withAddr(ops.OpBind.Msg(1), sockAddr(netip.IPv4Unspecified(), port)))
	p.mustCall(ops.OpListen, 1, 8)
	acc := p.sys.Send(ops.OpAccept.Msg(1, 2))
	p.deliver(pkt{from: cliPort, to: port, flags: synF, seq: 100, mss: true})
	iss = p.expect(synF | ackF).seq
	p.deliver(pkt{from: cliPort, to: port, flags: ackF, seq: 101, ack: iss + 1})
	if r := p.sys.Reply(acc); ops.StatusOf(r) != ops.StatusOK {
		p.t.Fatalf("OpAccept = %s, want ok", ops.StatusOf(r))
	}
	return iss
}

// TestServerReadinessReceives: a zero-Ref OpRecvFrom is answered when the
// connection is readable and reads nothing; a FlagNoWait receive is
// answered at once, "would block" when nothing is queued; both keep their
// place in the socket's queue of receives.
func TestServerReadinessReceives(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	iss := p.acceptOne(80, 4000)
	rbuf := p.sys.Buffer(nil, 512)
	readiness := func() channel.Msg { return p.sys.Send(ops.OpRecvFrom.Msg(2)) }
	noWait := func() channel.Msg {
		return p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Flags: ops.FlagNoWait, Ref: rbuf, Arg: [4]uint64{2}})
	}
	// want checks a receive's reply: status, length, flags, bytes.
	// A reply with bytes says where they lie in the stream (FlagOffset,
	// Arg[1]); stream counts the bytes so far.
	stream := uint64(0)
	want := func(what string, r channel.Msg, status ops.Status, data string, flags uint16) {
		t.Helper()
		got := ""
		if r.Ref.Len > 0 {
			got = string(p.sys.Bytes(r.Ref))
		}
		if data != "" {
			flags |= ops.FlagOffset
			if r.Arg[1] != stream {
				t.Errorf("%s: bytes at stream offset %d, want %d", what, r.Arg[1], stream)
			}
			stream += uint64(len(data))
		}
		if ops.StatusOf(r) != status || got != data || r.Flags != flags {
			t.Errorf("%s = %s, %q, flags %#x; want %s, %q, flags %#x", what, ops.StatusOf(r), got, r.Flags,
				status.Text(), data, flags)
		}
	}

	// Nothing queued: "would block" at once.
	want("FlagNoWait receive on an idle connection", p.sys.Reply(noWait()), ops.StatusOK, "", 0)

	// A readiness receive waits, and so does a FlagNoWait receive behind
	// it; data answers both, in order, the readiness receive reading none.
	rd, nw := readiness(), noWait()
	p.sys.Quiet(10 * time.Millisecond)
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 101, ack: iss + 1, data: "hello"})
	first, second := p.sys.Recv(nil), p.sys.Recv(nil)
	if first.ID != rd.ID || second.ID != nw.ID {
		t.Fatalf("replies to ids %d, %d; want the readiness receive's (%d) first, then the data receive's (%d)", first.ID, second.ID, rd.ID, nw.ID)
	}
	want("readiness receive when data came", first, ops.StatusOK, "", 0)
	if !first.Ref.IsZero() {
		t.Errorf("readiness reply Ref = %+v, want zero", first.Ref)
	}
	want("FlagNoWait receive behind it", second, ops.StatusOK, "hello", 0)

	// Readable already: the readiness receive is answered at once and the
	// bytes stay for the next receive.
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 106, ack: iss + 1, data: "more"})
	want("readiness receive with data queued", p.sys.Reply(readiness()), ops.StatusOK, "", 0)
	want("readiness receive again", p.sys.Reply(readiness()), ops.StatusOK, "", 0)
	want("FlagNoWait receive after them", p.sys.Reply(noWait()), ops.StatusOK, "more", 0)

	// The FIN makes it readable; the next receive gets the end of the stream.
	rd = readiness()
	p.sys.Quiet(10 * time.Millisecond)
	p.deliver(pkt{from: 4000, to: 80, flags: finF | ackF, seq: 110, ack: iss + 1})
	want("readiness receive at the FIN", p.sys.Reply(rd), ops.StatusOK, "", 0)
	want("FlagNoWait receive after the FIN", p.sys.Reply(noWait()), ops.StatusOK, "", ops.FlagEOF)

	p.mustCall(ops.OpClose, 2)
	p.expect(finF | ackF)

	// A readiness receive needs a connection...
	p.mustCall(ops.OpOpen, 5, uint64(ops.TCP))
	if r := p.call(ops.OpRecvFrom, 5); ops.StatusOf(r) != ops.StatusInvalid {
		t.Errorf("readiness receive on an unconnected socket = %s, want %s", ops.StatusOf(r), ops.StatusInvalid)
	}
	// ...and one on a socket tcp does not know is reset, as any receive.
	if r := p.call(ops.OpRecvFrom, 99); ops.StatusOf(r) != ops.StatusReset || !r.Ref.IsZero() {
		t.Errorf("readiness receive on an unknown socket = %s, Ref %+v; want %s, zero", ops.StatusOf(r), r.Ref, ops.StatusReset)
	}
}

// TestServerReadinessReset: an RST makes a waiting readiness receive
// readable; the data receive after it gets the reset; a readiness receive
// waiting at OpClose is answered StatusClosed.
func TestServerReadinessReset(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	p.acceptOne(80, 4000)
	rd := p.sys.Send(ops.OpRecvFrom.Msg(2))
	p.sys.Quiet(10 * time.Millisecond)
	p.deliver(pkt{from: 4000, to: 80, flags: rstF, seq: 101})
	if r := p.sys.Reply(rd); ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 0 {
		t.Errorf("readiness receive at an RST = %s, %d bytes; want ok, 0", ops.StatusOf(r), r.Ref.Len)
	}
	nw := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Flags: ops.FlagNoWait, Ref: p.sys.Buffer(nil, 64), Arg: [4]uint64{2}})
	if r := p.sys.Reply(nw); ops.StatusOf(r) != ops.StatusReset {
		t.Errorf("FlagNoWait receive after an RST = %s, want %s", ops.StatusOf(r), ops.StatusReset)
	}

	// A second connection, closed with a readiness receive waiting.
	acc := p.sys.Send(ops.OpAccept.Msg(1, 3))
	p.deliver(pkt{from: 4001, to: 80, flags: synF, seq: 100, mss: true})
	iss := p.expect(synF | ackF).seq
	p.deliver(pkt{from: 4001, to: 80, flags: ackF, seq: 101, ack: iss + 1})
	if r := p.sys.Reply(acc); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpAccept = %s", ops.StatusOf(r))
	}
	rd = p.sys.Send(ops.OpRecvFrom.Msg(3))
	p.sys.Quiet(10 * time.Millisecond)
	p.mustCall(ops.OpClose, 3)
	if r := p.sys.Reply(rd); ops.StatusOf(r) != ops.StatusClosed {
		t.Errorf("readiness receive at OpClose = %s, want %s", ops.StatusOf(r), ops.StatusClosed)
	}
}

// TestServerIPv6: a listener on [::] takes a connection over IPv6: its
// SYN-ACK goes to the IPv6 peer from the address the SYN came to, with
// IPv6's MSS (20 bytes less than IPv4's), the checksum tcp's own, and the
// accept names both IPv6 ends. A bind to a given IPv6 address is refused
// (the transports bind IPv6 to [::] only). Active opens over IPv6 are in
// server_ipv6_test.go.
func TestServerIPv6(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	if r := p.callMsg(withAddr(ops.OpBind.Msg(1), ops.FromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:80")))); ops.StatusOf(r) != ops.StatusInvalid {
		t.Errorf("OpBind([2001:db8::1]:80) = %v, want StatusInvalid", ops.StatusOf(r))
	}
	any80 := sockAddr(netip.IPv6Unspecified(), 80)
	if r := p.mustCallMsg(withAddr(ops.OpBind.Msg(1), any80)); replyAddr(r) != any80 {
		t.Fatalf("OpBind([::]:80) = %v, want %v", replyAddr(r), any80)
	}
	p.mustCall(ops.OpListen, 1, 8)
	acc := p.sys.Send(ops.OpAccept.Msg(1, 2))
	cli6, srv6 := netip.MustParseAddr("fd00:77::2"), netip.MustParseAddr("fd00:77::5054:ff:fe12:3456")
	syn := make([]byte, header.IPv6MinimumSize+header.TCPMinimumSize+4)
	header.IPv6(syn).Encode(&header.IPv6Fields{PayloadLength: header.TCPMinimumSize + 4, NextHeader: header.ProtocolTCP, HopLimit: 64, Src: cli6, Dst: srv6})
	o := header.TCPOptions{MSS: 1440, HasMSS: true}
	h := header.TCP(syn[header.IPv6MinimumSize:])
	h.Encode(&header.TCPFields{SrcPort: 4000, DstPort: 80, Seq: 100, Flags: synF, Window: 65535, Options: syn[header.IPv6MinimumSize+header.TCPMinimumSize:]})
	o.Encode(syn[header.IPv6MinimumSize+header.TCPMinimumSize:])
	h.SetChecksum(h.ComputeChecksum(cli6, srv6))
	req := p.ip.Deliver(syn)
	if r := p.ip.Reply(req); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpDeliver(SYN over IPv6) = %s", ops.StatusOf(r))
	}
	m := p.ip.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput })
	b, err := p.out.Bytes(m.Ref)
	if err != nil {
		t.Fatal(err)
	}
	sa := header.TCP(b)
	opts, _ := header.ParseTCPOptions(sa.Options())
	if dst, src := ops.GetAddr(m, ops.AtArg0).IP(), ops.OutputSource(m); dst != cli6 || src != srv6 || sa.Flags() != synF|ackF ||
		opts.MSS != 1440 || sa.Ack() != 101 {
		t.Fatalf("SYN-ACK %v -> %v flags %s ack %d MSS %d; want %v -> %v, SYN|ACK, ack 101, MSS 1440", src, dst, flagString(sa.Flags()), sa.Ack(), opts.MSS, srv6, cli6)
	}
	if ops.OutputOffload(m)&ops.OffloadChecksum == 0 && header.ValidateTCP(b, srv6, cli6) != nil {
		t.Errorf("SYN-ACK's checksum does not verify over IPv6's pseudo-header")
	}
	p.ip.SendRaw(m)
	ack := make([]byte, header.IPv6MinimumSize+header.TCPMinimumSize)
	header.IPv6(ack).Encode(&header.IPv6Fields{PayloadLength: header.TCPMinimumSize, NextHeader: header.ProtocolTCP, HopLimit: 64, Src: cli6, Dst: srv6})
	h = header.TCP(ack[header.IPv6MinimumSize:])
	h.Encode(&header.TCPFields{SrcPort: 4000, DstPort: 80, Seq: 101, Ack: sa.Seq() + 1, Flags: ackF, Window: 65535})
	h.SetChecksum(h.ComputeChecksum(cli6, srv6))
	req = p.ip.Deliver(ack)
	p.ip.Reply(req)
	r := p.sys.Reply(acc)
	if ops.StatusOf(r) != ops.StatusOK || replyAddr(r).IP() != cli6 || replyAddr2(r).IP() != srv6 {
		t.Errorf("OpAccept = %s, remote %v, local %v; want ok, %v, %v", ops.StatusOf(r), replyAddr(r), replyAddr2(r), cli6, srv6)
	}
}

// TestServerAuditLeavesWaitingRequests: the framework's audit
// (transport.Auditor) looks, every few milliseconds here, for each request
// tcp has held longer than its age — an accept on a listener, a receive
// and a readiness receive on an idle connection, a connect whose SYN is
// unanswered — and finds each where tcp keeps it (Holds): nothing is
// called lost (which would stop the loop), the requests are still
// answered when what they wait for comes.
func TestServerAuditLeavesWaitingRequests(t *testing.T) {
	p := startProc(t, procOptions{}) // audited at testAudit
	p.answerAddr()
	iss := p.acceptOne(80, 4000) // listener 1, connection 2
	accept := p.sys.Send(ops.OpAccept.Msg(1, 3))
	ready := p.sys.Send(ops.OpRecvFrom.Msg(2))
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: p.sys.Buffer(nil, 512), Arg: [4]uint64{2}})
	p.mustCall(ops.OpOpen, 4, uint64(ops.TCP))
	conn := p.sys.Send(withAddr(ops.OpConnect.Msg(4), sockAddr(cliIP, 81)))
	p.expect(synF)

	deadline := time.After(transporttest.Wait)
	for audited := false; !audited; {
		select {
		case st := <-p.stats:
			audited = st.Audited >= 8 && st.Unanswered == 4
		case <-deadline:
			t.Fatal("no statistics showing the four waiting requests audited twice each")
		}
	}

	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 101, ack: iss + 1, data: "late"})
	for _, m := range []channel.Msg{ready, recv} {
		if r := p.sys.Reply(m); ops.StatusOf(r) != ops.StatusOK {
			t.Errorf("receive %d after the audits = %s, want ok", m.ID, ops.StatusOf(r))
		}
	}
	p.mustCall(ops.OpClose, 4)
	p.mustCall(ops.OpClose, 1)
	for _, m := range []channel.Msg{conn, accept} {
		if r := p.sys.Reply(m); ops.StatusOf(r) == ops.StatusOK {
			t.Errorf("%v %d on a closed socket = ok, want an error", ops.OpOf(m), m.ID)
		}
	}
}

// TestListenAnsweredOnceStored: the answer to a listen leaves only once
// the listener's record is in the store, and so does a listener's close:
// answered earlier, a crash of tcp right after would lose (or bring back)
// a listener the application was told of. Nothing else waits for it.
func TestListenAnsweredOnceStored(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	p.mustCallMsg(withAddr(ops.OpBind.Msg(1), sockAddr(netip.IPv4Unspecified(), 80)))
	p.journal.Hold()
	listen := p.sys.Send(ops.OpListen.Msg(1, 8))
	p.sys.Quiet(30 * time.Millisecond)
	p.mustCall(ops.OpOpen, 2, uint64(ops.TCP)) // answered meanwhile
	p.journal.Release()
	if r := p.sys.Reply(listen); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("listen = %s", ops.StatusOf(r))
	}

	p.journal.Hold()
	closed := p.sys.Send(ops.OpClose.Msg(1))
	p.sys.Quiet(30 * time.Millisecond)
	if _, ok := p.journal.Get(1); ok {
		t.Error("the journal still holds the closed listener")
	}
	p.journal.Release()
	if r := p.sys.Reply(closed); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("close = %s", ops.StatusOf(r))
	}
}
