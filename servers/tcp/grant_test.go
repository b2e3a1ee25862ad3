package tcp

import (
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
)

// appPool is generation gen of an application's pool id, granted to the
// process: the application's own mapping and the grant.
func (p *proc) appPool(id uint32, gen int) *pool.Pool {
	p.t.Helper()
	own, err := pool.Create(id, 4, 2048)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { own.Close() })
	mapped, err := pool.Open(id, own.Fd(), 4, 2048)
	if err != nil {
		p.t.Fatal(err)
	}
	p.peers <- &wiring.Peer{Name: "app", Generation: gen, Pools: []*pool.Pool{mapped}}
	return own
}

// Zero copy (servers/syscallsrv): SYSCALL forwards an application's own
// buffers, in its pool granted to tcp. tcp sends from one and receives
// into one; when the application's next generation is granted, the
// receive still posted into the old pool is answered StatusClosed
// (DropPool) before the pool is unmapped.
func TestServerGrantedBuffers(t *testing.T) {
	p := startProc(t, procOptions{grants: true})
	p.answerAddr()
	iss := p.acceptOne(80, 4000)
	app := p.appPool(500, 1)

	out, _ := app.Alloc()
	buf, _ := app.Bytes(out)
	out.Len = uint32(copy(buf, "zero"))
	if r := p.sys.Reply(p.sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: out, Arg: [4]uint64{2}})); ops.StatusOf(r) != ops.StatusOK || r.Arg[2] != 4 {
		t.Errorf("OpSendTo from the application's buffer = %s, %d bytes taken; want ok, 4", ops.StatusOf(r), r.Arg[2])
	}
	if d := p.expect(ackF); d.data != "zero" {
		t.Errorf("data segment %v, want %q", d, "zero")
	}

	in, _ := app.Alloc()
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: in, Arg: [4]uint64{2}})
	p.deliver(pkt{from: 4000, to: 80, flags: ackF | pshF, seq: 101, ack: iss + 5, data: "copied once"})
	r := p.sys.Reply(recv)
	got, _ := app.Bytes(pool.Ref{Pool: in.Pool, Off: in.Off, Len: r.Ref.Len})
	if ops.StatusOf(r) != ops.StatusOK || string(got) != "copied once" {
		t.Errorf("OpRecvFrom into the application's buffer = %s, %q there; want ok, %q", ops.StatusOf(r), got, "copied once")
	}

	recv = p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: in, Arg: [4]uint64{2}})
	p.sys.Quiet(10 * time.Millisecond) // posted
	p.appPool(501, 2)
	if r := p.sys.Reply(recv); ops.StatusOf(r) != ops.StatusClosed || r.Ref.Len != 0 {
		t.Errorf("the receive posted into the old generation's pool = %s, %d bytes; want StatusClosed, 0", ops.StatusOf(r), r.Ref.Len)
	}
}
