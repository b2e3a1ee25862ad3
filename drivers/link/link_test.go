package link

import (
	"strings"
	"testing"

	"keepnet/kernel/pool"
)

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

func TestNamesDistinct(t *testing.T) {
	names := map[string]bool{}
	for _, o := range []Op{OpRx, OpTx, OpInfo} {
		n := o.String()
		if !strings.HasPrefix(n, "Op") || strings.Contains(n, "(") || names[n] {
			t.Errorf("Op %d: String() = %q, want a name of its own", uint16(o), n)
		}
		names[n] = true
	}
	for _, s := range []Status{StatusOK, StatusUnused, StatusBadRef, StatusError} {
		n := s.String()
		if !strings.HasPrefix(n, "Status") || strings.Contains(n, "(") || names[n] {
			t.Errorf("Status %d: String() = %q, want a name of its own", int32(s), n)
		}
		names[n] = true
	}
}

func TestMsgBoundary(t *testing.T) {
	m := OpTx.Msg(pool.Ref{Pool: 1, Off: 2, Len: 3}, 5)
	SetStatus(&m, StatusBadRef)
	if OpOf(m) != OpTx || StatusOf(m) != StatusBadRef || m.Ref.Len != 3 || m.Arg[0] != 5 {
		t.Errorf("OpTx.Msg with StatusBadRef = %+v", m)
	}
}
