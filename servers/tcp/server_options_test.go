package tcp

import (
	"net/netip"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/ops"
)

// The socket options through the process (issue 19): OpSetOption on a
// connection, and OpClose with a linger, as SYSCALL sends them.

// acceptConn listens on :80 as socket 1 and accepts a connection from
// cliIP:4000 as socket 2; it returns our ISS.
func (p *proc) acceptConn() uint32 {
	p.t.Helper()
	p.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	p.mustCallMsg(withAddr(ops.OpBind.Msg(1), sockAddr(netip.IPv4Unspecified(), 80)))
	p.mustCall(ops.OpListen, 1, 8)
	acc := p.sys.Send(ops.OpAccept.Msg(1, 2))
	p.deliver(pkt{from: 4000, to: 80, flags: synF, seq: 100, mss: true})
	iss := p.expect(synF | ackF).seq
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 101, ack: iss + 1})
	if r := p.sys.Reply(acc); ops.StatusOf(r) != ops.StatusOK {
		p.t.Fatalf("OpAccept = %s", ops.StatusOf(r))
	}
	return iss
}

// setOption is OpSetOption of o to v on sock; it returns the status.
func (p *proc) setOption(sock uint64, o ops.Option, v uint64) ops.Status {
	p.t.Helper()
	return ops.StatusOf(p.callMsg(ops.SetOptionMsg(sock, o, v)))
}

// poke makes the loop run a pass now (a request it answers at once), so
// that it looks at a fake clock the test advanced.
func (p *proc) poke() { p.mustCall(ops.OpAdopt, 2, uint64(ops.TCP)) }

// TestServerKeepAliveOption: keep-alive set through OpSetOption (2 s idle,
// 1 s interval, 3 probes) probes on schedule and, the peer silent, fails
// the posted receive with StatusTimedOut 5 s after the last segment;
// values out of range are refused.
func TestServerKeepAliveOption(t *testing.T) {
	clock := &lockedClock{now: time.Unix(1_700_000_000, 0)}
	p := startProc(t, procOptions{clock: clock})
	p.answerAddr()
	iss := p.acceptConn()

	for _, c := range []struct {
		sock uint64
		o    ops.Option
		v    uint64
		want ops.Status
	}{
		{2, ops.OptNoDelay, 2, ops.StatusInvalid},
		{2, ops.OptKeepAliveIdle, 0, ops.StatusInvalid},
		{2, ops.OptKeepAliveCount, 1000, ops.StatusInvalid},
		{2, ops.OptSendBuffer, 0, ops.StatusInvalid},
		{2, 99, 1, ops.StatusInvalid},
		{1, ops.OptNoDelay, 1, ops.StatusInvalid}, // a listener
		{77, ops.OptNoDelay, 1, ops.StatusReset},  // no such connection
		{2, ops.OptKeepAliveIdle, uint64(2 * time.Second), ops.StatusOK},
		{2, ops.OptKeepAliveInterval, uint64(time.Second), ops.StatusOK},
		{2, ops.OptKeepAliveCount, 3, ops.StatusOK},
		{2, ops.OptKeepAlive, 1, ops.StatusOK},
		{2, ops.OptKeepAlive, 1, ops.StatusOK}, // a reissue
	} {
		if got := p.setOption(c.sock, c.o, c.v); got != c.want {
			t.Errorf("OpSetOption(%d, %v, %d) = %s, want %s", c.sock, c.o, c.v, got, c.want)
		}
	}
	rbuf := p.sys.Buffer(nil, 512)
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{2}})
	for i := range 3 {
		if i == 0 {
			clock.advance(2 * time.Second)
		} else {
			clock.advance(time.Second)
		}
		p.poke()
		if probe := p.expect(ackF); probe.seq != iss || probe.data != "" {
			t.Fatalf("probe %d = %v, want seq %d, no data", i+1, probe, iss)
		}
	}
	p.sys.Quiet(10 * time.Millisecond) // the receive still waits
	clock.advance(time.Second)
	p.poke()
	if r := p.sys.Reply(recv); ops.StatusOf(r) != ops.StatusTimedOut {
		t.Fatalf("OpRecvFrom after 3 unanswered probes = %s, want %s", ops.StatusOf(r), ops.StatusTimedOut)
	}
}

// TestServerLingerOptions: OptLinger 0 makes OpClose an RST; a positive
// linger holds OpClose's answer until the peer has acknowledged the data
// and the FIN.
func TestServerLingerOptions(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	iss := p.acceptConn()

	if st := p.setOption(2, ops.OptLinger, 5); st != ops.StatusOK {
		t.Fatalf("OptLinger 5 = %s", st)
	}
	send := p.sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: p.sys.Buffer([]byte("bye"), 0), Arg: [4]uint64{2}})
	p.sys.Reply(send)
	if d := p.expect(ackF); d.data != "bye" {
		t.Fatalf("data = %v", d)
	}
	cl := p.sys.Send(ops.OpClose.Msg(2))
	if fin := p.expect(finF | ackF); fin.seq != iss+4 {
		t.Fatalf("FIN = %v, want seq %d", fin, iss+4)
	}
	p.sys.Quiet(20 * time.Millisecond) // lingering: the data is not acknowledged
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 101, ack: iss + 5})
	if r := p.sys.Reply(cl); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpClose = %s after everything was acknowledged", ops.StatusOf(r))
	}

	// A second connection, closed with linger 0: an RST.
	acc := p.sys.Send(ops.OpAccept.Msg(1, 3))
	p.deliver(pkt{from: 4001, to: 80, flags: synF, seq: 500, mss: true})
	iss2 := p.expect(synF | ackF).seq
	p.deliver(pkt{from: 4001, to: 80, flags: ackF, seq: 501, ack: iss2 + 1})
	p.sys.Reply(acc)
	if st := p.setOption(3, ops.OptLinger, uint64(0)); st != ops.StatusOK {
		t.Fatalf("OptLinger 0 = %s", st)
	}
	p.mustCall(ops.OpClose, 3)
	if rst := p.expect(rstF); rst.seq != iss2+1 || rst.to != 4001 {
		t.Fatalf("RST = %v, want seq %d to 4001", rst, iss2+1)
	}
}

// TestServerNoDelayByDefault: connections start with Nagle's algorithm
// off, as Go's net starts them: a second short write goes out at once,
// with the first unacknowledged; OptNoDelay 0 turns Nagle on.
func TestServerNoDelayByDefault(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	iss := p.acceptConn()
	write := func(s string) {
		p.t.Helper()
		p.sys.Reply(p.sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: p.sys.Buffer([]byte(s), 0), Arg: [4]uint64{2}}))
	}
	write("one")
	p.expect(ackF)
	write("two")
	if d := p.expect(ackF); d.data != "two" {
		t.Fatalf("second write = %v, want it sent at once", d)
	}
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 101, ack: iss + 7})
	if st := p.setOption(2, ops.OptNoDelay, 0); st != ops.StatusOK {
		t.Fatal(st)
	}
	write("three")
	p.expect(ackF)
	write("four")
	p.ip.Quiet(20 * time.Millisecond) // Nagle holds it: "three" is in flight
	p.deliver(pkt{from: 4000, to: 80, flags: ackF, seq: 101, ack: iss + 12})
	if d := p.expect(ackF); d.data != "four" {
		t.Fatalf("after the ACK: %v, want %q", d, "four")
	}
}

// TestServerLingerTimesOut: a lingering OpClose is answered when its linger
// has passed, drained or not; the close goes on in the background.
func TestServerLingerTimesOut(t *testing.T) {
	clock := &lockedClock{now: time.Unix(1_700_000_000, 0)}
	p := startProc(t, procOptions{clock: clock})
	p.answerAddr()
	p.acceptConn()
	if st := p.setOption(2, ops.OptLinger, 2); st != ops.StatusOK {
		t.Fatal(st)
	}
	p.sys.Reply(p.sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: p.sys.Buffer([]byte("unacknowledged"), 0), Arg: [4]uint64{2}}))
	cl := p.sys.Send(ops.OpClose.Msg(2))
	p.sys.Quiet(20 * time.Millisecond)
	clock.advance(2 * time.Second)
	p.mustCall(ops.OpOpen, 9, uint64(ops.TCP)) // a pass of the loop
	if r := p.sys.Reply(cl); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpClose after its linger = %s, want ok", ops.StatusOf(r))
	}
}
