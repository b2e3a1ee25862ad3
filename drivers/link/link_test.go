package link

import "testing"

func TestMACArg(t *testing.T) {
	mac := [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	if got := MACToArg(mac); got != 0x525400123456 {
		t.Errorf("MACToArg(%x) = %#x, want 0x525400123456", mac, got)
	}
	if got := ArgToMAC(MACToArg(mac)); got != mac {
		t.Errorf("ArgToMAC(MACToArg(%x)) = %x", mac, got)
	}
}

func TestOffloadArg(t *testing.T) {
	for _, o := range []Offload{
		{L3: 14, L4: 34, HdrLen: 66, MSS: 1448, TCP: true},
		{L3: 14, L4: 34, TCP: false},
		{L3: 255, L4: 255, HdrLen: 255, MSS: 65535, TCP: true},
	} {
		got, ok := OffloadFromArg(o.Arg())
		if !ok || got != o {
			t.Errorf("OffloadFromArg(%+v.Arg()) = %+v, %v", o, got, ok)
		}
	}
	for _, v := range []uint64{0, 1 << 50, offloadTCP | 14} {
		if o, ok := OffloadFromArg(v); ok {
			t.Errorf("OffloadFromArg(%#x) = %+v, true; want false", v, o)
		}
	}
}
