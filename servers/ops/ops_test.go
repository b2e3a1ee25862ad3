package ops

import (
	"net/netip"
	"strings"
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

// The numbers of every operation and status, as the protocol defines them.
var (
	allOps = []Op{OpDeliver, OpOutput, OpAddr, OpOpen, OpBind, OpConnect, OpSendTo,
		OpRecvFrom, OpClose, OpReset, OpListen, OpAccept, OpShutdown}
	allStatuses = []Status{StatusOK, StatusNoPort, StatusNoRoute, StatusInUse, StatusNoSocket,
		StatusClosed, StatusInvalid, StatusTooBig, StatusError, StatusRefused, StatusReset,
		StatusTimedOut}
)

func TestNamesDistinct(t *testing.T) {
	names := map[string]bool{}
	for _, o := range allOps {
		n := o.String()
		if !strings.HasPrefix(n, "Op") || strings.Contains(n, "(") || names[n] {
			t.Errorf("Op %d: String() = %q, want a name of its own", uint16(o), n)
		}
		names[n] = true
	}
	texts := map[string]bool{}
	for _, s := range allStatuses {
		n, txt := s.String(), s.Text()
		if !strings.HasPrefix(n, "Status") || strings.Contains(n, "(") || names[n] {
			t.Errorf("Status %d: String() = %q, want a name of its own", int32(s), n)
		}
		if strings.HasPrefix(txt, "status ") || texts[txt] {
			t.Errorf("Status %d: Text() = %q, want a text of its own", int32(s), txt)
		}
		names[n], texts[txt] = true, true
	}
	if got := Op(0x99).String(); got != "Op(0x99)" {
		t.Errorf("Op(0x99).String() = %q", got)
	}
}

func TestIsSocketOp(t *testing.T) {
	for _, o := range allOps {
		want := o != OpDeliver && o != OpOutput && o != OpAddr
		if got := o.IsSocketOp(); got != want {
			t.Errorf("%v.IsSocketOp() = %v, want %v", o, got, want)
		}
	}
	if Op(0).IsSocketOp() || Op(0xFFFF).IsSocketOp() {
		t.Error("an unknown op is a socket op")
	}
}

func TestMsgBoundary(t *testing.T) {
	m := OpBind.Msg(7, 9)
	SetStatus(&m, StatusInUse)
	if OpOf(m) != OpBind || StatusOf(m) != StatusInUse || m.Arg != [4]uint64{7, 9} {
		t.Errorf("OpBind.Msg(7, 9) with StatusInUse = %+v", m)
	}
}
