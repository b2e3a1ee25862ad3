package header

import (
	"bytes"
	"net/netip"
	"testing"
)

// udpCapture is the IPv4 datagram Linux 6.x sent for
// sendto("hello keepnet", 127.0.0.2:53) from 127.0.0.1:40000, read back
// with a raw socket. Loopback leaves the UDP checksum partial (0xfe29, the
// offload's pseudo-header seed), so the field below is the complete one,
// 0x6e1d, computed independently (a Python one's complement sum over the
// pseudo-header and the datagram).
const udpCapture = "450000299a4440004011a27c7f0000017f000002" + "9c40003500156e1d" + "68656c6c6f206b6565706e6574"

var (
	udpSrc = netip.MustParseAddr("127.0.0.1")
	udpDst = netip.MustParseAddr("127.0.0.2")
)

// udpDatagram builds a checksummed datagram from udpSrc:40000 to
// udpDst:53; mod, if not nil, patches it afterwards.
func udpDatagram(payload []byte, mod func(UDP)) []byte {
	b := make([]byte, UDPMinimumSize+len(payload))
	u := UDP(b)
	u.Encode(&UDPFields{SrcPort: 40000, DstPort: 53, Length: uint16(len(b))})
	copy(u[UDPMinimumSize:], payload)
	u.SetChecksum(u.ComputeChecksum(udpSrc, udpDst))
	if mod != nil {
		mod(u)
	}
	return b
}

func TestUDPCaptured(t *testing.T) {
	pkt := unhex(t, udpCapture)
	if err := ValidateIPv4(pkt); err != nil {
		t.Fatalf("ValidateIPv4() = %v, want nil", err)
	}
	ip := IPv4(pkt)
	b := ip.Payload()
	if err := ValidateUDP(b, ip.Src(), ip.Dst()); err != nil {
		t.Fatalf("ValidateUDP(captured) = %v, want nil", err)
	}
	u := UDP(b)
	if got := u.ComputeChecksum(ip.Src(), ip.Dst()); got != 0x6e1d {
		t.Errorf("ComputeChecksum() = %#04x, want 0x6e1d", got)
	}
	if u.SrcPort() != 40000 || u.DstPort() != 53 || u.Length() != 21 || string(u.Payload()) != "hello keepnet" {
		t.Errorf("UDP = %d -> %d, length %d, %q; want 40000 -> 53, length 21, %q",
			u.SrcPort(), u.DstPort(), u.Length(), u.Payload(), "hello keepnet")
	}
	// Building the same datagram gives the same bytes.
	if got := udpDatagram([]byte("hello keepnet"), nil); !bytes.Equal(got, b) {
		t.Errorf("Encode+ComputeChecksum = % x, want % x", got, []byte(b))
	}
}

func TestValidateUDP(t *testing.T) {
	good := udpDatagram([]byte("payload"), nil)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"good", good, nil},
		{"good, odd length", udpDatagram([]byte("odd"), nil), nil},
		{"empty payload", udpDatagram(nil, nil), nil},
		{"zero checksum means none", udpDatagram([]byte("payload"), func(u UDP) { u.SetChecksum(0) }), nil},
		{"trailing bytes past Length", append(append([]byte{}, good...), 0xde, 0xad), nil},
		{"short header", good[:7], ErrTruncated},
		{"nil", nil, ErrTruncated},
		{"length below header", udpDatagram(nil, func(u UDP) { u.SetLength(7) }), ErrBadLength},
		{"length past payload", udpDatagram([]byte("payload"), func(u UDP) { u.SetLength(16) }), ErrTruncated},
		{"bad checksum", udpDatagram([]byte("payload"), func(u UDP) { u.SetChecksum(u.Checksum() + 1) }), ErrBadChecksum},
		{"flipped data bit", udpDatagram([]byte("payload"), func(u UDP) { u[9] ^= 1 }), ErrBadChecksum},
	}
	for _, tt := range tests {
		if got := ValidateUDP(tt.b, udpSrc, udpDst); got != tt.want {
			t.Errorf("%s: ValidateUDP(% x) = %v, want %v", tt.name, tt.b, got, tt.want)
		}
	}
	// The pseudo-header counts: the same bytes from another source fail.
	if got := ValidateUDP(good, netip.MustParseAddr("127.0.0.3"), udpDst); got != ErrBadChecksum {
		t.Errorf("ValidateUDP(from another address) = %v, want %v", got, ErrBadChecksum)
	}
}

func TestUDPChecksumZeroSentAsOnes(t *testing.T) {
	// Find a payload whose checksum computes to zero: the field must then
	// be 0xffff, which verifies (RFC 768).
	for i := range 1 << 16 {
		b := udpDatagram([]byte{byte(i >> 8), byte(i)}, nil)
		u := UDP(b)
		if u.Checksum() != 0xffff {
			continue
		}
		if err := ValidateUDP(b, udpSrc, udpDst); err != nil {
			t.Fatalf("ValidateUDP(checksum 0xffff) = %v, want nil", err)
		}
		return
	}
	t.Fatal("no payload has a computed checksum of zero")
}

func TestUDPTrimsToLength(t *testing.T) {
	b := append(udpDatagram([]byte("abc"), nil), "padding"...)
	if got := string(UDP(b).Payload()); got != "abc" {
		t.Errorf("Payload() = %q, want %q", got, "abc")
	}
}

func FuzzUDP(f *testing.F) {
	f.Add(unhex(f, udpCapture)[20:])
	f.Add(udpDatagram(nil, nil))
	f.Add(udpDatagram([]byte("x"), func(u UDP) { u.SetChecksum(0) }))
	f.Add(udpDatagram([]byte("payload"), func(u UDP) { u.SetLength(3) }))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateUDP(b, udpSrc, udpDst) != nil {
			return
		}
		u := UDP(b)
		_, _, _ = u.SrcPort(), u.DstPort(), u.Checksum()
		if len(u.Payload()) != int(u.Length())-UDPMinimumSize {
			t.Fatalf("len(Payload()) = %d, want %d", len(u.Payload()), int(u.Length())-UDPMinimumSize)
		}
		if u.Checksum() != 0 {
			if got := u.ComputeChecksum(udpSrc, udpDst); !sameChecksum(got, u.Checksum()) {
				t.Fatalf("ComputeChecksum() = %#04x, want field %#04x", got, u.Checksum())
			}
		}
	})
}
