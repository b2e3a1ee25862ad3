package udp

import (
	"net/netip"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
)

// Zero copy (servers/syscallsrv): a datagram is sent from, and received
// into, the application's own buffer, in its pool granted to udp; when
// the application's next generation is granted, the receive still
// posted into the old pool is answered StatusClosed (DropPool).
func TestServerGrantedBuffers(t *testing.T) {
	p := startProcessWith(t, nil, true)
	p.answerAddr(p.ip)
	grant := func(id uint32, gen int) *pool.Pool {
		own, err := pool.Create(id, 4, 2048)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { own.Close() })
		mapped, err := pool.Open(id, own.Fd(), 4, 2048)
		if err != nil {
			t.Fatal(err)
		}
		p.peers <- &wiring.Peer{Name: "app", Generation: gen, Pools: []*pool.Pool{mapped}}
		return own
	}
	from := addr(peerIP, 5000)
	p.call(ops.OpOpen, 1, uint64(ops.UDP))
	p.callMsg(withAddr(ops.OpBind.Msg(1), addr(netip.IPv4Unspecified(), 7)))
	app := grant(500, 1)

	in, _ := app.Alloc()
	recv := p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: in, Arg: [4]uint64{1}})
	p.sys.Quiet(20 * time.Millisecond)
	p.deliver(p.ip, ipUDP(from, addr(ourIP, 7), []byte("into the app"), nil))
	r := p.sys.Reply(recv)
	got, _ := app.Bytes(pool.Ref{Pool: in.Pool, Off: in.Off, Len: r.Ref.Len})
	if ops.StatusOf(r) != ops.StatusOK || string(got) != "into the app" {
		t.Errorf("OpRecvFrom into the application's buffer = %s, %q there; want ok, %q", ops.StatusOf(r), got, "into the app")
	}

	out, _ := app.Alloc()
	b, _ := app.Bytes(out)
	out.Len = uint32(copy(b, "from the app"))
	if r := p.sys.Reply(p.sys.Send(withAddr(channel.Msg{Op: uint16(ops.OpSendTo), Ref: out, Arg: [4]uint64{1}}, from))); ops.StatusOf(r) != ops.StatusOK {
		t.Errorf("OpSendTo from the application's buffer = %s, want ok", ops.StatusOf(r))
	}
	seg := p.ip.Recv(nil)
	if d, err := p.out.Bytes(seg.Ref); ops.OpOf(seg) != ops.OpOutput || err != nil || string(d[8:]) != "from the app" {
		t.Errorf("IP got %+v, want the datagram %q", seg, "from the app")
	}

	recv = p.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: in, Arg: [4]uint64{1}})
	p.sys.Quiet(20 * time.Millisecond)
	grant(501, 2)
	if r := p.sys.Reply(recv); ops.StatusOf(r) != ops.StatusClosed || r.Ref.Len != 0 {
		t.Errorf("the receive posted into the old generation's pool = %s, %d bytes; want StatusClosed, 0", ops.StatusOf(r), r.Ref.Len)
	}
}
