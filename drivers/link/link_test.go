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
