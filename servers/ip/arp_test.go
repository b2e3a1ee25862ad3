package ip

import (
	"net/netip"
	"testing"
	"time"

	"keepnet/servers/header"
)

func TestARPInput(t *testing.T) {
	none := header.MAC{}
	tests := []struct {
		name  string
		in    []byte
		want  [][]byte // frames we send
		count Counters
	}{
		{"request for us: reply to the asker",
			arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, none, ourIP),
			[][]byte{arpFrame(header.ARPReply, ourMAC, ourIP, peerMAC, peerMAC, peerIP)},
			Counters{FramesIn: 1, FramesOut: 1, ARPRequestsIn: 1, ARPRepliesOut: 1}},
		{"unicast request for us (cache refresh)",
			arpFrame(header.ARPRequest, peerMAC, peerIP, ourMAC, ourMAC, ourIP),
			[][]byte{arpFrame(header.ARPReply, ourMAC, ourIP, peerMAC, peerMAC, peerIP)},
			Counters{FramesIn: 1, FramesOut: 1, ARPRequestsIn: 1, ARPRepliesOut: 1}},
		{"request for another address: silence",
			arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, none, netip.MustParseAddr("10.0.2.99")),
			nil,
			Counters{FramesIn: 1, ARPRequestsIn: 1, ARPNotForUs: 1}},
		{"probe from 0.0.0.0 for us: defended with a reply",
			arpFrame(header.ARPRequest, peerMAC, netip.IPv4Unspecified(), header.BroadcastMAC, none, ourIP),
			[][]byte{arpFrame(header.ARPReply, ourMAC, ourIP, peerMAC, peerMAC, netip.IPv4Unspecified())},
			Counters{FramesIn: 1, FramesOut: 1, ARPRequestsIn: 1, ARPRepliesOut: 1}},
		{"reply to us: learned, nothing sent",
			arpFrame(header.ARPReply, peerMAC, peerIP, ourMAC, ourMAC, ourIP),
			nil,
			Counters{FramesIn: 1, ARPRepliesIn: 1}},
		{"someone else claims our address",
			arpFrame(header.ARPReply, otherMAC, ourIP, header.BroadcastMAC, none, ourIP),
			nil,
			Counters{FramesIn: 1, ARPRepliesIn: 1, ARPConflicts: 1}},
		{"truncated",
			arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, none, ourIP)[:header.EthernetMinimumSize+27],
			nil,
			Counters{FramesIn: 1, ARPBad: 1}},
		{"operation 3 (RARP)",
			func() []byte {
				f := arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, none, ourIP)
				header.ARP(f[header.EthernetMinimumSize:]).SetOp(3)
				return f
			}(),
			nil,
			Counters{FramesIn: 1, ARPBad: 1}},
		{"request for us to another MAC: not for us at Ethernet",
			arpFrame(header.ARPRequest, peerMAC, peerIP, otherMAC, none, ourIP),
			nil,
			Counters{FramesIn: 1, FramesNotForUs: 1}},
	}
	for _, tt := range tests {
		tb := newTestbed(t)
		tb.HandleFrame(tt.in)
		got := tb.link.take()
		if len(got) != len(tt.want) {
			t.Errorf("%s: HandleFrame() sent %d frames, want %d", tt.name, len(got), len(tt.want))
		} else {
			for i := range got {
				if d := frameDiff(got[i], tt.want[i]); d != "" {
					t.Errorf("%s: frame %d:%s", tt.name, i, d)
				}
			}
		}
		if d := counterDiff(tb.Counters(), tt.count); d != "" {
			t.Errorf("%s: Counters(): %s", tt.name, d)
		}
	}
}

// The peer learned from its own request is used without asking.
func TestARPLearnsFromRequest(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	if err := tb.Output(header.ProtocolUDP, peerIP, []byte("hi")); err != nil {
		t.Fatalf("Output() = %v, want nil", err)
	}
	frames := tb.link.take()
	if len(frames) != 1 {
		t.Fatalf("Output() sent %d frames, want 1 (no ARP)", len(frames))
	}
	if got := parseIP(t, frames[0]).eth.Dst(); got != peerMAC {
		t.Errorf("Output(): Ethernet Dst = %v, want %v", got, peerMAC)
	}
}

// Output to an unresolved neighbour: ARP request, queue, flush on reply.
func TestOutputResolves(t *testing.T) {
	tests := []struct {
		name    string
		dst     netip.Addr
		nextIP  netip.Addr
		nextMAC header.MAC
	}{
		{"on the subnet", peerIP, peerIP, peerMAC},
		{"through the gateway", farIP, gwIP, gwMAC},
	}
	for _, tt := range tests {
		tb := newTestbed(t)
		for _, p := range []string{"one", "two"} {
			if err := tb.Output(header.ProtocolUDP, tt.dst, []byte(p)); err != nil {
				t.Fatalf("%s: Output(%q) = %v, want nil", tt.name, p, err)
			}
		}
		got := tb.link.take()
		want := arpFrame(header.ARPRequest, ourMAC, ourIP, header.BroadcastMAC, header.MAC{}, tt.nextIP)
		if len(got) != 1 {
			t.Fatalf("%s: Output() twice sent %d frames, want 1 ARP request", tt.name, len(got))
		}
		if d := frameDiff(got[0], want); d != "" {
			t.Errorf("%s: ARP request:%s", tt.name, d)
		}

		tb.HandleFrame(arpFrame(header.ARPReply, tt.nextMAC, tt.nextIP, ourMAC, ourMAC, ourIP))
		got = tb.link.take()
		if len(got) != 2 {
			t.Fatalf("%s: after ARP reply, sent %d frames, want the 2 queued", tt.name, len(got))
		}
		for i, p := range []string{"one", "two"} {
			s := parseIP(t, got[i])
			if s.eth.Dst() != tt.nextMAC || s.ip.Dst() != tt.dst || s.ip.Src() != ourIP || string(s.ip.Payload()) != p {
				t.Errorf("%s: flushed frame %d = to %v, %v->%v %q, want to %v, %v->%v %q", tt.name, i,
					s.eth.Dst(), s.ip.Src(), s.ip.Dst(), s.ip.Payload(), tt.nextMAC, ourIP, tt.dst, p)
			}
		}
		if id0, id1 := parseIP(t, got[0]).ip.ID(), parseIP(t, got[1]).ip.ID(); id0 == id1 {
			t.Errorf("%s: two datagrams with the same IP ID %d", tt.name, id0)
		}
	}
}

func TestOutputNoRoute(t *testing.T) {
	cfg := testCfg
	cfg.Gateway = netip.Addr{}
	tb := newTestbed(t)
	tb.Stack = New(cfg, tb.link, tb.clock, nil)
	tests := []struct {
		dst  netip.Addr
		want error
	}{
		{farIP, ErrNoRoute},
		{netip.MustParseAddr("::1"), ErrNoRoute},
		{ourIP, ErrNoRoute},
	}
	for _, tt := range tests {
		if err := tb.Output(header.ProtocolUDP, tt.dst, nil); !errorsIs(err, tt.want) {
			t.Errorf("Output(udp, %v) = %v, want %v", tt.dst, err, tt.want)
		}
	}
	if err := tb.Output(header.ProtocolUDP, peerIP, make([]byte, 65516)); !errorsIs(err, ErrTooBig) {
		t.Errorf("Output(udp, %v, 65516 bytes) = %v, want %v", peerIP, err, ErrTooBig)
	}
	if got := tb.Counters().NoRoute; got != 3 {
		t.Errorf("Counters().NoRoute = %d, want 3", got)
	}
	if got := tb.link.take(); len(got) != 0 {
		t.Errorf("refused Outputs sent %d frames, want 0", len(got))
	}
}

// Broadcast goes out at once, to ff:ff:ff:ff:ff:ff.
func TestOutputBroadcast(t *testing.T) {
	tb := newTestbed(t)
	for _, dst := range []netip.Addr{netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("10.0.2.255")} {
		if err := tb.Output(header.ProtocolUDP, dst, []byte("x")); err != nil {
			t.Fatalf("Output(udp, %v) = %v, want nil", dst, err)
		}
		f := tb.link.take()
		if len(f) != 1 || parseIP(t, f[0]).eth.Dst() != header.BroadcastMAC {
			t.Errorf("Output(udp, %v) sent %d frames, want 1 to broadcast", dst, len(f))
		}
	}
}

// No answer: requests at 0, 1 and 2 s, then the queue is dropped at 3 s.
func TestARPRetriesExhausted(t *testing.T) {
	tb := newTestbed(t)
	for i := 0; i < 3; i++ {
		tb.Output(header.ProtocolUDP, peerIP, []byte{byte(i)})
	}
	steps := []struct {
		after    time.Duration
		requests int
	}{
		{0, 1}, {500 * time.Millisecond, 0}, {500 * time.Millisecond, 1}, {time.Second, 1}, {time.Second, 0}, {time.Second, 0},
	}
	at := time.Duration(0)
	for _, st := range steps {
		tb.clock.Advance(st.after)
		at += st.after
		tb.Tick()
		if got := len(tb.link.take()); got != st.requests {
			t.Errorf("at %v: Tick() sent %d ARP requests, want %d", at, got, st.requests)
		}
	}
	c := tb.Counters()
	if c.QueueDrops != 3 || c.ARPResolveFailures != 1 || c.ARPRequestsOut != 3 {
		t.Errorf("Counters() QueueDrops, ARPResolveFailures, ARPRequestsOut = %d, %d, %d, want 3, 1, 3",
			c.QueueDrops, c.ARPResolveFailures, c.ARPRequestsOut)
	}
	// A late reply flushes nothing: the queue is gone.
	tb.HandleFrame(arpFrame(header.ARPReply, peerMAC, peerIP, ourMAC, ourMAC, ourIP))
	if got := len(tb.link.take()); got != 0 {
		t.Errorf("late ARP reply flushed %d frames, want 0", got)
	}
}

// The queue keeps the newest ARPQueueLen packets.
func TestARPQueueBound(t *testing.T) {
	tb := newTestbed(t)
	for i := 0; i < 20; i++ {
		tb.Output(header.ProtocolUDP, peerIP, []byte{byte(i)})
	}
	tb.link.take()
	tb.HandleFrame(arpFrame(header.ARPReply, peerMAC, peerIP, ourMAC, ourMAC, ourIP))
	got := tb.link.take()
	if len(got) != 16 {
		t.Fatalf("flushed %d frames, want 16", len(got))
	}
	if first := parseIP(t, got[0]).ip.Payload()[0]; first != 4 {
		t.Errorf("first flushed packet = %d, want 4 (0..3 dropped, oldest first)", first)
	}
	if c := tb.Counters().QueueDrops; c != 4 {
		t.Errorf("Counters().QueueDrops = %d, want 4", c)
	}
}

// A resolved entry is used for ARPReachable, then resolved again.
func TestARPAgeing(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	tb.clock.Advance(59 * time.Second)
	tb.Tick()
	tb.Output(header.ProtocolUDP, peerIP, []byte("a"))
	if f := tb.link.take(); len(f) != 1 || header.Ethernet(f[0]).Type() != header.EtherTypeIPv4 {
		t.Fatalf("Output at 59 s sent %d frames, want 1 IPv4 frame", len(f))
	}
	tb.clock.Advance(time.Second)
	tb.Tick()
	tb.Output(header.ProtocolUDP, peerIP, []byte("b"))
	f := tb.link.take()
	if len(f) != 1 || header.Ethernet(f[0]).Type() != header.EtherTypeARP {
		t.Fatalf("Output at 60 s sent %d frames, want 1 ARP request", len(f))
	}
}

func TestGratuitousARP(t *testing.T) {
	tb := newTestbed(t)
	if err := tb.AnnounceGratuitousARP(); err != nil {
		t.Fatalf("AnnounceGratuitousARP() = %v, want nil", err)
	}
	got := tb.link.take()
	want := arpFrame(header.ARPRequest, ourMAC, ourIP, header.BroadcastMAC, header.MAC{}, ourIP)
	if len(got) != 1 {
		t.Fatalf("AnnounceGratuitousARP() sent %d frames, want 1", len(got))
	}
	if d := frameDiff(got[0], want); d != "" {
		t.Errorf("AnnounceGratuitousARP():%s", d)
	}
}

// The cache never grows past MaxNeighbors.
func TestARPCacheBound(t *testing.T) {
	tb := newTestbed(t)
	l := DefaultLimits()
	l.MaxNeighbors = 4
	tb.SetLimits(l)
	for i := 0; i < 10; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, 2, byte(100 + i)})
		tb.HandleFrame(arpFrame(header.ARPRequest, peerMAC, ip, header.BroadcastMAC, header.MAC{}, ourIP))
		tb.clock.Advance(time.Millisecond)
	}
	if n := len(tb.neigh); n != 4 {
		t.Errorf("after 10 neighbours, cache holds %d entries, want 4", n)
	}
	if c := tb.Counters().ARPEvictions; c != 6 {
		t.Errorf("Counters().ARPEvictions = %d, want 6", c)
	}
}
