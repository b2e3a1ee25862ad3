package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/servers/header"
)

var (
	vnetSrc = netip.MustParseAddr("10.0.0.1")
	vnetDst = netip.MustParseAddr("10.0.0.2")
)

// tcpFrame builds an Ethernet/IPv4/TCP frame as a sending kernel hands it
// to a tap with offloads: total length and checksums as they come (the
// checksums left zero: the relay must compute them), 12 bytes of options.
func tcpFrame(seq uint32, flags uint8, payload []byte) []byte {
	f := make([]byte, ethLen+20+32, ethLen+20+32+len(payload))
	binary.BigEndian.PutUint16(f[ethType:], 0x0800)
	ip := f[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[ipTotalLen:], uint16(20+32+len(payload)))
	binary.BigEndian.PutUint16(ip[ipID:], 0xfffe) // the IDs wrap
	ip[6] = 0x40                                  // DF
	ip[8], ip[ipProto] = 64, 6
	copy(ip[ipSrc:], vnetSrc.AsSlice())
	copy(ip[ipSrc+4:], vnetDst.AsSlice())
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 80)
	binary.BigEndian.PutUint16(tcp[2:], 40000)
	binary.BigEndian.PutUint32(tcp[tcpSeqOff:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 7)
	tcp[12] = 8 << 4
	tcp[tcpFlagsOff] = flags
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) // NOP NOP timestamps
	return append(f, payload...)
}

func TestSegmentTCPv4(t *testing.T) {
	payload := make([]byte, 5000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	const mss, seq = 1448, 0xfffff000                    // the sequence numbers wrap too
	f := tcpFrame(seq, 0x80|0x10|tcpPSH|tcpFIN, payload) // CWR ACK PSH FIN
	var segs [][]byte
	if err := segmentTCPv4(f, mss, nil, func(s []byte) { segs = append(segs, bytes.Clone(s)) }); err != nil {
		t.Fatal(err)
	}
	if len(segs) != 4 {
		t.Fatalf("%d segments of 5000 bytes at MSS %d, want 4", len(segs), mss)
	}
	var got []byte
	for i, s := range segs {
		ip := header.IPv4(s[ethLen:])
		if int(ip.TotalLength()) != len(s)-ethLen {
			t.Errorf("segment %d: IPv4 total length %d, frame carries %d", i, ip.TotalLength(), len(s)-ethLen)
		}
		if header.Checksum(s[ethLen:ethLen+20], 0) != 0xffff {
			t.Errorf("segment %d: bad IPv4 header checksum", i)
		}
		if want := uint16(0xfffe + i); ip.ID() != want {
			t.Errorf("segment %d: IPv4 ID %#x, want %#x", i, ip.ID(), want)
		}
		tcp := header.TCP(s[ethLen+20:])
		if !tcp.ChecksumValid(vnetSrc, vnetDst) {
			t.Errorf("segment %d: bad TCP checksum", i)
		}
		if want := uint32(seq + i*mss); tcp.Seq() != want {
			t.Errorf("segment %d: seq %#x, want %#x", i, tcp.Seq(), want)
		}
		wantFlags := uint8(0x10)
		if i == 0 {
			wantFlags |= 0x80
		}
		if i == len(segs)-1 {
			wantFlags |= tcpPSH | tcpFIN
		}
		if tcp.Flags() != wantFlags {
			t.Errorf("segment %d: flags %#x, want %#x", i, tcp.Flags(), wantFlags)
		}
		if !bytes.Equal(tcp.Options(), f[ethLen+40:ethLen+52]) {
			t.Errorf("segment %d: options %x, want them repeated", i, tcp.Options())
		}
		if p := tcp.Payload(); len(p) > mss {
			t.Errorf("segment %d: %d payload bytes, above the MSS", i, len(p))
		}
		got = append(got, tcp.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("the segments' payloads do not add up to the original")
	}
}

// A frame that needs no cutting still gets its checksum finished: the field
// holds the pseudo-header sum, the rest is left to the reader.
func TestWireFramesFinishesChecksum(t *testing.T) {
	f := tcpFrame(1, 0x18, []byte("hello, world"))
	tcpLen := len(f) - ethLen - 20
	binary.BigEndian.PutUint16(f[ethLen+20+tcpCsumOff:], header.PseudoHeaderChecksum(6, vnetSrc, vnetDst, uint16(tcpLen)))
	h := vnetHdr{flags: vnetNeedsCsum, csumStart: ethLen + 20, csumOffset: tcpCsumOff}
	n := 0
	err := wireFrames(h, f, nil, func(s []byte) {
		n++
		if !header.TCP(s[ethLen+20:]).ChecksumValid(vnetSrc, vnetDst) {
			t.Errorf("checksum not finished")
		}
	})
	if err != nil || n != 1 {
		t.Fatalf("wireFrames = %v with %d frames, want nil with 1", err, n)
	}
	h.csumStart = uint16(len(f))
	if err := wireFrames(h, f, nil, func([]byte) { t.Error("emitted a frame with its checksum out of range") }); !errors.Is(err, errOffload) {
		t.Errorf("checksum beyond the frame: %v, want errOffload", err)
	}
}

func TestWireFramesRefusesWhatWasNotOffered(t *testing.T) {
	f := tcpFrame(1, 0x10, make([]byte, 3000))
	for _, h := range []vnetHdr{
		{gsoType: 4, gsoSize: 1440}, // TCPv6: never offered
		{gsoType: 3, gsoSize: 1440}, // UDP
	} {
		if err := wireFrames(h, f, nil, func([]byte) { t.Error("emitted a frame") }); !errors.Is(err, errOffload) {
			t.Errorf("GSO type %d: %v, want errOffload", h.gsoType, err)
		}
	}
	udp := bytes.Clone(f)
	udp[ethLen+ipProto] = 17
	if err := segmentTCPv4(udp, 1448, nil, func([]byte) { t.Error("emitted a frame") }); !errors.Is(err, errOffload) {
		t.Errorf("TCP segmentation of UDP: %v, want errOffload", err)
	}
	if err := segmentTCPv4(f[:30], 1448, nil, func([]byte) { t.Error("emitted a frame") }); !errors.Is(err, errOffload) {
		t.Errorf("TCP segmentation of a runt: %v, want errOffload", err)
	}
}

// Through a Relay whose tap speaks virtio_net_hdr: an offloaded segment from
// the tap reaches QEMU as wire frames, and frames from QEMU reach the tap
// behind an empty header.
func TestRelayCutsOffloadedSegments(t *testing.T) {
	tap, wire := socketpair(t, unix.SOCK_SEQPACKET)
	r, err := New(tap, Config{VnetHdr: true})
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := socketpair(t, unix.SOCK_STREAM)
	guest := fileConn(t, s2)
	done := make(chan error, 1)
	go func() { done <- r.Run(t.Context(), fileConn(t, s1)) }()

	payload := make([]byte, 10000)
	for i := range payload {
		payload[i] = byte(i)
	}
	hdr := make([]byte, vnetHdrLen)
	hdr[0], hdr[1] = vnetNeedsCsum, vnetGSOTCPv4
	binary.LittleEndian.PutUint16(hdr[4:], 1448)
	binary.LittleEndian.PutUint16(hdr[6:], ethLen+20)
	binary.LittleEndian.PutUint16(hdr[8:], tcpCsumOff)
	if _, err := wire.Write(append(hdr, tcpFrame(100, 0x18, payload)...)); err != nil {
		t.Fatal(err)
	}
	got := recvGuest(t, guest, 7, hangWait)
	if len(got) != 7 {
		t.Fatalf("guest got %d frames for 10000 bytes at MSS 1448, want 7", len(got))
	}
	var all []byte
	for i, f := range got {
		if !header.TCP(f[ethLen+20:]).ChecksumValid(vnetSrc, vnetDst) {
			t.Errorf("frame %d: bad TCP checksum", i)
		}
		all = append(all, header.TCP(f[ethLen+20:]).Payload()...)
	}
	if !bytes.Equal(all, payload) {
		t.Errorf("the frames' payloads do not add up to the segment's")
	}
	if _, in := r.Stats(); in.Split != 1 || in.In != 7 || in.Out != 7 {
		t.Errorf("in stats %v, want split=1 in=7 out=7", in)
	}

	guest.Write(AppendFrame(nil, frame(5, 60)))
	wire.SetReadDeadline(time.Now().Add(hangWait))
	buf := make([]byte, 2048)
	n, err := wire.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:vnetHdrLen], make([]byte, vnetHdrLen)) || !bytes.Equal(buf[vnetHdrLen:n], frame(5, 60)) {
		t.Errorf("tap got %x, want an empty virtio_net_hdr and frame 5", buf[:n])
	}
}
