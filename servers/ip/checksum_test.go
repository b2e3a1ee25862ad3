package ip

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"keepnet/drivers/link"
	"keepnet/servers/header"
)

// offload6Link is a link with multicast groups (IPv6) whose device
// announced features.
type offload6Link struct {
	mcastLink
	offloads []link.Offload
	features uint64
}

func (l *offload6Link) SendFrameOffload(f []byte, o link.Offload) error {
	l.offloads = append(l.offloads, o)
	return l.SendFrame(f)
}

func (l *offload6Link) Features() uint64 { return l.features }

// newOffload6 is a testbed6 on an offload6Link with features, its
// link-local address ready and the peer's link-layer address known.
func newOffload6(t *testing.T, features uint64) (*testbed6, *offload6Link) {
	t.Helper()
	l := &offload6Link{mcastLink: mcastLink{groups: map[header.MAC]bool{}}, features: features}
	tb := &testbed6{link: &l.mcastLink, clock: &fakeClock{epoch}}
	tb.Stack = New(testCfg, l, tb.clock, nil)
	tb.EnableIPv6(IPv6Config{}, nil)
	tb.ready(t)
	sn := header.SolicitedNode(ourLL)
	tb.HandleFrame(frame6(peerMAC, header.MulticastMAC(sn), peerLL, sn, 255, header.ProtocolICMPv6, ns(peerLL, peerMAC, ourLL)))
	tb.link.take()
	l.offloads = nil
	return tb, l
}

// udpSeg and tcpSeg are transport segments whose checksum IP is to fill.
func udpSeg(n int) []byte {
	seg := make([]byte, header.UDPMinimumSize+n)
	header.UDP(seg).Encode(&header.UDPFields{SrcPort: 7, DstPort: 4000, Length: uint16(len(seg))})
	for i := range seg[header.UDPMinimumSize:] {
		seg[header.UDPMinimumSize+i] = byte(i * 3)
	}
	return seg
}

// Over IPv6 IP leaves a TCP or UDP checksum to the device where it said
// it does that one (link.FeatureChecksum6, FeatureUDPChecksum6): one frame,
// an Offload naming the IPv6 and transport headers, and in the checksum
// field the pseudo-header sum with the length, which the device finishes.
// Where it does not (UDP on the e1000e), and for a datagram too big for
// one frame (fragments), IP computes the checksum itself.
func TestOutputChecksumOffload6(t *testing.T) {
	udpWant := link.Offload{L3: 14, L4: 54, IPv6: true}
	tcpWant := link.Offload{L3: 14, L4: 54, TCP: true, IPv6: true}
	for _, tc := range []struct {
		name     string
		features uint64
		proto    uint8
		seg      []byte
		want     []link.Offload // nil: checksummed here
		frames   int
	}{
		{"UDP", link.FeatureChecksum6 | link.FeatureUDPChecksum6, header.ProtocolUDP, udpSeg(100), []link.Offload{udpWant}, 1},
		{"TCP", link.FeatureChecksum6 | link.FeatureUDPChecksum6, header.ProtocolTCP, tcpSegment(1000), []link.Offload{tcpWant}, 1},
		{"UDP, device without UDP over IPv6", link.FeatureChecksum6, header.ProtocolUDP, udpSeg(100), nil, 1},
		{"TCP, device without UDP over IPv6", link.FeatureChecksum6, header.ProtocolTCP, tcpSegment(1000), []link.Offload{tcpWant}, 1},
		{"UDP, no IPv6 offloads", link.FeatureChecksum | link.FeatureTSO, header.ProtocolUDP, udpSeg(100), nil, 1},
		{"UDP in fragments", link.FeatureChecksum6 | link.FeatureUDPChecksum6, header.ProtocolUDP, udpSeg(3000), nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, l := newOffload6(t, tc.features)
			if err := tb.OutputTransport6(tc.proto, netip.Addr{}, peerLL, tc.seg, true); err != nil {
				t.Fatal(err)
			}
			frames := l.take()
			if len(frames) != tc.frames || len(l.offloads) != len(tc.want) {
				t.Fatalf("%d frames, offloads %+v; want %d frames, offloads %+v", len(frames), l.offloads, tc.frames, tc.want)
			}
			if tc.want != nil && l.offloads[0] != tc.want[0] {
				t.Errorf("offload %+v, want %+v", l.offloads[0], tc.want[0])
			}
			if tc.frames > 1 {
				return // TestIPv6Fragments checks the reassembled checksum
			}
			h := header.IPv6(header.Ethernet(frames[0]).Payload())
			seg := h.Payload()
			off, _ := checksumOffset(tc.proto)
			field := binary.BigEndian.Uint16(seg[off:])
			if tc.want != nil {
				if want := header.PseudoHeaderChecksum6(tc.proto, ourLL, peerLL, uint32(len(seg))); field != want {
					t.Errorf("checksum field %#x, want the pseudo-header sum %#x", field, want)
				}
				if c := tb.Counters().IP6ChecksumOffload; c != 1 {
					t.Errorf("IP6ChecksumOffload = %d, want 1", c)
				}
				return
			}
			if header.Checksum(seg, header.PseudoHeaderChecksum6(tc.proto, ourLL, peerLL, uint32(len(seg)))) != 0xFFFF || field == 0 {
				t.Errorf("checksum %#x computed here does not verify", field)
			}
		})
	}
}

// fake4 is a transport that takes whole IPv4 datagrams and says whether
// each came verified.
type fake4 struct{ verified []bool }

func (f *fake4) Deliver(uint8, netip.Addr, netip.Addr, []byte) {}
func (f *fake4) DeliverDatagram(_ header.IPv4, verified bool) {
	f.verified = append(f.verified, verified)
}

// A frame whose checksums the device verified (HandleFrameChecked): IP
// does not check its IPv4 header checksum again, and tells the transport
// the TCP/UDP checksum is verified — the datagram is delivered even with
// a checksum that would not verify here, which is how the test tells the
// check was skipped. An unmarked frame is checked as ever, and a datagram
// put together from fragments is never verified, whatever its frames say.
func TestReceiveChecked(t *testing.T) {
	udp := &fake4{}
	l := &fakeLink{}
	s := New(testCfg, l, &fakeClock{epoch}, map[uint8]Transport{header.ProtocolUDP: udp})
	seg := udpSeg(20)
	header.UDP(seg).SetChecksum(0x1234) // wrong: only a device's word lets it through
	badHeader := fromPeer(header.ProtocolUDP, 1, seg)
	badHeader[header.EthernetMinimumSize+10] ^= 0xFF // the IPv4 header checksum

	s.HandleFrameChecked(fromPeer(header.ProtocolUDP, 1, seg), link.RxCheckedL4|link.RxCheckedIPv4)
	s.HandleFrame(fromPeer(header.ProtocolUDP, 2, seg))
	s.HandleFrameChecked(badHeader, link.RxCheckedL4|link.RxCheckedIPv4)
	s.HandleFrame(badHeader)
	for _, f := range fragmentsFromPeer(header.ProtocolUDP, 3, udpSeg(2000), 1480) {
		s.HandleFrameChecked(f, link.RxCheckedL4|link.RxCheckedIPv4)
	}
	want := []bool{true, false, true, false}
	if len(udp.verified) != len(want) {
		t.Fatalf("delivered %v, want %v", udp.verified, want)
	}
	for i := range want {
		if udp.verified[i] != want[i] {
			t.Errorf("datagram %d: verified %v, want %v", i, udp.verified[i], want[i])
		}
	}
	c := s.Counters()
	if c.IPBadChecksum != 1 || c.L4ChecksumVerified != 2 || c.IPChecksumVerified != 4 {
		t.Errorf("IPBadChecksum, L4ChecksumVerified, IPChecksumVerified = %d, %d, %d; want 1 (the unmarked bad header), 2, 4 (two frames and two fragments marked)",
			c.IPBadChecksum, c.L4ChecksumVerified, c.IPChecksumVerified)
	}
}

// The same over IPv6: a marked datagram is delivered verified, an
// unmarked one not, a reassembled one never.
func TestReceiveChecked6(t *testing.T) {
	udp := &fake6{}
	tb := &testbed6{link: &mcastLink{groups: map[header.MAC]bool{}}, clock: &fakeClock{epoch}}
	tb.Stack = New(testCfg, tb.link, tb.clock, map[uint8]Transport{header.ProtocolUDP: udp})
	tb.EnableIPv6(IPv6Config{}, nil)
	tb.ready(t)
	seg := udpSeg(20)
	f := frame6(peerMAC, ourMAC, peerLL, ourLL, 64, header.ProtocolUDP, seg)
	tb.HandleFrameChecked(f, link.RxCheckedL4)
	tb.HandleFrame(f)

	// Fragments, as a peer's Stack cuts them.
	tx, txl := newOffload6(t, 0)
	_ = tx.OutputTransport6(header.ProtocolUDP, netip.Addr{}, peerLL, udpSeg(3000), true)
	for _, fr := range txl.take() {
		// tx is ourMAC/ourLL talking to peerLL: turn each frame around.
		h := header.IPv6(header.Ethernet(fr).Payload())
		tb.HandleFrameChecked(frame6(peerMAC, ourMAC, peerLL, ourLL, 64, h.NextHeader(), h.Payload()), link.RxCheckedL4)
	}
	want := []bool{true, false, false}
	if len(udp.verified) != len(want) {
		t.Fatalf("delivered %v, want %v", udp.verified, want)
	}
	for i := range want {
		if udp.verified[i] != want[i] {
			t.Errorf("datagram %d: verified %v, want %v", i, udp.verified[i], want[i])
		}
	}
	if c := tb.Counters().IP6ChecksumVerified; c != 1 {
		t.Errorf("IP6ChecksumVerified = %d, want 1", c)
	}
}
