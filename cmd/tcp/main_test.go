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
	"keepnet/servers/tcp"
)

// The test binary doubles as the tcp command: the test starts it as a
// child wired by a real hub (as init wires it), with a real store, and
// plays ip and syscall itself.
func TestMain(m *testing.M) { hubtest.Main(m, "KEEPNET_TCP_CHILD", main) }

const waitFor = 5 * time.Second

var (
	ourIP  = netip.MustParseAddr("10.0.2.15")
	peerIP = netip.MustParseAddr("10.0.2.2")
)

// neighbour is ip or syscall, played by the test over a real wiring socket.
type neighbour struct {
	t      *testing.T
	conn   *wiring.Conn
	setup  *wiring.Setup
	peer   *wiring.Peer // the current tcp generation
	nextID uint64
	stash  []channel.Msg
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

// meet waits for the channel to tcp's next generation.
func (n *neighbour) meet() {
	n.t.Helper()
	p, err := wiring.NextPeer(n.conn, waitFor)
	if err != nil || p.Name != "tcp" {
		n.t.Fatalf("%s: waiting for tcp: %v, %v", n.setup.Name, p, err)
	}
	if n.peer != nil {
		n.peer.Close()
	}
	n.peer, n.stash = p, nil
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

// recv waits for a message from tcp that match accepts; others are kept.
func (n *neighbour) recv(match func(channel.Msg) bool) channel.Msg {
	n.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		for i, m := range n.stash {
			if match(m) {
				n.stash = append(n.stash[:i], n.stash[i+1:]...)
				return m
			}
		}
		var in [8]channel.Msg
		k := n.peer.Port.Recv(in[:])
		if k == 0 {
			if time.Now().After(deadline) {
				n.t.Fatalf("%s: nothing from tcp within %v", n.setup.Name, waitFor)
			}
			n.peer.Port.Wait(100 * time.Millisecond)
		}
		n.stash = append(n.stash, in[:k]...)
	}
}

// answerAddr plays ip answering tcp's OpAddr.
func (n *neighbour) answerAddr() {
	n.t.Helper()
	m := n.recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpAddr })
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
	return n.recv(func(m channel.Msg) bool { return m.ID == req.ID })
}

// syn plays ip delivering a client's SYN to port and returns the flags of
// tcp's answer.
func (n *neighbour) syn(port uint16) uint8 {
	n.t.Helper()
	up := n.setup.Pools["ip.up"]
	ref, ok := up.Alloc()
	if !ok {
		n.t.Fatal("ip.up exhausted")
	}
	defer up.Free(ref)
	b, _ := up.Bytes(ref)
	tl := header.IPv4MinimumSize + header.TCPMinimumSize
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(tl), TTL: 64, Protocol: header.ProtocolTCP, Src: peerIP, Dst: ourIP})
	h := header.TCP(b[header.IPv4MinimumSize:tl])
	h.Encode(&header.TCPFields{SrcPort: 4000, DstPort: port, Seq: 1, Flags: header.TCPFlagSYN, Window: 65535})
	h.SetChecksum(h.ComputeChecksum(peerIP, ourIP))
	ref.Len = uint32(tl)
	req := n.send(ops.Deliver(ref, peerIP, ourIP, header.IPv4MinimumSize))
	if r := n.recv(func(m channel.Msg) bool { return m.ID == req.ID && ops.OpOf(m) == ops.OpDeliver }); ops.StatusOf(r) != ops.StatusOK {
		n.t.Fatalf("OpDeliver = %s", ops.StatusOf(r))
	}
	out := n.recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput })
	n.send(out) // copied out
	seg, err := n.peer.Pool(out.Ref.Pool).Bytes(out.Ref)
	if err != nil {
		n.t.Fatal(err)
	}
	return header.TCP(seg).Flags()
}

// startTCP starts a generation of the tcp command.
func startTCP(t *testing.T, h *hub.Hub, storePath string) *exec.Cmd {
	t.Helper()
	return hubtest.Start(t, h, "tcp", "KEEPNET_TCP_CHILD", "-store", storePath)
}

// TestRestartKeepsListeners: the command listens, is killed, and its next
// generation answers a SYN to the same port without syscall listening
// again.
func TestRestartKeepsListeners(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := context.Background()
	storePath := hubtest.Store(t)

	h, err := hub.New([]hub.Node{
		{Name: "tcp", Peers: []string{"ip", "syscall"}, Pools: []hub.PoolSpec{{Name: tcp.OutPool, Bufs: 8, BufSize: 64 << 10}}},
		{Name: "ip", Peers: []string{"tcp"}, Pools: []hub.PoolSpec{{Name: "ip.up", Bufs: 8, BufSize: 2048}}},
		{Name: "syscall", Peers: []string{"tcp"}, Pools: []hub.PoolSpec{{Name: "syscall.io", Bufs: 8, BufSize: 2048, Writers: []string{"tcp"}}}},
	}, hub.Shared(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ip, sys := join(t, h, "ip"), join(t, h, "syscall")

	first := startTCP(t, h, storePath)
	ip.meet()
	sys.meet()
	ip.answerAddr()
	for _, m := range []channel.Msg{
		ops.OpOpen.Msg(1, uint64(ops.TCP)),
		ops.OpBind.WithAddr(1, ops.MakeAddr(netip.IPv4Unspecified(), 80)),
		ops.OpListen.Msg(1, 16),
	} {
		if r := sys.callMsg(m); ops.StatusOf(r) != ops.StatusOK {
			t.Fatalf("%v = %s", ops.OpOf(m), ops.StatusOf(r))
		}
	}
	if f := ip.syn(80); f != header.TCPFlagSYN|header.TCPFlagACK {
		t.Fatalf("generation 1: answer to a SYN to :80 has flags %#x, want SYN-ACK", f)
	}
	// The record reaches the store (written off the loop).
	c := store.Dial(storePath)
	defer c.Close()
	deadline := time.Now().Add(waitFor)
	for {
		if v, ok, _ := c.Get(ctx, tcp.StoreNS, "1"); ok {
			if r, err := tcp.ParseRecord("1", v); err != nil || r.Local.Port() != 80 {
				t.Fatalf("stored record = %+v, %v; want socket 1 on :80", r, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listener 1's record never reached the store")
		}
		time.Sleep(10 * time.Millisecond)
	}

	first.Process.Kill()
	first.Wait()
	killed := time.Now()
	startTCP(t, h, storePath)
	ip.meet()
	sys.meet()
	ip.answerAddr()
	if f := ip.syn(80); f != header.TCPFlagSYN|header.TCPFlagACK {
		t.Errorf("generation 2: answer to a SYN to :80 has flags %#x, want SYN-ACK (listener restored)", f)
	}
	t.Logf("listening again %v after the kill", time.Since(killed))
	if f := ip.syn(81); f&header.TCPFlagRST == 0 {
		t.Errorf("generation 2: answer to a SYN to :81 has flags %#x, want RST", f)
	}
}
