package main

import (
	"net/netip"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"keepnet/boot/hub"
	"keepnet/boot/hub/hubtest"
	"keepnet/kernel/channel"
	"keepnet/kernel/keep"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/pf"
	"keepnet/servers/pf/verdict"
)

// The test binary doubles as the pf command: the test starts it as a
// child wired by a real hub (as init wires it), with kept memory the hub
// holds and rules the test writes there as init does, and plays ip.
func TestMain(m *testing.M) { hubtest.Main(m, "KEEPNET_PF_CHILD", main) }

const (
	waitFor   = 5 * time.Second
	maxStates = 64
	webOnly   = "set default block\npass in proto tcp to any port 80 keep state\n"
)

var (
	client = netip.MustParseAddr("10.0.2.2")
	us     = netip.MustParseAddr("10.0.2.15")
)

// fakeIP is ip, played by the test over a real wiring socket.
type fakeIP struct {
	t      *testing.T
	conn   *wiring.Conn
	setup  *wiring.Setup
	peer   *wiring.Peer // the current pf generation
	nextID uint64
}

func joinIP(t *testing.T, h *hub.Hub) *fakeIP {
	t.Helper()
	files, err := h.ExtraFiles("ip")(func() {})
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
		t.Fatalf("ip: join: %v", err)
	}
	return &fakeIP{t: t, conn: conn, setup: setup}
}

// meet waits for the channel to pf's next generation.
func (ip *fakeIP) meet() {
	ip.t.Helper()
	p, err := wiring.NextPeer(ip.conn, waitFor)
	if err != nil || p.Name != "pf" {
		ip.t.Fatalf("ip: waiting for pf: %v, %v", p, err)
	}
	if ip.peer != nil {
		ip.peer.Close()
	}
	ip.peer = p
}

// ask asks pf about a TCP segment from the client's port sport to our
// port with flags, and returns the answer's status.
func (ip *fakeIP) ask(sport, port uint16, seq uint32, flags uint8) verdict.Status {
	ip.t.Helper()
	frames := ip.setup.Pools["ip.rx"]
	ref, ok := frames.Alloc()
	if !ok {
		ip.t.Fatal("ip.rx exhausted")
	}
	defer frames.Free(ref)
	b, _ := frames.Bytes(ref)
	eh, tl := header.EthernetMinimumSize, header.IPv4MinimumSize+header.TCPMinimumSize
	header.IPv4(b[eh:]).Encode(&header.IPv4Fields{TotalLength: uint16(tl), TTL: 64, Protocol: header.ProtocolTCP, Src: client, Dst: us})
	seg := header.TCP(b[eh+header.IPv4MinimumSize : eh+tl])
	seg.Encode(&header.TCPFields{SrcPort: sport, DstPort: port, Seq: seq, Ack: 1, Flags: flags, Window: 65535})
	ref.Len = uint32(eh + tl)
	ip.nextID++
	q := verdict.Ask(ref, 0, uint16(eh), verdict.In, 0)
	q.ID = ip.nextID
	if ip.peer.Port.Send(q) != 1 {
		ip.t.Fatal("channel to pf full")
	}
	deadline := time.Now().Add(waitFor)
	var in [1]channel.Msg
	for ip.peer.Port.Recv(in[:]) == 0 {
		if time.Now().After(deadline) {
			ip.t.Fatalf("pf answered nothing within %v", waitFor)
		}
		ip.peer.Port.Wait(100 * time.Millisecond)
	}
	if in[0].ID != q.ID {
		ip.t.Fatalf("answer to %d, want %d", in[0].ID, q.ID)
	}
	return verdict.StatusOf(in[0])
}

func (ip *fakeIP) expect(what string, port uint16, seq uint32, flags uint8, want verdict.Status) {
	ip.t.Helper()
	ip.expectFrom(what, 40000, port, seq, flags, want)
}

func (ip *fakeIP) expectFrom(what string, sport, port uint16, seq uint32, flags uint8, want verdict.Status) {
	ip.t.Helper()
	if got := ip.ask(sport, port, seq, flags); got != want {
		ip.t.Errorf("%s: %v, want %v", what, got, want)
	}
}

// startPF starts a generation of the pf command.
func startPF(t *testing.T, h *hub.Hub, storePath string) *exec.Cmd {
	t.Helper()
	return hubtest.Start(t, h, "pf", "KEEPNET_PF_CHILD", "-store", storePath, "-max-states", strconv.Itoa(maxStates))
}

// The command filters by the rules init wrote into its kept memory, and
// its next generation, after a SIGKILL, lets the flow the first one
// tracked go on while it still blocks what the rules block.
func TestRestartKeepsStates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	storePath := hubtest.Store(t)

	h, err := hub.New([]hub.Node{
		{Name: "pf", Peers: []string{"ip"}, Kept: []hub.KeptSpec{
			{Name: pf.StateName, Size: pf.KeptBytes(maxStates)}, {Name: pf.RulesName, Size: pf.RulesBytes},
		}},
		{Name: "ip", Peers: []string{"pf"}, Pools: []hub.PoolSpec{{Name: "ip.rx", Bufs: 8, BufSize: 2048}}},
	}, hub.Shared(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := h.Kept("pf", pf.RulesName) // as init does before pf's first start
	if err != nil {
		t.Fatal(err)
	}
	rules, err := keep.Map(f)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Unmap(rules)
	if err := pf.WriteRules(rules, webOnly); err != nil {
		t.Fatal(err)
	}
	ip := joinIP(t, h)

	first := startPF(t, h, storePath)
	ip.meet()
	ip.expect("generation 1: SYN to :80", 80, 1000, header.TCPFlagSYN, verdict.StatusPass)
	ip.expect("generation 1: ACK to :80 after the SYN", 80, 1001, header.TCPFlagACK, verdict.StatusPass)
	ip.expect("generation 1: SYN to :81", 81, 1000, header.TCPFlagSYN, verdict.StatusBlock)

	first.Process.Kill()
	first.Wait()
	startPF(t, h, storePath)
	ip.meet()
	ip.expect("generation 2: ACK of the flow generation 1 tracked", 80, 1001, header.TCPFlagACK, verdict.StatusPass)
	ip.expect("generation 2: SYN to :81", 81, 1000, header.TCPFlagSYN, verdict.StatusBlock)
	ip.expectFrom("generation 2: ACK of a flow nobody tracked", 40001, 80, 1001, header.TCPFlagACK, verdict.StatusBlock)
}
