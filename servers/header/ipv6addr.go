package header

import "net/netip"

// Well-known IPv6 multicast groups (RFC 4291 §2.7.1, RFC 3810 §11).
var (
	IPv6AllNodes        = netip.MustParseAddr("ff02::1")
	IPv6AllRouters      = netip.MustParseAddr("ff02::2")
	IPv6AllMLDv2Routers = netip.MustParseAddr("ff02::16")
)

// SolicitedNode is the solicited-node multicast address of a
// (RFC 4291 §2.7.1): ff02::1:ff00:0/104 and a's low 24 bits. Neighbor
// solicitations for a are sent to it, so a node joins it for each of its
// addresses.
func SolicitedNode(a netip.Addr) netip.Addr {
	v := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 0x01, 12: 0xff, 13: v[13], 14: v[14], 15: v[15]})
}

// IsSolicitedNode says whether a is a solicited-node multicast address.
func IsSolicitedNode(a netip.Addr) bool {
	return a.Is6() && SolicitedNode(a) == a
}

// MulticastMAC is the Ethernet group address an IPv6 multicast address a
// maps to (RFC 2464 §7): 33:33 and a's low 32 bits. The NIC must accept it
// (its multicast table) for each group joined.
func MulticastMAC(a netip.Addr) MAC {
	v := a.As16()
	return MAC{0x33, 0x33, v[12], v[13], v[14], v[15]}
}

// InterfaceID is the modified EUI-64 interface identifier of an Ethernet
// address (RFC 4291 Appendix A, RFC 2464 §4): ff:fe in its middle and the
// universal/local bit inverted.
func InterfaceID(m MAC) [8]byte {
	return [8]byte{m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]}
}

// WithInterfaceID is the address of a /64 prefix p with interface
// identifier id.
func WithInterfaceID(p netip.Prefix, id [8]byte) netip.Addr {
	v := p.Masked().Addr().As16()
	copy(v[8:], id[:])
	return netip.AddrFrom16(v)
}

// LinkLocal is the link-local address fe80::/64 with m's interface
// identifier (RFC 4862 §5.3).
func LinkLocal(m MAC) netip.Addr {
	return WithInterfaceID(netip.MustParsePrefix("fe80::/64"), InterfaceID(m))
}
