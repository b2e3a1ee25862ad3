package header

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// scapy6 holds IPv6 datagrams built by scapy 2.5 (Debian's python3-scapy),
// an implementation other than keepnet's: its checksums and layouts are
// what the tests check keepnet's against.
var scapy6 = map[string]string{
	// IPv6(src="fe80::5054:ff:fe12:3456", dst="fe80::1", hlim=64) /
	// ICMPv6EchoRequest(id=0x1234, seq=7, data=b"keepnet")
	"echo": "60000000000f3a40fe80000000000000505400fffe123456fe80000000000000000000000000000180003980123400076b6565706e6574",
	// ... to ff02::1:ff00:1, hlim=255 / ICMPv6ND_NS(tgt="fe80::1") /
	// ICMPv6NDOptSrcLLAddr(lladdr="52:54:00:12:34:56")
	"ns": "6000000000203afffe80000000000000505400fffe123456ff0200000000000000000001ff0000018700722200000000fe8000000000000000000000000000010101525400123456",
	// IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA(chlim=64,
	// O=1, routerlifetime=1800, reachabletime=30000, retranstimer=1000) /
	// SrcLLAddr 02:00:00:00:00:01 / MTU 1500 / PrefixInfo(2001:db8:1::/64,
	// L, A, valid 86400, preferred 14400); scapy sets the router preference
	// bits too (RFC 4191: prf=1, high), flags 0x48
	"ra": "6000000000403afffe800000000000000000000000000001ff0200000000000000000000000000018600b2774048070800007530000003e8010102000000000105010000000005dc030440c000015180000038400000000020010db8000100000000000000000000",
	// IPv6(src="fe80::1", dst="fe80::5054:ff:fe12:3456", hlim=255) /
	// ICMPv6ND_NA(tgt="fe80::1", R=1, S=1, O=1) / DstLLAddr 02:00:00:00:00:01
	"na": "6000000000203afffe800000000000000000000000000001fe80000000000000505400fffe12345688001461e0000000fe8000000000000000000000000000010201020000000001",
	// IPv6(2001:db8::1 -> 2001:db8::2) / HopByHop(RouterAlert) /
	// DestOpt(PadN 4) / Fragment(offset=0, m=1, id=0xdeadbeef, nh=17) / 16 x
	"ext": "600000000028004020010db800000000000000000000000120010db80000000000000000000000023c000502000001002c0001040000000011000001deadbeef78787878787878787878787878787878",
}

func TestIPv6Captured(t *testing.T) {
	h := IPv6(unhex(t, scapy6["echo"]))
	if err := ValidateIPv6(h); err != nil {
		t.Fatalf("ValidateIPv6(echo) = %v", err)
	}
	src, dst := netip.MustParseAddr("fe80::5054:ff:fe12:3456"), netip.MustParseAddr("fe80::1")
	if h.Src() != src || h.Dst() != dst || h.HopLimit() != 64 || h.NextHeader() != ProtocolICMPv6 || h.PayloadLength() != 15 {
		t.Fatalf("echo header: %v -> %v hop limit %d next %d length %d", h.Src(), h.Dst(), h.HopLimit(), h.NextHeader(), h.PayloadLength())
	}
	m := ICMPv6(h.Payload())
	if err := ValidateICMPv6(m, src, dst); err != nil {
		t.Fatalf("ValidateICMPv6(echo) = %v", err)
	}
	if m.Type() != ICMPv6EchoRequest || m.Ident() != 0x1234 || m.Sequence() != 7 || string(m.Body()) != "keepnet" {
		t.Errorf("echo: type %d id %#x seq %d body %q", m.Type(), m.Ident(), m.Sequence(), m.Body())
	}
	// Rebuilt by keepnet, byte for byte scapy's, checksum included.
	b := make([]byte, len(h))
	IPv6(b).Encode(&IPv6Fields{PayloadLength: 15, NextHeader: ProtocolICMPv6, HopLimit: 64, Src: src, Dst: dst})
	e := ICMPv6(b[IPv6MinimumSize:])
	e.SetType(ICMPv6EchoRequest)
	e.SetIdent(0x1234)
	e.SetSequence(7)
	copy(e.Body(), "keepnet")
	e.SetChecksumFor(src, dst)
	if !bytes.Equal(b, h) {
		t.Errorf("encoded echo\n% x\nwant scapy's\n% x", b, []byte(h))
	}
	if ValidateICMPv6(m, src, netip.MustParseAddr("fe80::2")) != ErrBadChecksum {
		t.Error("the echo validates for another destination: the pseudo-header is not summed")
	}
}

func TestValidateIPv6Rejects(t *testing.T) {
	good := unhex(t, scapy6["echo"])
	for _, tt := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:39], ErrTruncated},
		{"payload cut", good[:len(good)-1], ErrTruncated},
		{"version 4", append([]byte{0x40}, good[1:]...), ErrBadVersion},
	} {
		if err := ValidateIPv6(tt.b); err != tt.want {
			t.Errorf("%s: ValidateIPv6 = %v, want %v", tt.name, err, tt.want)
		}
	}
	padded := append(bytes.Clone(good), 0, 0, 0)
	if err := ValidateIPv6(padded); err != nil || len(IPv6(padded).Payload()) != 15 {
		t.Errorf("padded frame: %v, payload %d bytes; want nil, 15", err, len(IPv6(padded).Payload()))
	}
}

func TestIPv6ExtensionsCaptured(t *testing.T) {
	h := IPv6(unhex(t, scapy6["ext"]))
	if err := ValidateIPv6(h); err != nil {
		t.Fatal(err)
	}
	x, err := ParseIPv6Extensions(h)
	if err != nil {
		t.Fatalf("ParseIPv6Extensions = %v", err)
	}
	want := IPv6Extensions{Upper: ProtocolUDP, UpperOffset: 64, UpperField: 56, Fragment: true, FragmentHeader: 56, MoreFragments: true, FragmentID: 0xdeadbeef}
	if x != want {
		t.Errorf("ParseIPv6Extensions = %+v, want %+v", x, want)
	}
}

// ext6 builds a datagram: the fixed header naming first, then the given
// extension headers' bytes, then data.
func ext6(first uint8, hdrs ...[]byte) IPv6 {
	var payload []byte
	for _, h := range hdrs {
		payload = append(payload, h...)
	}
	b := make([]byte, IPv6MinimumSize+len(payload))
	IPv6(b).Encode(&IPv6Fields{PayloadLength: uint16(len(payload)), NextHeader: first, HopLimit: 64,
		Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2")})
	copy(b[IPv6MinimumSize:], payload)
	return b
}

// opts is an options header of 8 bytes: next, length 0, then 6 bytes.
func opts(next uint8, six ...byte) []byte { return append([]byte{next, 0}, six...) }

func frag(next uint8, offset int, more bool, id uint32) []byte {
	w := uint16(offset/8) << 3
	if more {
		w |= 1
	}
	return []byte{next, 0, byte(w >> 8), byte(w), byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
}

func TestIPv6Extensions(t *testing.T) {
	pad6 := []byte{1, 4, 0, 0, 0, 0}
	data8, data7 := make([]byte, 8), make([]byte, 7)
	for _, tt := range []struct {
		name    string
		h       IPv6
		want    IPv6Extensions
		wantErr error
	}{
		{"no extension", ext6(ProtocolTCP, data8), IPv6Extensions{Upper: ProtocolTCP, UpperOffset: 40, UpperField: 6}, nil},
		{"hop-by-hop then dest opts", ext6(ProtocolIPv6HopByHop, opts(ProtocolIPv6DstOpts, pad6...), opts(ProtocolUDP, pad6...), data8),
			IPv6Extensions{Upper: ProtocolUDP, UpperOffset: 56, UpperField: 48}, nil},
		{"hop-by-hop second", ext6(ProtocolIPv6DstOpts, opts(ProtocolIPv6HopByHop, pad6...), opts(ProtocolUDP, pad6...)),
			IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6UnknownNextHdr, Pointer: 40}},
		{"unknown option 00: skipped", ext6(ProtocolIPv6DstOpts, opts(ProtocolUDP, 0x1e, 4, 0, 0, 0, 0), data8),
			IPv6Extensions{Upper: ProtocolUDP, UpperOffset: 48, UpperField: 40}, nil},
		{"unknown option 01: discarded", ext6(ProtocolIPv6DstOpts, opts(ProtocolUDP, 0x5e, 4, 0, 0, 0, 0)), IPv6Extensions{}, ErrIPv6Discard},
		{"unknown option 10: reported, even to multicast", ext6(ProtocolIPv6DstOpts, opts(ProtocolUDP, 1, 0, 0x9e, 2, 0, 0)),
			IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6UnknownOption, Pointer: 44, EvenToMulticast: true}},
		{"unknown option 11 (jumbo): reported", ext6(ProtocolIPv6HopByHop, opts(ProtocolUDP, 0xc2, 4, 0, 1, 0, 0)),
			IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6UnknownOption, Pointer: 42}},
		{"router alert skipped", ext6(ProtocolIPv6HopByHop, opts(ProtocolICMPv6, 5, 2, 0, 0, 1, 0), data8),
			IPv6Extensions{Upper: ProtocolICMPv6, UpperOffset: 48, UpperField: 40}, nil},
		{"option past its header", ext6(ProtocolIPv6DstOpts, opts(ProtocolUDP, 0x1e, 5, 0, 0, 0, 0)), IPv6Extensions{}, ErrBadLength},
		{"14 bytes of padding", ext6(ProtocolIPv6DstOpts, []byte{ProtocolUDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), IPv6Extensions{}, ErrIPv6Discard},
		{"header past the payload", ext6(ProtocolIPv6DstOpts, []byte{ProtocolUDP, 1, 1, 4, 0, 0, 0, 0}), IPv6Extensions{}, ErrTruncated},
		{"routing, no segments left", ext6(ProtocolIPv6Routing, []byte{ProtocolTCP, 0, 0, 0, 0, 0, 0, 0}, data8),
			IPv6Extensions{Upper: ProtocolTCP, UpperOffset: 48, UpperField: 40}, nil},
		{"routing, segments left", ext6(ProtocolIPv6Routing, []byte{ProtocolTCP, 0, 0, 1, 0, 0, 0, 0}),
			IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6ErroneousField, Pointer: 42}},
		{"first fragment", ext6(ProtocolIPv6Fragment, frag(ProtocolUDP, 0, true, 7), data8),
			IPv6Extensions{Upper: ProtocolUDP, UpperOffset: 48, UpperField: 40, Fragment: true, FragmentHeader: 40, MoreFragments: true, FragmentID: 7}, nil},
		{"last fragment, any length", ext6(ProtocolIPv6Fragment, frag(ProtocolUDP, 1480, false, 7), data7),
			IPv6Extensions{Upper: ProtocolUDP, UpperOffset: 48, UpperField: 40, Fragment: true, FragmentHeader: 40, FragmentOffset: 1480, FragmentID: 7}, nil},
		{"atomic fragment: walked through", ext6(ProtocolIPv6Fragment, frag(ProtocolTCP, 0, false, 7), data7),
			IPv6Extensions{Upper: ProtocolTCP, UpperOffset: 48, UpperField: 40}, nil},
		{"more fragments, length not a multiple of 8", ext6(ProtocolIPv6Fragment, frag(ProtocolUDP, 0, true, 7), data7),
			IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6ErroneousField, Pointer: 4}},
		{"fragment past 65535", ext6(ProtocolIPv6Fragment, frag(ProtocolUDP, 65528, false, 7), data8),
			IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6ErroneousField, Pointer: 42}},
		{"no next header", ext6(ProtocolIPv6DstOpts, opts(ProtocolIPv6NoNext, pad6...), data8),
			IPv6Extensions{Upper: ProtocolIPv6NoNext, UpperOffset: 48, UpperField: 40}, nil},
	} {
		x, err := ParseIPv6Extensions(tt.h)
		var pp, wantPP *IPv6ParamProblem
		if errors.As(tt.wantErr, &wantPP) {
			if !errors.As(err, &pp) || *pp != *wantPP {
				t.Errorf("%s: ParseIPv6Extensions = %v, want %v", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != tt.wantErr || x != tt.want {
			t.Errorf("%s: ParseIPv6Extensions = %+v, %v; want %+v, %v", tt.name, x, err, tt.want, tt.wantErr)
		}
	}
	// Nine destination options headers, one more than keepnet takes.
	var nine [][]byte
	for range 9 {
		nine = append(nine, opts(ProtocolIPv6DstOpts, pad6...))
	}
	if _, err := ParseIPv6Extensions(ext6(ProtocolIPv6DstOpts, nine...)); err != ErrIPv6Discard {
		t.Errorf("nine extension headers: %v, want ErrIPv6Discard", err)
	}
}

// ndp parses one of scapy6's ND datagrams down to its ICMPv6 message.
func ndp(t *testing.T, name string) (IPv6, ICMPv6) {
	t.Helper()
	h := IPv6(unhex(t, scapy6[name]))
	if err := ValidateIPv6(h); err != nil {
		t.Fatal(err)
	}
	m := ICMPv6(h.Payload())
	if err := ValidateICMPv6(m, h.Src(), h.Dst()); err != nil {
		t.Fatalf("%s: ValidateICMPv6 = %v", name, err)
	}
	if err := ValidateNDP(m, h.HopLimit(), h.Src(), h.Dst()); err != nil {
		t.Fatalf("%s: ValidateNDP = %v", name, err)
	}
	return h, m
}

func TestNDPCaptured(t *testing.T) {
	_, ra := ndp(t, "ra")
	if ra.RAHopLimit() != 64 || ra.RAFlags()&(RAManaged|RAOther) != RAOther || ra.RALifetime() != 1800 || ra.RAReachable() != 30000 || ra.RARetransmit() != 1000 {
		t.Errorf("RA fields: hop %d flags %#x lifetime %d reachable %d retrans %d", ra.RAHopLimit(), ra.RAFlags(), ra.RALifetime(), ra.RAReachable(), ra.RARetransmit())
	}
	var types []NDPOptionType
	for typ := range ra.Options().All() {
		types = append(types, typ)
	}
	if want := []NDPOptionType{NDPSourceLinkAddr, NDPMTU, NDPPrefixInfo}; !equalTypes(types, want) {
		t.Errorf("RA options %v, want %v", types, want)
	}
	body, _ := ra.Options().Find(NDPSourceLinkAddr)
	if mac, ok := LinkAddr(body); !ok || mac != (MAC{2, 0, 0, 0, 0, 1}) {
		t.Errorf("RA source link address %v, %v", mac, ok)
	}
	body, _ = ra.Options().Find(NDPMTU)
	if mtu, ok := ParseMTUOption(body); !ok || mtu != 1500 {
		t.Errorf("RA MTU %d, %v; want 1500", mtu, ok)
	}
	body, _ = ra.Options().Find(NDPPrefixInfo)
	want := PrefixInfo{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), OnLink: true, Autonomous: true, ValidLifetime: 86400, PreferredLifetime: 14400}
	if pi, ok := ParsePrefixInfo(body); !ok || pi != want {
		t.Errorf("RA prefix %+v, %v; want %+v", pi, ok, want)
	}

	_, na := ndp(t, "na")
	if na.Target() != netip.MustParseAddr("fe80::1") || na.NAFlags() != NARouter|NASolicited|NAOverride {
		t.Errorf("NA target %v flags %#x", na.Target(), na.NAFlags())
	}
}

func equalTypes(a, b []NDPOptionType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// keepnet's solicitation and advertisement are scapy's, byte for byte.
func TestNDPBuild(t *testing.T) {
	h, _ := ndp(t, "ns")
	b := make([]byte, 32)
	mac := MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	n := NeighborSolicitation(b, netip.MustParseAddr("fe80::1"), &mac)
	ICMPv6(b[:n]).SetChecksumFor(h.Src(), h.Dst())
	if !bytes.Equal(b[:n], h.Payload()) {
		t.Errorf("NS\n% x\nwant scapy's\n% x", b[:n], h.Payload())
	}
	h, _ = ndp(t, "na")
	n = NeighborAdvertisement(b, netip.MustParseAddr("fe80::1"), NARouter|NASolicited|NAOverride, MAC{2, 0, 0, 0, 0, 1})
	ICMPv6(b[:n]).SetChecksumFor(h.Src(), h.Dst())
	if !bytes.Equal(b[:n], h.Payload()) {
		t.Errorf("NA\n% x\nwant scapy's\n% x", b[:n], h.Payload())
	}
	if n := RouterSolicitation(b, nil); n != 8 || ValidateNDP(ICMPv6(b[:n]), 255, netip.IPv6Unspecified(), IPv6AllRouters) != nil {
		t.Errorf("RS from no address: %d bytes, or invalid", n)
	}
}

func TestValidateNDPRejects(t *testing.T) {
	ll, global := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("2001:db8::1")
	target := netip.MustParseAddr("2001:db8::2")
	mac := MAC{2, 0, 0, 0, 0, 1}
	ns := func(withMAC bool) ICMPv6 {
		b := make([]byte, 32)
		m := &mac
		if !withMAC {
			m = nil
		}
		return ICMPv6(b[:NeighborSolicitation(b, target, m)])
	}
	zeroOpt := append(ns(false), 1, 0, 0, 0, 0, 0, 0, 0)
	longOpt := append(ns(false), 1, 2, 0, 0, 0, 0, 0, 0)
	multicastTarget := ns(false)
	put16(multicastTarget[8:], IPv6AllNodes)
	code1 := ns(true)
	code1.SetCode(1)
	na := make([]byte, 32)
	NeighborAdvertisement(na, target, NASolicited, mac)
	ra := make([]byte, 16)
	ICMPv6(ra).SetType(ICMPv6RouterAdvert)
	for _, tt := range []struct {
		name     string
		m        ICMPv6
		hops     uint8
		src, dst netip.Addr
	}{
		{"hop limit 254", ns(true), 254, global, SolicitedNode(target)},
		{"code 1", code1, 255, global, SolicitedNode(target)},
		{"an option of length 0", zeroOpt, 255, global, SolicitedNode(target)},
		{"an option past the message", longOpt, 255, global, SolicitedNode(target)},
		{"multicast target", multicastTarget, 255, global, SolicitedNode(target)},
		{"DAD probe with a source link address", ns(true), 255, netip.IPv6Unspecified(), SolicitedNode(target)},
		{"DAD probe not to the solicited-node group", ns(false), 255, netip.IPv6Unspecified(), target},
		{"solicited advertisement to a multicast group", na, 255, global, IPv6AllNodes},
		{"RA from a global address", ra, 255, global, IPv6AllNodes},
		{"RA cut short", ra[:15], 255, ll, IPv6AllNodes},
	} {
		if err := ValidateNDP(tt.m, tt.hops, tt.src, tt.dst); err != ErrBadNDP {
			t.Errorf("%s: ValidateNDP = %v, want ErrBadNDP", tt.name, err)
		}
	}
	if err := ValidateNDP(ns(false), 255, netip.IPv6Unspecified(), SolicitedNode(target)); err != nil {
		t.Errorf("a DAD probe: ValidateNDP = %v, want nil", err)
	}
}

func TestIPv6Addresses(t *testing.T) {
	mac := MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	// What Linux gives QEMU's default NIC.
	if got, want := LinkLocal(mac), netip.MustParseAddr("fe80::5054:ff:fe12:3456"); got != want {
		t.Errorf("LinkLocal(%v) = %v, want %v", mac, got, want)
	}
	a := netip.MustParseAddr("2001:db8::1:2345:6789")
	if got, want := SolicitedNode(a), netip.MustParseAddr("ff02::1:ff45:6789"); got != want || !IsSolicitedNode(got) {
		t.Errorf("SolicitedNode(%v) = %v, want %v", a, got, want)
	}
	if IsSolicitedNode(IPv6AllNodes) {
		t.Error("ff02::1 taken for a solicited-node address")
	}
	if got, want := MulticastMAC(SolicitedNode(a)), (MAC{0x33, 0x33, 0xff, 0x45, 0x67, 0x89}); got != want {
		t.Errorf("MulticastMAC = %v, want %v", got, want)
	}
	if got, want := WithInterfaceID(netip.MustParsePrefix("2001:db8:1::/64"), InterfaceID(mac)), netip.MustParseAddr("2001:db8:1:0:5054:ff:fe12:3456"); got != want {
		t.Errorf("SLAAC address = %v, want %v", got, want)
	}
}

// TCP's and UDP's checksums take IPv6's pseudo-header for IPv6 addresses.
func TestPseudoHeaderFamilies(t *testing.T) {
	src, dst := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	if PseudoHeaderChecksum(ProtocolTCP, src, dst, 20) != PseudoHeaderChecksum6(ProtocolTCP, src, dst, 20) {
		t.Errorf("PseudoHeaderChecksum over IPv6 addresses is not IPv6's")
	}
}
