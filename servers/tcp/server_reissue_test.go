package tcp

import (
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/ops"
	"keepnet/servers/transport/transporttest"
)

// A SYSCALL restart may lose tcp's replies after tcp acted on the
// requests: the library reissues them through the new generation, and
// each is answered as the first was (servers/ops): a send's bytes are not
// queued twice, received bytes handed out but not proven received are
// handed out again, an accept names the same connection.

// restartSyscall replaces the fake syscall by its generation gen; what the
// old one had posted is dropped.
func (p *proc) restartSyscall(gen int) {
	p.sys = transporttest.New(p.t, "syscall", gen, uint32(300+gen), 16, 2048)
	p.peers <- p.sys.Peer
}

// streamSend is an OpSendTo of data on socket id at stream offset off.
func streamSend(n *transporttest.Neighbour, id, off uint64, data string) channel.Msg {
	return channel.Msg{Op: uint16(ops.OpSendTo), Flags: ops.FlagOffset, Ref: n.Buffer([]byte(data), 0), Arg: [4]uint64{id, off}}
}

// streamRecv is an OpRecvFrom on socket id, the requester having received
// up to stream offset off.
func streamRecv(n *transporttest.Neighbour, id, off uint64) channel.Msg {
	return channel.Msg{Op: uint16(ops.OpRecvFrom), Flags: ops.FlagOffset | ops.FlagNoWait, Ref: n.Buffer(nil, 512), Arg: [4]uint64{id, off}}
}

func TestServerReissuedSendIsTrimmed(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	iss := p.acceptOne(80, 4000)
	if r := p.mustCallMsg(streamSend(p.sys, 2, 0, "hello")); r.Arg[2] != 5 {
		t.Fatalf("OpSendTo(hello) took %d, want 5", r.Arg[2])
	}
	if d := p.expect(ackF); d.data != "hello" || d.seq != iss+1 {
		t.Fatalf("segment = %v, want %q at %d", d, "hello", iss+1)
	}
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 101, ack: iss + 6})
	// The reply was lost: the library sends "hello" again at offset 0,
	// then ", world" at 5, through the new generation.
	p.restartSyscall(2)
	if r := p.mustCallMsg(streamSend(p.sys, 2, 0, "hello")); r.Arg[2] != 5 {
		t.Errorf("reissued OpSendTo(hello) took %d, want 5 (acknowledged, not queued)", r.Arg[2])
	}
	if r := p.mustCallMsg(streamSend(p.sys, 2, 3, "lo, world")); r.Arg[2] != 9 {
		t.Errorf("overlapping OpSendTo took %d, want 9", r.Arg[2])
	}
	if d := p.expect(ackF); d.data != ", world" || d.seq != iss+6 {
		t.Errorf("segment = %v, want only %q at %d: no byte twice", d, ", world", iss+6)
	}
}

func TestServerReceiveRewindsOnSyscallRestart(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	iss := p.acceptOne(80, 4000)
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 101, ack: iss + 1, data: "abcdef"})
	got := func(r channel.Msg, n *transporttest.Neighbour) string {
		t.Helper()
		if ops.StatusOf(r) != ops.StatusOK {
			t.Fatalf("OpRecvFrom = %s", ops.StatusOf(r))
		}
		return string(n.Bytes(r.Ref))
	}
	if s := got(p.callMsg(streamRecv(p.sys, 2, 0)), p.sys); s != "abcdef" {
		t.Fatalf("received %q, want abcdef", s)
	}
	// The reply died with syscall: the library still is at offset 0, and
	// gets the bytes again from the new generation.
	p.restartSyscall(2)
	if s := got(p.callMsg(streamRecv(p.sys, 2, 0)), p.sys); s != "abcdef" {
		t.Fatalf("after the restart received %q, want abcdef again", s)
	}
	// This time it arrived: offset 6 proves it; nothing is handed out twice.
	p.restartSyscall(3)
	r := p.callMsg(streamRecv(p.sys, 2, 6))
	if ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 0 || r.Flags&ops.FlagEOF != 0 {
		t.Errorf("OpRecvFrom at 6 = %+v, want would block", r)
	}
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 107, ack: iss + 1, data: "gh"})
	if s := got(p.callMsg(streamRecv(p.sys, 2, 6)), p.sys); s != "gh" {
		t.Errorf("received %q, want gh", s)
	}
	// An offset beyond what was received is refused.
	if r := p.callMsg(streamRecv(p.sys, 2, 99)); ops.StatusOf(r) != ops.StatusInvalid {
		t.Errorf("OpRecvFrom at 99 = %s, want %s", ops.StatusOf(r), ops.StatusInvalid)
	}
	// Close proves what was handed out: an orderly close (FIN), no RST.
	p.mustCall(ops.OpClose, 2)
	p.expect(finF | ackF)
}

func TestServerReissuedAcceptNamesTheSameConnection(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	p.acceptOne(80, 4000) // accepted as 2; the reply lost with syscall
	p.restartSyscall(2)
	r := p.callMsg(ops.OpAccept.Msg(1, 2))
	if ops.StatusOf(r) != ops.StatusOK || replyAddr(r) != sockAddr(cliIP, 4000) || replyAddr2(r) != sockAddr(srvIP, 80) {
		t.Errorf("reissued OpAccept = %s %v %v, want ok, %v, %v", ops.StatusOf(r), replyAddr(r), replyAddr2(r), sockAddr(cliIP, 4000), sockAddr(srvIP, 80))
	}
	if r := p.call(ops.OpAdopt, 2, uint64(ops.TCP)); ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("OpAdopt(2) = %s, want ok", ops.StatusOf(r))
	}
	if r := p.call(ops.OpAdopt, 3, uint64(ops.TCP)); ops.StatusOf(r) != ops.StatusNoSocket {
		t.Errorf("OpAdopt(3) = %s, want %s", ops.StatusOf(r), ops.StatusNoSocket)
	}
	// The listener's other sockets, in a range, close.
	p.mustCall(ops.OpCloseRange, 2, 3)
	p.expect(finF | ackF)
	if r := p.call(ops.OpAdopt, 2, uint64(ops.TCP)); ops.StatusOf(r) != ops.StatusNoSocket {
		t.Errorf("OpAdopt(2) after OpCloseRange = %s, want %s", ops.StatusOf(r), ops.StatusNoSocket)
	}
	p.sys.Quiet(10 * time.Millisecond)
}

// A reply with bytes says where they lie in the stream: two receives
// posted at one offset (the library posts several before the first is
// answered) get consecutive bytes, each reply naming its own offset, so
// that a requester can drop bytes it got twice after a restart of tcp
// (what tcp had handed out is only in its process).
func TestServerReceiveRepliesNameTheirOffset(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	iss := p.acceptOne(80, 4000)
	waiting := func() channel.Msg { // a receive that waits for bytes
		m := streamRecv(p.sys, 2, 0)
		m.Flags &^= ops.FlagNoWait
		return p.sys.Send(m)
	}
	first, second := waiting(), waiting()
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 101, ack: iss + 1, data: "abc"})
	r1 := p.sys.Reply(first)
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 104, ack: iss + 1, data: "de"})
	r2 := p.sys.Reply(second)
	for _, c := range []struct {
		r    channel.Msg
		want string
		off  uint64
	}{{r1, "abc", 0}, {r2, "de", 3}} {
		if got := string(p.sys.Bytes(c.r.Ref)); got != c.want || c.r.Flags&ops.FlagOffset == 0 || c.r.Arg[1] != c.off {
			t.Errorf("receive = %q, flags %#x, offset %d; want %q at offset %d (FlagOffset)", got, c.r.Flags, c.r.Arg[1], c.want, c.off)
		}
	}
}

// A send starting past what the connection took means bytes before it
// are missing (state lost): sending it would put its bytes at the wrong
// place in the stream. The connection is reset instead.
func TestServerSendBeyondTakenResets(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	iss := p.acceptOne(80, 4000)
	if r := p.callMsg(streamSend(p.sys, 2, 5, "world")); ops.StatusOf(r) != ops.StatusReset {
		t.Errorf("OpSendTo at offset 5 with nothing taken = %s, want %s", ops.StatusOf(r), ops.StatusReset)
	}
	if s := p.expect(rstF); s.seq != iss+1 || s.data != "" {
		t.Errorf("segment = %v, want an RST at %d and no bytes", s, iss+1)
	}
}
