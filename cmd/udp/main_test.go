package main

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"keepnet/boot/hub"
	"keepnet/boot/hub/hubtest"
	"keepnet/kernel/channel"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/store"
	"keepnet/servers/udp"
)

// The test binary doubles as the udp command: the test starts it as a
// child wired by a real hub (as init wires it), with a real store, and
// plays ip and syscall itself.
func TestMain(m *testing.M) { hubtest.Main(m, "KEEPNET_UDP_CHILD", main) }

const waitFor = 5 * time.Second

var ourIP = netip.MustParseAddr("10.0.2.15")

// neighbour is ip or syscall, played by the test over a real wiring socket.
type neighbour struct {
	t      *testing.T
	conn   *wiring.Conn
	setup  *wiring.Setup
	peer   *wiring.Peer // the current udp generation
	nextID uint64
}

func join(t *testing.T, h *hub.Hub, name string) *neighbour {
	t.Helper()
	files, err := h.ExtraFiles(name)(func() {})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := wiring.FromFile(files[0])
	files[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	setup, err := wiring.Join(conn, waitFor)
	if err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	return &neighbour{t: t, conn: conn, setup: setup}
}

// meet waits for the channel to udp's next generation.
func (n *neighbour) meet() {
	n.t.Helper()
	p, err := wiring.NextPeer(n.conn, waitFor)
	if err != nil || p.Name != "udp" {
		n.t.Fatalf("%s: waiting for udp: %v, %v", n.setup.Name, p, err)
	}
	if n.peer != nil {
		n.peer.Close()
	}
	n.peer = p
}

func (n *neighbour) send(m channel.Msg) channel.Msg {
	n.t.Helper()
	if m.ID == 0 {
		n.nextID++
		m.ID = n.nextID
	}
	if n.peer.Port.Send(m) != 1 {
		n.t.Fatalf("%s: channel full", n.setup.Name)
	}
	return m
}

func (n *neighbour) recv() channel.Msg {
	n.t.Helper()
	var in [1]channel.Msg
	deadline := time.Now().Add(waitFor)
	for n.peer.Port.Recv(in[:]) == 0 {
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: nothing from udp within %v", n.setup.Name, waitFor)
		}
		n.peer.Port.Wait(100 * time.Millisecond)
	}
	return in[0]
}

// answerAddr plays ip answering udp's OpAddr.
func (n *neighbour) answerAddr() {
	n.t.Helper()
	m := n.recv()
	if ops.OpOf(m) != ops.OpAddr {
		n.t.Fatalf("udp's first request to ip: %v, want OpAddr", ops.OpOf(m))
	}
	ops.SetAddrReply(&m, netip.PrefixFrom(ourIP, 24), 0)
	n.send(m)
}

func (n *neighbour) call(op ops.Op, args ...uint64) channel.Msg {
	n.t.Helper()
	return n.callMsg(op.Msg(args...))
}

func (n *neighbour) callMsg(m channel.Msg) channel.Msg {
	n.t.Helper()
	req := n.send(m)
	r := n.recv()
	if r.ID != req.ID {
		n.t.Fatalf("reply to %d: got %+v", req.ID, r)
	}
	return r
}

// deliver plays ip delivering a datagram to port on our address.
func (n *neighbour) deliver(port uint16) ops.Status {
	n.t.Helper()
	up := n.setup.Pools["ip.up"]
	ref, ok := up.Alloc()
	if !ok {
		n.t.Fatal("ip.up exhausted")
	}
	defer up.Free(ref)
	b, _ := up.Bytes(ref)
	const payload = "hello"
	tl := header.IPv4MinimumSize + header.UDPMinimumSize + len(payload)
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(tl), TTL: 64, Protocol: header.ProtocolUDP,
		Src: netip.MustParseAddr("10.0.2.2"), Dst: ourIP})
	u := header.UDP(b[header.IPv4MinimumSize:tl])
	u.Encode(&header.UDPFields{SrcPort: 4000, DstPort: port, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	ref.Len = uint32(tl)
	req := n.send(ops.Deliver(ref, netip.MustParseAddr("10.0.2.2"), ourIP, header.IPv4MinimumSize))
	r := n.recv()
	if r.ID != req.ID {
		n.t.Fatalf("reply to OpDeliver %d: got %+v", req.ID, r)
	}
	return ops.StatusOf(r)
}

// startUDP starts a generation of the udp command.
func startUDP(t *testing.T, h *hub.Hub, storePath string) *exec.Cmd {
	t.Helper()
	return hubtest.Start(t, h, "udp", "KEEPNET_UDP_CHILD", "-store", storePath)
}

// TestRestartKeepsSockets: the command serves a socket, is killed, and
// its next generation serves the same socket without syscall reopening it.
func TestRestartKeepsSockets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := context.Background()
	storePath := hubtest.Store(t)

	h, err := hub.New([]hub.Node{
		{Name: "udp", Peers: []string{"ip", "syscall"}, Pools: []hub.PoolSpec{{Name: udp.OutPool, Bufs: 8, BufSize: 64 << 10}}},
		{Name: "ip", Peers: []string{"udp"}, Pools: []hub.PoolSpec{{Name: "ip.up", Bufs: 8, BufSize: 2048}}},
		{Name: "syscall", Peers: []string{"udp"}, Pools: []hub.PoolSpec{{Name: "syscall.io", Bufs: 8, BufSize: 2048, Writers: []string{"udp"}}}},
	}, hub.Shared(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ip, sys := join(t, h, "ip"), join(t, h, "syscall")

	first := startUDP(t, h, storePath)
	ip.meet()
	sys.meet()
	ip.answerAddr()
	if r := sys.call(ops.OpOpen, 1, uint64(ops.UDP)); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpOpen = %s", ops.StatusOf(r))
	}
	if r := sys.callMsg(ops.OpBind.WithAddr(1, ops.MakeAddr(netip.IPv4Unspecified(), 7))); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpBind(:7) = %s", ops.StatusOf(r))
	}
	if st := ip.deliver(7); st != ops.StatusOK {
		t.Errorf("generation 1: OpDeliver to :7 = %s, want ok", st.Text())
	}
	// The bound record reaches the store (written off the loop, after the
	// unbound one OpOpen saved, which the first reads may still find).
	c := store.Dial(storePath)
	defer c.Close()
	deadline := time.Now().Add(waitFor)
	for {
		v, ok, _ := c.Get(ctx, udp.StoreNS, "1")
		var r udp.Record
		if ok {
			var err error
			if r, err = udp.ParseRecord("1", v); err != nil {
				t.Fatalf("stored record %q: %v", v, err)
			}
			if r.Local.Port() == 7 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket 1's record in the store: %+v (found: %v); want it bound to :7", r, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}

	first.Process.Kill()
	first.Wait()
	startUDP(t, h, storePath)
	ip.meet()
	sys.meet()
	ip.answerAddr()
	if st := ip.deliver(7); st != ops.StatusOK {
		t.Errorf("generation 2: OpDeliver to :7 = %s, want ok (socket restored)", st.Text())
	}
	if st := ip.deliver(9); st != ops.StatusNoPort {
		t.Errorf("generation 2: OpDeliver to :9 = %s, want %s", st.Text(), ops.StatusNoPort)
	}
	rbuf, _ := sys.setup.Pools["syscall.io"].Alloc()
	req := sys.send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{1}})
	if r := sys.recv(); r.ID != req.ID || ops.StatusOf(r) != ops.StatusOK || r.Ref.Len != 5 {
		t.Errorf("generation 2: OpRecvFrom(1) = %+v, want the 5-byte datagram", r)
	}
}
