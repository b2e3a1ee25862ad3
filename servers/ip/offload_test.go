package ip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"keepnet/drivers/link"
	"keepnet/servers/header"
)

// offloadLink is a fakeLink that takes offload requests too.
type offloadLink struct {
	fakeLink
	offloads []link.Offload
	features uint64 // what the device announced (only IPv6 asks)
}

func (l *offloadLink) SendFrameOffload(f []byte, o link.Offload) error {
	l.offloads = append(l.offloads, o)
	return l.SendFrame(f)
}

func (l *offloadLink) Features() uint64 { return l.features }

// tcpSegment is a TCP header (no options) and n bytes of payload with a
// checksum field the transport left for the device.
func tcpSegment(n int) []byte {
	seg := make([]byte, header.TCPMinimumSize+n)
	binary.BigEndian.PutUint16(seg[0:], 80)
	binary.BigEndian.PutUint16(seg[2:], 40000)
	seg[12] = 5 << 4
	binary.BigEndian.PutUint16(seg[16:], 0xDEAD) // garbage: IP must overwrite it
	for i := range seg[20:] {
		seg[20+i] = byte(i)
	}
	return seg
}

// A segment bigger than the MTU goes out as one frame with DF, a zero IPv4
// checksum, the pseudo-header sum without length in the TCP checksum field
// and an Offload naming the headers and the MSS: what the e1000 wants for
// TCP segmentation.
func TestOutputSegmentation(t *testing.T) {
	l := &offloadLink{}
	s := New(testCfg, l, &fakeClock{epoch}, nil)
	s.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
	l.take()
	seg := tcpSegment(10000)
	if err := s.OutputOffload(header.ProtocolTCP, peerIP, seg, Offload{Checksum: true, MSS: 1448}); err != nil {
		t.Fatal(err)
	}
	frames := l.take()
	if len(frames) != 1 || len(l.offloads) != 1 {
		t.Fatalf("%d frames, %d offloads; want one of each", len(frames), len(l.offloads))
	}
	f := frames[0]
	want := link.Offload{L3: 14, L4: 34, HdrLen: 54, MSS: 1448, TCP: true}
	if l.offloads[0] != want {
		t.Errorf("offload %+v, want %+v", l.offloads[0], want)
	}
	ip := header.IPv4(f[14:])
	if ip.Checksum() != 0 || ip.Flags()&header.IPv4FlagDontFragment == 0 || int(ip.TotalLength()) != 20+len(seg) {
		t.Errorf("IPv4 header %x: want checksum 0, DF, total length %d", f[14:34], 20+len(seg))
	}
	if got, want := binary.BigEndian.Uint16(f[34+16:]), header.PseudoHeaderChecksum(header.ProtocolTCP, ourIP, peerIP, 0); got != want {
		t.Errorf("TCP checksum field %#x, want the pseudo-header sum without length %#x", got, want)
	}
	if !bytes.Equal(f[54:], seg[20:]) {
		t.Error("payload changed")
	}
	if s.Counters().SegmentationOut != 1 {
		t.Errorf("SegmentationOut = %d, want 1", s.Counters().SegmentationOut)
	}
}

// Checksum offload of a segment that fits: a normal IPv4 header and the
// pseudo-header sum with the length, for the device to finish.
func TestOutputChecksumOffload(t *testing.T) {
	l := &offloadLink{}
	s := New(testCfg, l, &fakeClock{epoch}, nil)
	s.HandleFrame(arpFrame(header.ARPRequest, peerMAC, peerIP, header.BroadcastMAC, header.MAC{}, ourIP))
	l.take()
	seg := tcpSegment(100)
	if err := s.OutputOffload(header.ProtocolTCP, peerIP, seg, Offload{Checksum: true, MSS: 1448}); err != nil {
		t.Fatal(err)
	}
	f := l.take()[0]
	if l.offloads[0] != (link.Offload{L3: 14, L4: 34, TCP: true}) {
		t.Errorf("offload %+v, want checksum only", l.offloads[0])
	}
	if header.Checksum(f[14:34], 0) != 0xFFFF {
		t.Error("IPv4 checksum not valid")
	}
	if got, want := binary.BigEndian.Uint16(f[34+16:]), header.PseudoHeaderChecksum(header.ProtocolTCP, ourIP, peerIP, uint16(len(seg))); got != want {
		t.Errorf("TCP checksum field %#x, want the pseudo-header sum %#x", got, want)
	}
}

// Without an offloading link the Stack finishes the checksum itself, and
// refuses a segment it would have to cut.
func TestOutputOffloadFallback(t *testing.T) {
	tb := newTestbed(t)
	tb.knowPeer()
	seg := tcpSegment(100)
	if err := tb.OutputOffload(header.ProtocolTCP, peerIP, seg, Offload{Checksum: true}); err != nil {
		t.Fatal(err)
	}
	f := tb.link.take()[0]
	tcp := f[34:]
	if header.Checksum(tcp, header.PseudoHeaderChecksum(header.ProtocolTCP, ourIP, peerIP, uint16(len(tcp)))) != 0xFFFF {
		t.Error("TCP checksum not valid")
	}
	if binary.BigEndian.Uint16(seg[16:]) != 0xDEAD {
		t.Error("the transport's buffer was written to")
	}
	err := tb.OutputOffload(header.ProtocolTCP, peerIP, tcpSegment(5000), Offload{Checksum: true, MSS: 1448})
	if !errors.Is(err, ErrTooBig) {
		t.Errorf("segmentation without an offloading link = %v, want ErrTooBig", err)
	}
}
