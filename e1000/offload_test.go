package e1000_test

import (
	"encoding/binary"
	"testing"

	"keepnet/drivers/netdev"
	"keepnet/e1000"
	"keepnet/e1000/model"
)

// sum16 is the Internet checksum's one's-complement sum of b, folded.
func sum16(b []byte, sum uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xFFFF {
		sum = sum>>16 + sum&0xFFFF
	}
	return sum
}

// tcpFrame is an Ethernet + IPv4 + TCP frame carrying payload, prepared
// for offload as the device wants it: a zero IPv4 checksum and, in the TCP
// checksum field, the pseudo-header sum (with the TCP length only when
// withLen: segmentation adds each segment's).
func tcpFrame(payload []byte, seq uint32, withLen bool) []byte {
	f := make([]byte, 54+len(payload))
	copy(f, testMAC[:])
	f[12], f[13] = 0x08, 0x00
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], 100) // identification
	ip[8], ip[9] = 64, 6
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	tcp := f[34:54]
	binary.BigEndian.PutUint16(tcp[0:], 80)
	binary.BigEndian.PutUint16(tcp[2:], 40000)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 5<<4, 0x18 // PSH|ACK
	copy(f[54:], payload)
	ph := sum16(ip[12:20], 6)
	if withLen {
		ph = sum16(nil, ph+uint32(20+len(payload)))
	}
	binary.BigEndian.PutUint16(tcp[16:], uint16(ph))
	return f
}

// checkSegment verifies an IPv4/TCP frame's checksums and returns its
// sequence number, flags and payload.
func checkSegment(t *testing.T, f []byte) (seq uint32, flags uint8, payload []byte) {
	t.Helper()
	ip := f[14:34]
	if sum16(ip, 0) != 0xFFFF {
		t.Errorf("IPv4 header checksum wrong in %x", ip)
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total != len(f)-14 {
		t.Errorf("IPv4 total length %d in a %d-byte frame", total, len(f))
	}
	tcp := f[34:]
	if sum16(tcp, sum16(ip[12:20], 6+uint32(len(tcp)))) != 0xFFFF {
		t.Errorf("TCP checksum wrong in segment seq %d", binary.BigEndian.Uint32(tcp[4:]))
	}
	return binary.BigEndian.Uint32(tcp[4:]), tcp[13], tcp[20:]
}

// TCP segmentation: one 10,000-byte payload behind one header goes out as
// segments of MSS bytes with consecutive sequence numbers, valid checksums,
// and PSH only on the last; the buffer comes back once, after the last
// descriptor.
func TestTransmitOffloadSegments(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 8, TxRing: 32})
	payload := make([]byte, 10000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	f := tcpFrame(payload, 1000, false)
	const at = 0x200000
	copy(r.mem[at:], f)
	b := netdev.Buffer{Mem: r.mem[at : at+len(f)], Addr: at, Cookie: 77}
	free := r.dev.TxFree()
	if !r.dev.TransmitOffload(b, len(f), netdev.Offload{L3: 14, L4: 34, TCP: true, MSS: 1448, HdrLen: 54}) {
		t.Fatal("TransmitOffload = false on an empty ring")
	}
	if used := free - r.dev.TxFree(); used != 2 {
		t.Errorf("TransmitOffload used %d descriptors, want a context and one data descriptor", used)
	}
	r.dev.FlushTX()
	if got := r.pollTX(); len(got) != 1 || got[0] != 77 {
		t.Fatalf("PollTX = %v, want the one buffer", got)
	}
	if len(r.wire) != 7 {
		t.Fatalf("%d frames on the wire, want 7 (10000 bytes at MSS 1448)", len(r.wire))
	}
	var got []byte
	for i, w := range r.wire {
		seq, flags, p := checkSegment(t, w)
		if want := uint32(1000 + len(got)); seq != want {
			t.Errorf("segment %d: seq %d, want %d", i, seq, want)
		}
		if last := i == len(r.wire)-1; (flags&0x08 != 0) != last {
			t.Errorf("segment %d: PSH %v, want it only on the last", i, flags&0x08 != 0)
		}
		if id := binary.BigEndian.Uint16(w[18:]); id != uint16(100+i) {
			t.Errorf("segment %d: IPv4 id %d, want %d", i, id, 100+i)
		}
		got = append(got, p...)
	}
	if string(got) != string(payload) {
		t.Error("the segments' payloads do not add up to the payload")
	}
}

// Checksum offload of one frame larger than a descriptor: split over data
// descriptors, sent as one frame with its TCP checksum filled in.
func TestTransmitOffloadChecksum(t *testing.T) {
	r := newRig(t, model.Config{}, e1000.Config{RxRing: 8, TxRing: 32})
	payload := make([]byte, 1400)
	for i := range payload {
		payload[i] = byte(i)
	}
	f := tcpFrame(payload, 5, true)
	ipSum := ^uint16(sum16(f[14:34], 0)) // software IPv4 checksum: only TCP's is offloaded
	binary.BigEndian.PutUint16(f[24:], ipSum)
	const at = 0x200000
	copy(r.mem[at:], f)
	b := netdev.Buffer{Mem: r.mem[at : at+len(f)], Addr: at, Cookie: 9}
	if !r.dev.TransmitOffload(b, len(f), netdev.Offload{L3: 14, L4: 34, TCP: true}) {
		t.Fatal("TransmitOffload = false on an empty ring")
	}
	r.dev.FlushTX()
	if got := r.pollTX(); len(got) != 1 || got[0] != 9 {
		t.Fatalf("PollTX = %v, want the one buffer", got)
	}
	if len(r.wire) != 1 {
		t.Fatalf("%d frames on the wire, want 1", len(r.wire))
	}
	if _, _, p := checkSegment(t, r.wire[0]); string(p) != string(payload) {
		t.Error("payload changed")
	}
	// A ring without room for a new context and the data descriptor
	// refuses (UDP's context is not the one the device holds).
	for r.dev.TxFree() > 1 {
		r.send(frame(testMAC, 0, 60))
	}
	if r.dev.TransmitOffload(b, len(f), netdev.Offload{L3: 14, L4: 34}) {
		t.Error("TransmitOffload = true with one free descriptor and a new context, want false")
	}
}
