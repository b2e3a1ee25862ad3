package ip

import (
	"testing"

	"keepnet/servers/header"
)

// The lone interface's path, both ways: what a second NIC must not make
// slower (forwarding is a branch off it).
func BenchmarkOneNIC(b *testing.B) {
	tb := newTestbed(b)
	tb.knowPeer()
	in := fromPeer(header.ProtocolUDP, 1, make([]byte, 1400))
	out := make([]byte, 1400)
	b.SetBytes(2 * 1400)
	for b.Loop() {
		tb.HandleFrame(in)
		tb.Output(header.ProtocolUDP, peerIP, out)
		tb.link.frames, tb.udp.got = tb.link.frames[:0], tb.udp.got[:0]
	}
}
