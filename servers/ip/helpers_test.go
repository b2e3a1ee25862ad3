package ip

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"keepnet/kernel/pool"
	"keepnet/servers/header"
)

// The test network: us, a peer on the subnet, the gateway, and a stranger.
var (
	ourMAC   = header.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	ourIP    = netip.MustParseAddr("10.0.2.15")
	peerMAC  = header.MAC{0x02, 0, 0, 0, 0, 0x02}
	peerIP   = netip.MustParseAddr("10.0.2.2")
	gwMAC    = header.MAC{0x02, 0, 0, 0, 0, 0x01}
	gwIP     = netip.MustParseAddr("10.0.2.1")
	otherMAC = header.MAC{0x02, 0, 0, 0, 0, 0x99}
	farIP    = netip.MustParseAddr("192.0.2.7")
	testCfg  = Config{Addr: netip.MustParsePrefix("10.0.2.15/24"), Gateway: gwIP, MAC: ourMAC, MTU: 1500}
	epoch    = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

// fakeLink records the frames the Stack sends.
type fakeLink struct{ frames [][]byte }

func (l *fakeLink) SendFrame(f []byte) error {
	l.frames = append(l.frames, bytes.Clone(f))
	return nil
}

// take returns and forgets the frames sent so far.
func (l *fakeLink) take() [][]byte {
	f := l.frames
	l.frames = nil
	return f
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

type delivery struct {
	proto    uint8
	src, dst netip.Addr
	payload  string
}

type fakeTransport struct{ got []delivery }

func (t *fakeTransport) Deliver(proto uint8, src, dst netip.Addr, payload []byte) {
	t.got = append(t.got, delivery{proto, src, dst, string(payload)})
}

// testbed is a Stack wired to fakes; udp is the transport for protocol 17.
type testbed struct {
	*Stack
	link  *fakeLink
	clock *fakeClock
	udp   *fakeTransport
}

func newTestbed(t testing.TB) *testbed {
	t.Helper()
	tb := &testbed{link: &fakeLink{}, clock: &fakeClock{epoch}, udp: &fakeTransport{}}
	tb.Stack = New(testCfg, tb.link, tb.clock, map[uint8]Transport{header.ProtocolUDP: tb.udp})
	return tb
}

// knowPeer has the peer ARP for us, as it does before its first ping, and
// discards our reply.
func (tb *testbed) knowPeer() {
	tb.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
	tb.link.take()
}

func arpFrame(op header.ARPOp, sha header.MAC, spa netip.Addr, ethDst, tha header.MAC, tpa netip.Addr) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{Dst: ethDst, Src: sha, Type: header.EtherTypeARP})
	header.ARP(b[header.EthernetMinimumSize:]).Encode(&header.ARPFields{Op: op, SenderMAC: sha, SenderIP: spa, TargetMAC: tha, TargetIP: tpa})
	return b
}

// ipFrame builds an Ethernet frame holding an IPv4 datagram with payload.
func ipFrame(src, dst header.MAC, f header.IPv4Fields, payload []byte) []byte {
	hl := header.IPv4MinimumSize + len(f.Options)
	b := make([]byte, header.EthernetMinimumSize+hl+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{Dst: dst, Src: src, Type: header.EtherTypeIPv4})
	if f.TotalLength == 0 {
		f.TotalLength = uint16(hl + len(payload))
	}
	if f.TTL == 0 {
		f.TTL = 64
	}
	header.IPv4(b[header.EthernetMinimumSize:]).Encode(&f)
	copy(b[header.EthernetMinimumSize+hl:], payload)
	return b
}

// echo builds an ICMP echo request (or reply) message.
func echo(typ header.ICMPv4Type, id, seq uint16, data []byte) []byte {
	m := make([]byte, header.ICMPv4MinimumSize+len(data))
	copy(m[header.ICMPv4MinimumSize:], data)
	header.ICMPv4(m).Encode(&header.ICMPv4Fields{Type: typ, Rest: uint32(id)<<16 | uint32(seq)})
	return m
}

// fromPeer is a frame from the peer to us carrying payload of protocol proto.
func fromPeer(proto uint8, id uint16, payload []byte) []byte {
	return ipFrame(peerMAC, ourMAC, header.IPv4Fields{ID: id, Protocol: proto, Src: peerIP, Dst: ourIP}, payload)
}

// fragmentsFromPeer splits payload into fragments of at most chunk bytes
// (a multiple of 8) from the peer to us, each in its own frame.
func fragmentsFromPeer(proto uint8, id uint16, payload []byte, chunk int) [][]byte {
	var frames [][]byte
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		var flags uint16
		if end < len(payload) {
			flags = header.IPv4FlagMoreFragments
		}
		frames = append(frames, ipFrame(peerMAC, ourMAC, header.IPv4Fields{ID: id, Flags: flags, FragmentOffset: off,
			Protocol: proto, Src: peerIP, Dst: ourIP}, payload[off:end]))
	}
	return frames
}

// frag is one fragment from the peer at byte offset off.
func frag(id uint16, off int, more bool, data []byte) []byte {
	var flags uint16
	if more {
		flags = header.IPv4FlagMoreFragments
	}
	return ipFrame(peerMAC, ourMAC, header.IPv4Fields{ID: id, Flags: flags, FragmentOffset: off,
		Protocol: header.ProtocolUDP, Src: peerIP, Dst: ourIP}, data)
}

// sent is what the test sees of a frame the Stack sent: its Ethernet header
// and its validated IPv4 datagram.
type sent struct {
	eth header.Ethernet
	ip  header.IPv4
}

// parseIP validates a frame the Stack sent as Ethernet + IPv4.
func parseIP(t testing.TB, frame []byte) sent {
	t.Helper()
	if err := header.ValidateEthernet(frame); err != nil {
		t.Fatalf("sent frame % x: ValidateEthernet() = %v", frame, err)
	}
	eth := header.Ethernet(frame)
	if eth.Type() != header.EtherTypeIPv4 {
		t.Fatalf("sent frame type %#x, want IPv4", eth.Type())
	}
	if err := header.ValidateIPv4(eth.Payload()); err != nil {
		t.Fatalf("sent frame % x: ValidateIPv4() = %v", frame, err)
	}
	if len(frame) > header.EthernetMinimumSize+testCfg.MTU {
		t.Fatalf("sent frame of %d bytes, over the MTU", len(frame))
	}
	return sent{eth, header.IPv4(eth.Payload())}
}

// reassembleSent is the test side's reassembler: it puts the fragments of
// one datagram (in any order) back together and returns its payload.
func reassembleSent(t testing.TB, frames [][]byte) (first header.IPv4, payload []byte) {
	t.Helper()
	size := -1
	var buf []byte
	covered := 0
	for _, f := range frames {
		ip := parseIP(t, f).ip
		if first != nil && ip.ID() != first.ID() {
			t.Fatalf("fragment IDs %d and %d differ", ip.ID(), first.ID())
		}
		if first == nil || ip.FragmentOffset() == 0 {
			first = ip
		}
		off, data := ip.FragmentOffset(), ip.Payload()
		if ip.MoreFragments() && len(data)%8 != 0 {
			t.Fatalf("non-last fragment at %d carries %d bytes, not a multiple of 8", off, len(data))
		}
		if !ip.MoreFragments() {
			size = off + len(data)
		}
		if need := off + len(data); need > len(buf) {
			buf = append(buf, make([]byte, need-len(buf))...)
		}
		copy(buf[off:], data)
		covered += len(data)
	}
	if size != len(buf) || covered != size {
		t.Fatalf("fragments cover %d of %d bytes (size %d)", covered, len(buf), size)
	}
	return first, buf
}

// counterDiff lists the counters that differ, "Name: got, want w".
func counterDiff(got, want Counters) string {
	var d []string
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := 0; i < g.NumField(); i++ {
		if a, b := g.Field(i).Uint(), w.Field(i).Uint(); a != b {
			d = append(d, fmt.Sprintf("%s = %d, want %d", g.Type().Field(i).Name, a, b))
		}
	}
	return strings.Join(d, "; ")
}

// frameDiff describes two frames that should be equal.
func frameDiff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(want))
}

// testPool is a pool of n 2 KiB buffers, closed when the test ends.
func testPool(t testing.TB, id uint32, n int) *pool.Pool {
	p, err := pool.Create(id, n, 2048)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
