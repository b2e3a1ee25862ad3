package header

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

var (
	tcpSrc = netip.MustParseAddr("10.0.2.2")
	tcpDst = netip.MustParseAddr("10.0.2.15")
)

// tcpSegment builds a checksummed segment from tcpSrc:40000 to tcpDst:80;
// mod, if not nil, patches it afterwards (without fixing the checksum).
func tcpSegment(f TCPFields, payload []byte, mod func(TCP)) []byte {
	f.SrcPort, f.DstPort = 40000, 80
	b := make([]byte, TCPMinimumSize+len(f.Options)+len(payload))
	h := TCP(b)
	h.Encode(&f)
	copy(h.Payload(), payload)
	h.SetChecksum(h.ComputeChecksum(tcpSrc, tcpDst))
	if mod != nil {
		mod(h)
	}
	return b
}

// linuxSYNOptions is what Linux 6.x puts in a SYN: MSS 1460, SACK-permitted,
// timestamps, NOP, window scale 7.
var linuxSYNOptions = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x30, 0x39, 0, 0, 0, 0, 1, 3, 3, 7}

func TestTCPEncodeAndAccessors(t *testing.T) {
	b := tcpSegment(TCPFields{Seq: 0xfffffff0, Ack: 7, Flags: TCPFlagSYN | TCPFlagACK, Window: 65535, Urgent: 3, Options: linuxSYNOptions}, []byte("hi"), nil)
	if err := ValidateTCP(b, tcpSrc, tcpDst); err != nil {
		t.Fatalf("ValidateTCP() = %v, want nil", err)
	}
	h := TCP(b)
	if h.SrcPort() != 40000 || h.DstPort() != 80 || h.Seq() != 0xfffffff0 || h.Ack() != 7 ||
		h.Flags() != TCPFlagSYN|TCPFlagACK || h.Window() != 65535 || h.Urgent() != 3 || h.DataOffset() != 40 {
		t.Errorf("fields = %d %d %#x %d %#x %d %d %d", h.SrcPort(), h.DstPort(), h.Seq(), h.Ack(), h.Flags(), h.Window(), h.Urgent(), h.DataOffset())
	}
	if !bytes.Equal(h.Options(), linuxSYNOptions) || string(h.Payload()) != "hi" {
		t.Errorf("Options(), Payload() = % x, %q", h.Options(), h.Payload())
	}
	if got := h.ComputeChecksum(tcpSrc, tcpDst); got != h.Checksum() {
		t.Errorf("ComputeChecksum() = %#04x, want field %#04x", got, h.Checksum())
	}
}

func TestValidateTCP(t *testing.T) {
	ok := TCPFields{Seq: 1, Flags: TCPFlagACK}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"good", tcpSegment(ok, []byte("data"), nil), nil},
		{"short", tcpSegment(ok, nil, nil)[:19], ErrTruncated},
		{"offset 4", tcpSegment(ok, nil, func(h TCP) { h.SetDataOffset(16) }), ErrBadDataOffset},
		{"offset past end", tcpSegment(ok, nil, func(h TCP) { h.SetDataOffset(24) }), ErrBadDataOffset},
		{"bad checksum", tcpSegment(ok, []byte("x"), func(h TCP) { h.SetChecksum(h.Checksum() + 1) }), ErrBadChecksum},
		{"too long", make([]byte, 70000), ErrBadLength},
	} {
		if got := ValidateTCP(tc.b, tcpSrc, tcpDst); !errors.Is(got, tc.want) {
			t.Errorf("%s: ValidateTCP() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseTCPOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       []byte
		want    TCPOptions
		wantErr error
	}{
		{"linux SYN", linuxSYNOptions, TCPOptions{MSS: 1460, HasMSS: true, SACKPermitted: true, HasTimestamps: true, TSVal: 12345, WindowScale: 7, HasWS: true}, nil},
		{"empty", nil, TCPOptions{}, nil},
		{"EOL stops", []byte{0, 2, 4, 5, 0xb4}, TCPOptions{}, nil},
		{"NOP padding then EOL", []byte{1, 1, 1, 0}, TCPOptions{}, nil},
		{"SACK 2 blocks", []byte{1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4},
			TCPOptions{NumSACK: 2, SACK: [4]TCPSACKBlock{{1, 2}, {3, 4}}}, nil},
		{"unknown kind skipped", []byte{30, 4, 9, 9, 2, 4, 2, 0}, TCPOptions{MSS: 512, HasMSS: true}, nil},
		{"length 0", []byte{30, 0}, TCPOptions{}, ErrBadOption},
		{"length 1", []byte{2, 1, 0, 0}, TCPOptions{}, ErrBadOption},
		{"no length byte", []byte{2}, TCPOptions{}, ErrBadOption},
		{"length past end", []byte{8, 10, 0, 0}, TCPOptions{}, ErrBadOption},
		{"MSS length 3", []byte{2, 3, 5, 1}, TCPOptions{}, ErrBadOption},
		{"WS length 4", []byte{3, 4, 5, 1}, TCPOptions{}, ErrBadOption},
		{"SACK-permitted length 3", []byte{4, 3, 0, 1}, TCPOptions{}, ErrBadOption},
		{"SACK length 6", []byte{5, 6, 0, 0, 0, 0, 1, 1}, TCPOptions{}, ErrBadOption},
		{"TS length 8", []byte{8, 8, 0, 0, 0, 0, 0, 0}, TCPOptions{}, ErrBadOption},
		{"good MSS then garbage", []byte{2, 4, 1, 0, 9, 1}, TCPOptions{MSS: 256, HasMSS: true}, ErrBadOption},
	} {
		got, err := ParseTCPOptions(tc.b)
		if !errors.Is(err, tc.wantErr) || got != tc.want {
			t.Errorf("%s: ParseTCPOptions(% x) = %+v, %v; want %+v, %v", tc.name, tc.b, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestTCPOptionsEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    TCPOptions
		want []byte
	}{
		{"linux SYN", TCPOptions{MSS: 1460, HasMSS: true, SACKPermitted: true, HasTimestamps: true, TSVal: 12345, WindowScale: 7, HasWS: true}, linuxSYNOptions},
		{"TS only", TCPOptions{HasTimestamps: true, TSVal: 1, TSEcr: 2}, []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}},
		{"SACK-permitted only", TCPOptions{SACKPermitted: true}, []byte{1, 1, 4, 2}},
		{"none", TCPOptions{}, []byte{}},
		{"TS and 4 SACK blocks keeps 3", TCPOptions{HasTimestamps: true, NumSACK: 4, SACK: [4]TCPSACKBlock{{1, 2}, {3, 4}, {5, 6}, {7, 8}}},
			[]byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 5, 26, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6}},
	} {
		b := make([]byte, tc.o.Size())
		n := tc.o.Encode(b)
		if n != len(b) || !bytes.Equal(b, tc.want) {
			t.Errorf("%s: Encode = % x (n %d), want % x", tc.name, b, n, tc.want)
		}
	}
}

func FuzzTCP(f *testing.F) {
	f.Add(tcpSegment(TCPFields{Seq: 1, Flags: TCPFlagSYN, Options: linuxSYNOptions}, nil, nil))
	f.Add(tcpSegment(TCPFields{Seq: 1, Ack: 2, Flags: TCPFlagACK | TCPFlagPSH}, []byte("hello"), nil))
	f.Add(tcpSegment(TCPFields{}, nil, func(h TCP) { h.SetDataOffset(60) }))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateTCP(b, tcpSrc, tcpDst) != nil {
			// Give the checksum a chance so the rest gets fuzzed too.
			if len(b) < TCPMinimumSize || len(b) > 65515 {
				return
			}
			TCP(b).SetChecksum(TCP(b).ComputeChecksum(tcpSrc, tcpDst))
			if ValidateTCP(b, tcpSrc, tcpDst) != nil {
				return
			}
		}
		h := TCP(b)
		_, _, _, _, _, _, _ = h.SrcPort(), h.DstPort(), h.Seq(), h.Ack(), h.Flags(), h.Window(), h.Urgent()
		if len(h.Options())+len(h.Payload())+TCPMinimumSize != len(b) {
			t.Fatalf("Options %d + Payload %d + 20 != %d", len(h.Options()), len(h.Payload()), len(b))
		}
		_, _ = ParseTCPOptions(h.Options())
	})
}

func FuzzTCPOptions(f *testing.F) {
	f.Add(linuxSYNOptions)
	f.Add([]byte{1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseTCPOptions(b)
		if err != nil {
			return
		}
		// What parses re-encodes within 40 bytes and parses back the same.
		if o.NumSACK > TCPMaxSACKBlocks {
			t.Fatalf("NumSACK = %d", o.NumSACK)
		}
		enc := make([]byte, o.Size())
		if n := o.Encode(enc); n != len(enc) || n > TCPMaximumOptionsSize || n%4 != 0 {
			t.Fatalf("Encode wrote %d of Size %d", n, len(enc))
		}
		back, err := ParseTCPOptions(enc)
		if err != nil {
			t.Fatalf("ParseTCPOptions(Encode(%+v)) = %v", o, err)
		}
		back.NumSACK, o.NumSACK = 0, 0 // encoding may drop blocks that do not fit
		back.SACK, o.SACK = [4]TCPSACKBlock{}, [4]TCPSACKBlock{}
		if back != o {
			t.Fatalf("round trip = %+v, want %+v", back, o)
		}
	})
}
