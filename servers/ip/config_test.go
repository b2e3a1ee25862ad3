package ip

import (
	"errors"
	"net/netip"
	"testing"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestConfigRoundTrip(t *testing.T) {
	for _, c := range []Config{
		testCfg,
		{Addr: netip.MustParsePrefix("192.168.1.10/16"), MAC: [6]byte{2, 1, 2, 3, 4, 5}},
		{Addr: netip.MustParsePrefix("10.0.0.2/30"), Gateway: netip.MustParseAddr("10.0.0.1"), MAC: [6]byte{2, 0, 0, 0, 0, 1}, MTU: 9000},
	} {
		b := MarshalConfig(c)
		got, err := UnmarshalConfig(b)
		if err != nil || got != c {
			t.Errorf("UnmarshalConfig(MarshalConfig(%+v)) = %+v, %v, want the same, nil", c, got, err)
		}
	}
	if n := len(MarshalConfig(testCfg)); n != 19 {
		t.Errorf("len(MarshalConfig()) = %d, want 19", n)
	}
}

func TestConfigRejects(t *testing.T) {
	mod := func(f func(b []byte)) []byte {
		b := MarshalConfig(testCfg)
		f(b)
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"version 2", mod(func(b []byte) { b[0] = 2 })},
		{"short", MarshalConfig(testCfg)[:18]},
		{"long", append(MarshalConfig(testCfg), 0)},
		{"prefix 33", mod(func(b []byte) { b[5] = 33 })},
		{"prefix 31", mod(func(b []byte) { b[5] = 31 })},
		{"unknown flag", mod(func(b []byte) { b[6] |= 2 })},
		{"gateway off-subnet", mod(func(b []byte) { b[7] = 11 })},
		{"gateway is us", mod(func(b []byte) { b[10] = 15 })},
		{"multicast MAC", mod(func(b []byte) { b[11] = 1 })},
		{"zero MAC", mod(func(b []byte) { copy(b[11:17], make([]byte, 6)) })},
		{"MTU 67", mod(func(b []byte) { b[17], b[18] = 0, 67 })},
		{"MTU 9001", mod(func(b []byte) { b[17], b[18] = 0x23, 0x29 })},
		{"address is the broadcast", mod(func(b []byte) { b[4] = 255 })},
		{"address 0.0.0.0", mod(func(b []byte) { copy(b[1:5], []byte{0, 0, 0, 0}); b[6] = 0 })},
	}
	for _, tt := range tests {
		if _, err := UnmarshalConfig(tt.in); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: UnmarshalConfig(% x) error = %v, want %v", tt.name, tt.in, err, ErrBadConfig)
		}
	}
}

func FuzzUnmarshalConfig(f *testing.F) {
	f.Add(MarshalConfig(testCfg))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalConfig(b)
		if err != nil {
			return
		}
		if c2, err := UnmarshalConfig(MarshalConfig(c)); err != nil || c2 != c {
			t.Fatalf("round trip of %+v = %+v, %v", c, c2, err)
		}
	})
}
