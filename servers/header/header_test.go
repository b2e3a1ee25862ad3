package header

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// pingCapture is an ICMP echo request and its reply, 127.0.0.1 to itself,
// captured from Linux 6.x with a raw socket while running
// "ping -c1 -s 16 127.0.0.1": IP header checksums 0x2577 and 0x6576, ICMP
// checksums 0x8987 and 0x9187, all computed by the kernel.
var pingCapture = []struct {
	name           string
	hex            string
	ipSum, icmpSum uint16
}{
	{"echo request", "4500002c17584000400125777f0000017f0000010800898752f300015d00086b00000000a8180e0000000000", 0x2577, 0x8987},
	{"echo reply", "4500002c17590000400165767f0000017f0000010000918752f300015d00086b00000000a8180e0000000000", 0x6576, 0x9187},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChecksumKnownValues(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want uint16 // the folded sum, not its complement
	}{
		// RFC 1071 §3: "00 01 f2 03 f4 f5 f6 f7" sums to ddf2.
		{"RFC 1071 example", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0xddf2},
		{"odd length pads right", []byte{0x01}, 0x0100},
		{"empty", nil, 0},
		// A header whose checksum field is correct sums to 0xffff
		// (the IPv4 example of Wikipedia's "Internet checksum": b861).
		{"IPv4 header with checksum b861", []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}, 0xffff},
	}
	for _, tt := range tests {
		if got := Checksum(tt.in, 0); got != tt.want {
			t.Errorf("%s: Checksum(% x, 0) = %#04x, want %#04x", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestCapturedPing(t *testing.T) {
	for _, c := range pingCapture {
		pkt := unhex(t, c.hex)
		if err := ValidateIPv4(pkt); err != nil {
			t.Fatalf("%s: ValidateIPv4() = %v, want nil", c.name, err)
		}
		ip := IPv4(pkt)
		if got := ip.HeaderChecksum(); got != c.ipSum {
			t.Errorf("%s: HeaderChecksum() = %#04x, want %#04x", c.name, got, c.ipSum)
		}
		icmp := ICMPv4(ip.Payload())
		if err := ValidateICMPv4(icmp); err != nil {
			t.Fatalf("%s: ValidateICMPv4() = %v, want nil", c.name, err)
		}
		if got := icmp.ComputeChecksum(); got != c.icmpSum {
			t.Errorf("%s: ICMP ComputeChecksum() = %#04x, want %#04x", c.name, got, c.icmpSum)
		}
		if got, want := ip.Src(), netip.MustParseAddr("127.0.0.1"); got != want {
			t.Errorf("%s: Src() = %v, want %v", c.name, got, want)
		}
		if got, want := icmp.Ident(), uint16(0x52f3); got != want {
			t.Errorf("%s: Ident() = %#x, want %#x", c.name, got, want)
		}
	}
	// Re-encoding the request from its fields gives the captured bytes.
	want := unhex(t, pingCapture[0].hex)
	got := make([]byte, len(want))
	copy(got[28:], want[28:])
	IPv4(got).Encode(&IPv4Fields{TotalLength: 44, ID: 0x1758, Flags: IPv4FlagDontFragment, TTL: 64, Protocol: ProtocolICMP,
		Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1")})
	ICMPv4(got[20:]).Encode(&ICMPv4Fields{Type: ICMPv4Echo, Rest: 0x52f3<<16 | 1})
	if !bytes.Equal(got, want) {
		t.Errorf("Encode(captured fields) =\n% x\nwant\n% x", got, want)
	}
}

// ChecksumSlices over any split equals Checksum over the whole.
func TestChecksumSlices(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		b := make([]byte, r.IntN(100))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		var parts [][]byte
		for rest := b; len(rest) > 0; {
			n := r.IntN(len(rest) + 1)
			parts, rest = append(parts, rest[:n]), rest[n:]
		}
		if got, want := ChecksumSlices(7, parts...), Checksum(b, 7); got != want {
			t.Fatalf("ChecksumSlices(7, %d parts of % x) = %#04x, want %#04x", len(parts), b, got, want)
		}
	}
}

func TestChecksumUpdate(t *testing.T) {
	ip := IPv4(unhex(t, pingCapture[0].hex))
	for ttl := 64; ttl > 0; ttl-- {
		old := uint16(ip.TTL())<<8 | uint16(ip.Protocol())
		ip.SetTTL(uint8(ttl - 1))
		ip.SetChecksum(ChecksumUpdate(ip.Checksum(), old, uint16(ip.TTL())<<8|uint16(ip.Protocol())))
		if got, want := ip.Checksum(), ip.HeaderChecksum(); got != want {
			t.Fatalf("after TTL %d: ChecksumUpdate = %#04x, want %#04x", ttl-1, got, want)
		}
	}
}

func TestPseudoHeaderChecksum(t *testing.T) {
	src, dst := netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("192.168.0.199")
	pseudo := []byte{192, 168, 0, 1, 192, 168, 0, 199, 0, ProtocolUDP, 0x00, 0x5f}
	if got, want := PseudoHeaderChecksum(ProtocolUDP, src, dst, 0x5f), Checksum(pseudo, 0); got != want {
		t.Errorf("PseudoHeaderChecksum(udp, %v, %v, 95) = %#04x, want %#04x", src, dst, got, want)
	}
}

// ipv4 builds a valid datagram with the given payload and options, then lets
// mod break it.
func ipv4(payload, options []byte, mod func(IPv4)) []byte {
	hl := IPv4MinimumSize + len(options)
	b := make([]byte, hl+len(payload))
	IPv4(b).Encode(&IPv4Fields{TotalLength: uint16(len(b)), ID: 1, TTL: 64, Protocol: ProtocolICMP,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Options: options})
	copy(b[hl:], payload)
	if mod != nil {
		mod(IPv4(b))
	}
	return b
}

// fix recomputes the header checksum after a modification, where the
// header length allows it (the cases where it doesn't fail before the
// checksum is looked at).
func fix(f func(IPv4)) func(IPv4) {
	return func(h IPv4) {
		f(h)
		if h.HeaderLength() >= IPv4MinimumSize && h.HeaderLength() <= len(h) {
			h.SetChecksum(h.HeaderChecksum())
		}
	}
}

func TestValidateIPv4(t *testing.T) {
	nop := []byte{1, 1, 1, 0} // three NOPs and End of Option List
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"minimal", ipv4(nil, nil, nil), nil},
		{"payload", ipv4([]byte("hello"), nil, nil), nil},
		{"options, IHL 6", ipv4([]byte("x"), nop, nil), nil},
		{"Ethernet padding after total length", append(ipv4([]byte("x"), nil, nil), 0, 0, 0), nil},
		{"last fragment ending at 65535-20", ipv4(make([]byte, 3), nil, fix(func(h IPv4) { h.SetFlagsFragmentOffset(0, 65512) })), nil},

		{"empty", nil, ErrTruncated},
		{"19 bytes", ipv4(nil, nil, nil)[:19], ErrTruncated},
		{"version 6", ipv4(nil, nil, fix(func(h IPv4) { h[0] = 0x65 })), ErrBadVersion},
		{"IHL 4", ipv4(nil, nil, fix(func(h IPv4) { h[0] = 0x44 })), ErrBadIHL},
		{"IHL 0", ipv4(nil, nil, fix(func(h IPv4) { h[0] = 0x40 })), ErrBadIHL},
		{"IHL beyond total length", ipv4(nil, nil, fix(func(h IPv4) { h[0] = 0x46 })), ErrBadLength},
		{"IHL beyond buffer", ipv4([]byte("x"), nil, fix(func(h IPv4) { h[0] = 0x4f; h.SetTotalLength(60) })), ErrTruncated},
		{"total length < 20", ipv4(nil, nil, fix(func(h IPv4) { h.SetTotalLength(19) })), ErrBadLength},
		{"total length beyond buffer", ipv4([]byte("x"), nil, fix(func(h IPv4) { h.SetTotalLength(22) })), ErrTruncated},
		{"fragment past 65535 (ping of death)", ipv4(make([]byte, 8), nil, fix(func(h IPv4) { h.SetFlagsFragmentOffset(0, 65528) })), ErrBadLength},
		{"fragment one byte past 65535", ipv4(make([]byte, 4), nil, fix(func(h IPv4) { h.SetFlagsFragmentOffset(0, 65512) })), ErrBadLength},
		{"bad checksum", ipv4(nil, nil, func(h IPv4) { h[ipChecksum] ^= 1 }), ErrBadChecksum},
		{"option bytes corrupted", ipv4(nil, nop, func(h IPv4) { h[21] ^= 0xff }), ErrBadChecksum},
	}
	for _, tt := range tests {
		if got := ValidateIPv4(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("%s: ValidateIPv4(% x) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestIPv4Accessors(t *testing.T) {
	opts := []byte{0x94, 4, 0, 0} // Router Alert
	b := make([]byte, 24+3)
	IPv4(b).Encode(&IPv4Fields{TOS: 0x10, TotalLength: 27, ID: 0xbeef, Flags: IPv4FlagMoreFragments, FragmentOffset: 1480,
		TTL: 9, Protocol: ProtocolUDP, Src: netip.MustParseAddr("1.2.3.4"), Dst: netip.MustParseAddr("5.6.7.8"), Options: opts})
	copy(b[24:], "abc")
	if err := ValidateIPv4(b); err != nil {
		t.Fatalf("ValidateIPv4(encoded) = %v, want nil", err)
	}
	h := IPv4(b)
	checks := []struct {
		name      string
		got, want any
	}{
		{"Version", h.Version(), 4},
		{"HeaderLength", h.HeaderLength(), 24},
		{"TOS", h.TOS(), uint8(0x10)},
		{"TotalLength", h.TotalLength(), uint16(27)},
		{"ID", h.ID(), uint16(0xbeef)},
		{"MoreFragments", h.MoreFragments(), true},
		{"DontFragment", h.DontFragment(), false},
		{"FragmentOffset", h.FragmentOffset(), 1480},
		{"IsFragment", h.IsFragment(), true},
		{"TTL", h.TTL(), uint8(9)},
		{"Protocol", h.Protocol(), uint8(ProtocolUDP)},
		{"Src", h.Src(), netip.MustParseAddr("1.2.3.4")},
		{"Dst", h.Dst(), netip.MustParseAddr("5.6.7.8")},
		{"Options", string(h.Options()), string(opts)},
		{"Payload", string(h.Payload()), "abc"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s() = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func arpPacket(mod func(ARP)) []byte {
	b := make([]byte, ARPSize)
	ARP(b).Encode(&ARPFields{Op: ARPRequest, SenderMAC: MAC{2, 0, 0, 0, 0, 1},
		SenderIP: netip.MustParseAddr("10.0.0.1"), TargetIP: netip.MustParseAddr("10.0.0.2")})
	if mod != nil {
		mod(ARP(b))
	}
	return b
}

func TestValidateARP(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"request", arpPacket(nil), nil},
		{"with Ethernet padding", append(arpPacket(nil), make([]byte, 18)...), nil},
		{"27 bytes", arpPacket(nil)[:27], ErrTruncated},
		{"hardware type 6 (IEEE 802)", arpPacket(func(a ARP) { a[1] = 6 }), ErrBadARP},
		{"protocol IPv6", arpPacket(func(a ARP) { a[2], a[3] = 0x86, 0xdd }), ErrBadARP},
		{"hardware length 8", arpPacket(func(a ARP) { a[4] = 8 }), ErrBadARP},
		{"protocol length 16", arpPacket(func(a ARP) { a[5] = 16 }), ErrBadARP},
	}
	for _, tt := range tests {
		if got := ValidateARP(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("%s: ValidateARP(% x) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
	a := ARP(arpPacket(nil))
	if a.Op() != ARPRequest || a.SenderMAC() != (MAC{2, 0, 0, 0, 0, 1}) || a.SenderIP() != netip.MustParseAddr("10.0.0.1") ||
		a.TargetMAC() != (MAC{}) || a.TargetIP() != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("ARP accessors = %v %v %v %v %v, want request 02:00:00:00:00:01 10.0.0.1 00:00:00:00:00:00 10.0.0.2",
			a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
	}
}

func TestValidateICMPv4(t *testing.T) {
	echo := func(mod func(ICMPv4)) []byte {
		b := make([]byte, 12)
		copy(b[8:], "ping")
		ICMPv4(b).Encode(&ICMPv4Fields{Type: ICMPv4Echo, Rest: 7<<16 | 9})
		if mod != nil {
			mod(ICMPv4(b))
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"echo", echo(nil), nil},
		{"7 bytes", echo(nil)[:7], ErrTruncated},
		{"bad checksum", echo(func(m ICMPv4) { m[9] ^= 1 }), ErrBadChecksum},
		{"payload cut", echo(nil)[:11], ErrBadChecksum},
	}
	for _, tt := range tests {
		if got := ValidateICMPv4(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("%s: ValidateICMPv4(% x) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
	m := ICMPv4(echo(nil))
	if m.Type() != ICMPv4Echo || m.Code() != 0 || m.Ident() != 7 || m.Sequence() != 9 || string(m.Payload()) != "ping" {
		t.Errorf("ICMP accessors = %v %v %v %v %q, want 8 0 7 9 \"ping\"", m.Type(), m.Code(), m.Ident(), m.Sequence(), m.Payload())
	}
}

func TestEthernet(t *testing.T) {
	b := make([]byte, 15)
	Ethernet(b).Encode(&EthernetFields{Dst: BroadcastMAC, Src: MAC{2, 0, 0, 0, 0, 1}, Type: EtherTypeARP})
	if err := ValidateEthernet(b); err != nil {
		t.Fatalf("ValidateEthernet() = %v, want nil", err)
	}
	e := Ethernet(b)
	if e.Dst() != BroadcastMAC || e.Src() != (MAC{2, 0, 0, 0, 0, 1}) || e.Type() != EtherTypeARP || len(e.Payload()) != 1 {
		t.Errorf("Ethernet accessors = %v %v %#x len %d, want ff:ff:ff:ff:ff:ff 02:00:00:00:00:01 0x806 len 1", e.Dst(), e.Src(), e.Type(), len(e.Payload()))
	}
	if got := ValidateEthernet(b[:13]); got != ErrTruncated {
		t.Errorf("ValidateEthernet(13 bytes) = %v, want %v", got, ErrTruncated)
	}
	if got, want := e.Src().String(), "02:00:00:00:00:01"; got != want {
		t.Errorf("MAC.String() = %q, want %q", got, want)
	}
	if !BroadcastMAC.IsMulticast() || e.Src().IsMulticast() {
		t.Errorf("IsMulticast(broadcast, 02:..:01) = %v, %v, want true, false", BroadcastMAC.IsMulticast(), e.Src().IsMulticast())
	}
}
