package ops

import (
	"net/netip"
	"testing"
)

func TestAddr(t *testing.T) {
	for _, ap := range []string{"0.0.0.0:0", "10.77.0.2:53", "255.255.255.255:65535", "192.0.2.1:7"} {
		want := netip.MustParseAddrPort(ap)
		if got := FromAddrPort(want).AddrPort(); got != want {
			t.Errorf("FromAddrPort(%v).AddrPort() = %v", want, got)
		}
	}
	if a := MakeAddr(netip.MustParseAddr("10.0.0.1"), 53); uint64(a) != 0x0a000001_0035 {
		t.Errorf("MakeAddr(10.0.0.1, 53) = %#x, want 0xa0000010035", uint64(a))
	}
}
