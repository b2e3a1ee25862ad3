package udp

import (
	"net/netip"
	"testing"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// A connected socket hears of a port unreachable about its peer: a
// receive waiting gets it at once; without one, the next receive or send
// does, once. Errors about other peers, unconnected sockets, or soft
// errors change nothing.
func TestICMPPortUnreachable(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 4000))
	if _, st := tb.Connect(1, addr(peerIP, 53)); st != ops.StatusOK {
		t.Fatalf("Connect = %s", st.Text())
	}
	tb.open(t, 2, addr(netip.IPv4Unspecified(), 4001)) // not connected
	local := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(ourIP, port) }
	peer53 := netip.AddrPortFrom(peerIP, 53)
	unreach := header.ICMPv4DstUnreachable

	// Ignored: another peer, an unconnected socket, a soft error.
	tb.HandleICMP(unreach, header.ICMPv4PortUnreachable, local(4000), netip.AddrPortFrom(otherIP, 53))
	tb.HandleICMP(unreach, header.ICMPv4PortUnreachable, local(4001), peer53)
	tb.HandleICMP(unreach, header.ICMPv4HostUnreachable, local(4000), peer53)
	if _, st := tb.SendTo(1, ops.Addr{}, []byte("q")); st != ops.StatusOK {
		t.Fatalf("SendTo after ignored errors = %s, want ok", st.Text())
	}
	if c := tb.Counters(); c.ICMPIgnored != 3 || c.ICMPRefused != 0 {
		t.Errorf("ICMPIgnored %d, ICMPRefused %d; want 3, 0", c.ICMPIgnored, c.ICMPRefused)
	}

	// A receive waiting is answered refused.
	tb.RecvFrom(1, 10, make([]byte, 100))
	tb.HandleICMP(unreach, header.ICMPv4PortUnreachable, local(4000), peer53)
	if d := tb.takeDone(); len(d) != 1 || d[0].Tag != 10 || d[0].Status != ops.StatusRefused {
		t.Fatalf("completions %+v, want receive 10 refused", d)
	}
	// None waiting: the next send says it, once; the one after goes.
	tb.HandleICMP(unreach, header.ICMPv4PortUnreachable, local(4000), peer53)
	if _, st := tb.SendTo(1, ops.Addr{}, []byte("q")); st != ops.StatusRefused {
		t.Errorf("SendTo after port unreachable = %s, want refused", st.Text())
	}
	if _, st := tb.SendTo(1, ops.Addr{}, []byte("q")); st != ops.StatusOK {
		t.Errorf("the SendTo after that = %s, want ok", st.Text())
	}
	// Or the next receive.
	tb.HandleICMP(unreach, header.ICMPv4ProtoUnreachable, local(4000), peer53)
	tb.RecvFrom(1, 11, make([]byte, 100))
	if d := tb.takeDone(); len(d) != 1 || d[0].Tag != 11 || d[0].Status != ops.StatusRefused {
		t.Fatalf("completions %+v, want receive 11 refused", d)
	}
}
