package ops

import (
	"net/netip"
	"strings"
	"testing"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

func TestAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // AddrPort() after MakeAddr
		is4  bool
	}{
		{"0.0.0.0:0", "0.0.0.0:0", true},
		{"10.77.0.2:53", "10.77.0.2:53", true},
		{"255.255.255.255:65535", "255.255.255.255:65535", true},
		{"[::ffff:192.0.2.1]:7", "192.0.2.1:7", true}, // IPv4-mapped is IPv4
		{"[2001:db8::1]:443", "[2001:db8::1]:443", false},
		{"[::]:0", "[::]:0", false}, // IPv6 "any" is not 0.0.0.0
		{"[::1]:80", "[::1]:80", false},
	} {
		ap := netip.MustParseAddrPort(tc.in)
		a := FromAddrPort(ap)
		if got := a.AddrPort().String(); got != tc.want || a.Is4() != tc.is4 {
			t.Errorf("FromAddrPort(%v) = %v (Is4 %v), want %v (Is4 %v)", ap, got, a.Is4(), tc.want, tc.is4)
		}
	}
	if a := MakeAddr(netip.Addr{}, 53); a.AddrPort() != netip.MustParseAddrPort("0.0.0.0:53") {
		t.Errorf("MakeAddr(invalid, 53) = %v, want 0.0.0.0:53", a)
	}
	if !(Addr{}).IsZero() || (Addr{}).AddrPort() != netip.MustParseAddrPort("0.0.0.0:0") {
		t.Errorf("the zero Addr = %v, want 0.0.0.0:0", Addr{})
	}
}

// TestAddrLayout pins the wire layout the package doc describes.
func TestAddrLayout(t *testing.T) {
	var m channel.Msg
	PutAddr(&m, AtArg0, FromAddrPort(netip.MustParseAddrPort("10.0.0.1:53")))
	PutAddr(&m, AtArg2, FromAddrPort(netip.MustParseAddrPort("[2001:db8::2]:8080")))
	want := channel.Msg{
		Aux: [2]uint16{53, 8080},
		Arg: [4]uint64{0, 0x0000ffff_0a000001, 0x20010db8_00000000, 2},
	}
	if m != want {
		t.Errorf("PutAddr(AtArg0 10.0.0.1:53, AtArg2 [2001:db8::2]:8080) = %+v, want %+v", m, want)
	}
	m = OpBind.WithAddr(7, FromAddrPort(netip.MustParseAddrPort("10.0.0.1:80")))
	if m.Arg != [4]uint64{7, 0, 0x0000ffff_0a000001, 0} || m.Aux[0] != 80 {
		t.Errorf("OpBind.WithAddr(7, 10.0.0.1:80) = %+v, want socket in Arg[0], address in Arg[1..2], port in Aux[0]", m)
	}
	// A message that carries nothing decodes as IPv6 [::]:0, never 0.0.0.0.
	if a := GetAddr(channel.Msg{}, AtArg1); a.Is4() {
		t.Errorf("GetAddr(zero message) = %v, want IPv6 [::]:0", a)
	}
	if _, st := GetAddr4(channel.Msg{}, AtArg1); st != StatusAFNoSupport {
		t.Errorf("GetAddr4(zero message) = %v, want StatusAFNoSupport", st)
	}
}

func TestAddrRoundTrip(t *testing.T) {
	addrs := []string{"0.0.0.0:0", "10.0.2.15:7", "[::ffff:1.2.3.4]:9", "[2001:db8::1]:53", "[::]:1", "[fe80::1]:65535"}
	for _, at := range []Slot{AtArg0, AtArg1, AtArg2} {
		for _, s := range addrs {
			a := FromAddrPort(netip.MustParseAddrPort(s))
			var m channel.Msg
			PutAddr(&m, at, a)
			if got := GetAddr(m, at); got != a {
				t.Errorf("GetAddr(PutAddr(%v) at %+v) = %v", a, at, got)
			}
			got, st := GetAddr4(m, at)
			if a.Is4() && (st != StatusOK || got != a) || !a.Is4() && st != StatusAFNoSupport {
				t.Errorf("GetAddr4(PutAddr(%v)) = %v, %v", a, got, st)
			}
		}
	}
	// Two addresses of a reply do not overlap.
	var m channel.Msg
	x, y := FromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:1")), FromAddrPort(netip.MustParseAddrPort("10.0.0.1:2"))
	PutAddr(&m, AtArg0, x)
	PutAddr(&m, AtArg2, y)
	if GetAddr(m, AtArg0) != x || GetAddr(m, AtArg2) != y {
		t.Errorf("AtArg0, AtArg2 = %v, %v; want %v, %v", GetAddr(m, AtArg0), GetAddr(m, AtArg2), x, y)
	}
	// The stored form of an IPv4 address.
	var b [StoredSize]byte
	a := FromAddrPort(netip.MustParseAddrPort("10.0.0.1:53"))
	a.Put(b[:])
	if b != [18]byte{10: 0xff, 11: 0xff, 12: 10, 13: 0, 14: 0, 15: 1, 16: 0, 17: 53} || Get(b[:]) != a {
		t.Errorf("Put(%v) = %v, Get = %v", a, b, Get(b[:]))
	}
	a6 := MakeAddr(netip.MustParseAddr("fd00::7"), 80)
	if a6.Put(b[:]); Get(b[:]) != a6 {
		t.Errorf("Put(%v), Get = %v", a6, Get(b[:]))
	}
}

func TestOutputAndAddrReply(t *testing.T) {
	dst, src := netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.78.0.2")
	m := Output(pool.Ref{Pool: 1, Off: 64, Len: 20}, src, dst, 6, TSOArg(1448))
	if OpOf(m) != OpOutput || GetAddr(m, AtArg0).IP() != dst || OutputProto(m) != 6 || OutputSource(m) != src ||
		TSOMSS(m.Arg[3]) != 1448 || m.Ref.Len != 20 {
		t.Errorf("Output(..., %v, %v, 6, TSO 1448) = %+v", src, dst, m)
	}
	for _, none := range []netip.Addr{{}, netip.MustParseAddr("2001:db8::1")} {
		if m := Output(pool.Ref{}, none, dst, 17, 0); OutputSource(m).IsValid() || OutputProto(m) != 17 {
			t.Errorf("Output from %v: source %v, proto %d; want none, 17", none, OutputSource(m), OutputProto(m))
		}
	}
	p := netip.MustParsePrefix("10.0.2.15/24")
	r := OpAddr.Msg()
	SetAddrReply(&r, p, OffloadChecksum)
	if gp, off := AddrReply(r); gp != p || off != OffloadChecksum {
		t.Errorf("AddrReply(SetAddrReply(%v, checksum)) = %v, %#x", p, gp, off)
	}
}

// FuzzAddr: any message words decode to an address that encodes back to
// the same words (the encoding is a bijection on what GetAddr accepts), and
// any address round-trips.
func FuzzAddr(f *testing.F) {
	f.Add(uint64(0), uint64(0x0000ffff_0a000001), uint16(53), uint8(0))
	f.Add(uint64(0x20010db8_00000000), uint64(1), uint16(443), uint8(2))
	f.Add(uint64(0), uint64(0), uint16(0), uint8(1))
	f.Fuzz(func(t *testing.T, hi, lo uint64, port uint16, slot uint8) {
		at := []Slot{AtArg0, AtArg1, AtArg2}[int(slot)%3]
		var m channel.Msg
		m.Arg[at.word], m.Arg[at.word+1], m.Aux[at.aux] = hi, lo, port
		a := GetAddr(m, at)
		var back channel.Msg
		PutAddr(&back, at, a)
		if back != m {
			t.Fatalf("PutAddr(GetAddr(%+v)) = %+v", m, back)
		}
		if a.Port() != port || a.Is4() != (hi == 0 && lo>>32 == 0xffff) {
			t.Fatalf("GetAddr(%#x %#x :%d) = %v (Is4 %v)", hi, lo, port, a, a.Is4())
		}
		if FromAddrPort(a.AddrPort()) != a {
			t.Fatalf("FromAddrPort(%v.AddrPort()) = %v", a, FromAddrPort(a.AddrPort()))
		}
	})
}

// The numbers of every operation and status, as the protocol defines them.
var (
	allOps = []Op{OpDeliver, OpOutput, OpAddr, OpOpen, OpBind, OpConnect, OpSendTo,
		OpRecvFrom, OpClose, OpReset, OpListen, OpAccept, OpShutdown, OpAdopt, OpCloseRange, OpSetOption, OpDeliverError, OpSource}
	allStatuses = []Status{StatusOK, StatusNoPort, StatusNoRoute, StatusInUse, StatusNoSocket,
		StatusClosed, StatusInvalid, StatusTooBig, StatusError, StatusRefused, StatusReset,
		StatusTimedOut, StatusAFNoSupport, StatusNoBuffers, StatusTooManySockets,
		StatusNetUnreach, StatusAddrNotAvail}
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
	for o := OptNoDelay; o <= OptRecvBuffer; o++ {
		n := o.String()
		if !strings.HasPrefix(n, "Opt") || strings.Contains(n, "(") || names[n] {
			t.Errorf("Option %d: String() = %q, want a name of its own", uint64(o), n)
		}
		names[n] = true
	}
	if got := Op(0x99).String(); got != "Op(0x99)" {
		t.Errorf("Op(0x99).String() = %q", got)
	}
}

func TestIsSocketOp(t *testing.T) {
	for _, o := range allOps {
		want := o != OpDeliver && o != OpOutput && o != OpAddr && o != OpDeliverError && o != OpSource
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

// TestECN: the ECN codepoint travels beside every other field of OpOutput
// (both families) and OpDeliver, and changes none of them.
func TestECN(t *testing.T) {
	src4, dst4 := netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.0.0.9")
	src6, dst6 := netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::9")
	for _, c := range []struct {
		src, dst netip.Addr
		offload  uint64
	}{{src4, dst4, TSOArg(1448)}, {netip.Addr{}, dst4, 0}, {src6, dst6, OffloadChecksum}, {netip.Addr{}, dst6, 0}} {
		for _, ecn := range []uint8{ECNNotECT, ECNECT1, ECNECT0, ECNCE} {
			m := Output(pool.Ref{Pool: 1, Len: 20}, c.src, c.dst, 6, c.offload)
			SetOutputECN(&m, ECNCE)
			SetOutputECN(&m, ecn)
			if OutputECN(m) != ecn || OutputProto(m) != 6 || OutputSource(m) != c.src || OutputOffload(m) != c.offload ||
				GetAddr(m, AtArg0).IP() != c.dst {
				t.Errorf("Output(%v, %v, 6, %#x) with ECN %d: ECN %d, proto %d, source %v, offload %#x",
					c.src, c.dst, c.offload, ecn, OutputECN(m), OutputProto(m), OutputSource(m), OutputOffload(m))
			}
		}
		if m := Output(pool.Ref{}, c.src, c.dst, 6, c.offload); OutputECN(m) != ECNNotECT {
			t.Errorf("Output(%v, %v) ECN = %d, want Not-ECT", c.src, c.dst, OutputECN(m))
		}
	}
	for _, off := range []int{20, 60, 40, 40 + 2048, MaxDeliverOffset} {
		for _, ecn := range []uint8{ECNNotECT, ECNECT1, ECNECT0, ECNCE} {
			for _, verified := range []bool{false, true} {
				m := Deliver(pool.Ref{Pool: 2, Len: 100}, src6, dst6, off)
				SetDeliverVerified(&m, verified)
				SetDeliverECN(&m, ecn)
				if s, d, o := Delivered(m); s.IP() != src6 || d.IP() != dst6 || o != off || DeliveredECN(m) != ecn || DeliveredVerified(m) != verified {
					t.Errorf("Deliver(off %d) with ECN %d, verified %v: %v %v off %d ECN %d verified %v",
						off, ecn, verified, s, d, o, DeliveredECN(m), DeliveredVerified(m))
				}
			}
		}
	}
}
