package header

import (
	"encoding/binary"
	"errors"
	"iter"
	"net/netip"
)

// Neighbor Discovery (RFC 4861 §4) messages are ICMPv6 messages whose
// fixed fields follow the type-specific word, then options:
//
//	Router Solicitation (133)      reserved(4)                                   options at 8
//	Router Advertisement (134)     hop limit(1) M|O(1) router lifetime(2)
//	                               reachable time(4) retrans timer(4)            options at 16
//	Neighbor Solicitation (135)    reserved(4) target(16)                        options at 24
//	Neighbor Advertisement (136)   R|S|O(1) reserved(3) target(16)               options at 24
//	Redirect (137)                 reserved(4) target(16) destination(16)        options at 40
//
// (offsets from the message's first byte). Each option is
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |    Length     |              ...              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// with Length in 8-octet units, type and length included.

// ErrBadNDP is a Neighbor Discovery message RFC 4861's validation rules
// (§6.1, §7.1, §8.1) say to discard silently.
var ErrBadNDP = errors.New("invalid neighbor discovery message")

// NDPHopLimit is the hop limit every ND message is sent and must arrive
// with: 255 proves it was not forwarded by a router (RFC 4861 §3.1).
const NDPHopLimit = 255

// The fixed lengths of the ND messages, where their options start.
const (
	rsFixed       = 8
	raFixed       = 16
	nsFixed       = 24
	naFixed       = 24
	redirectFixed = 40
	ndTarget      = 8 // the target address in NS, NA and Redirect
)

// Flags of a Router Advertisement's byte 5 and of a Neighbor
// Advertisement's byte 4.
const (
	RAManaged     = 0x80 // M: addresses from DHCPv6
	RAOther       = 0x40 // O: other configuration from DHCPv6
	NARouter      = 0x80 // R: the sender is a router
	NASolicited   = 0x40 // S: an answer to a solicitation
	NAOverride    = 0x20 // O: replace a cached link-layer address
	ndOptionUnits = 8
)

// ndpFixed is the fixed length of ND message type t, 0 for other types.
func ndpFixed(t ICMPv6Type) int {
	switch t {
	case ICMPv6RouterSolicit:
		return rsFixed
	case ICMPv6RouterAdvert:
		return raFixed
	case ICMPv6NeighborSolic:
		return nsFixed
	case ICMPv6NeighborAdvert:
		return naFixed
	case ICMPv6Redirect:
		return redirectFixed
	}
	return 0
}

// IsNDP says whether t is a Neighbor Discovery message.
func (t ICMPv6Type) IsNDP() bool { return ndpFixed(t) != 0 }

// ValidateNDP applies RFC 4861's validity checks (§6.1.1, §6.1.2, §7.1.1,
// §7.1.2, §8.1) to m, a message ValidateICMPv6 accepted whose type IsNDP,
// received with hop limit hops from src to dst: hop limit 255, code 0, the
// fixed fields present, every option of a non-zero length that fits; a
// Router Advertisement or Redirect from a link-local source; no multicast
// target; a solicitation from the unspecified address (duplicate address
// detection) only to a solicited-node address and without a source
// link-layer option; no solicited advertisement to a multicast address.
// It returns ErrBadNDP for any; then every ND accessor of m is safe.
func ValidateNDP(m ICMPv6, hops uint8, src, dst netip.Addr) error {
	if len(m) < ICMPv6MinimumSize {
		return ErrBadNDP
	}
	fixed := ndpFixed(m.Type())
	if fixed == 0 || len(m) < fixed || hops != NDPHopLimit || m.Code() != 0 {
		return ErrBadNDP
	}
	opts := NDPOptions(m[fixed:])
	if !opts.wellFormed() {
		return ErrBadNDP
	}
	switch m.Type() {
	case ICMPv6RouterAdvert, ICMPv6Redirect:
		if !src.IsLinkLocalUnicast() {
			return ErrBadNDP
		}
	case ICMPv6RouterSolicit:
		if src.IsUnspecified() && opts.Has(NDPSourceLinkAddr) {
			return ErrBadNDP
		}
	case ICMPv6NeighborSolic:
		if m.Target().IsMulticast() {
			return ErrBadNDP
		}
		if src.IsUnspecified() && (!IsSolicitedNode(dst) || opts.Has(NDPSourceLinkAddr)) {
			return ErrBadNDP
		}
	case ICMPv6NeighborAdvert:
		if m.Target().IsMulticast() || dst.IsMulticast() && m.NAFlags()&NASolicited != 0 {
			return ErrBadNDP
		}
	}
	return nil
}

// Target is the target address of a Neighbor Solicitation or
// Advertisement, or of a Redirect.
func (b ICMPv6) Target() netip.Addr {
	return netip.AddrFrom16([16]byte(b[ndTarget : ndTarget+16]))
}

// Options are the ND options after the message's fixed fields.
func (b ICMPv6) Options() NDPOptions { return NDPOptions(b[ndpFixed(b.Type()):]) }

// Router Advertisement fields (RFC 4861 §4.2).
func (b ICMPv6) RAHopLimit() uint8 { return b[4] }
func (b ICMPv6) RAFlags() uint8    { return b[5] }
func (b ICMPv6) RALifetime() uint16 {
	return binary.BigEndian.Uint16(b[6:]) // seconds; 0: not a default router
}
func (b ICMPv6) RAReachable() uint32  { return binary.BigEndian.Uint32(b[8:]) }  // ms, 0: unspecified
func (b ICMPv6) RARetransmit() uint32 { return binary.BigEndian.Uint32(b[12:]) } // ms, 0: unspecified

// NAFlags is a Neighbor Advertisement's R, S and O flags.
func (b ICMPv6) NAFlags() uint8 { return b[4] }

// NDPOptionType is an ND option's type (RFC 4861 §4.6, RFC 8106).
type NDPOptionType uint8

const (
	NDPSourceLinkAddr NDPOptionType = 1
	NDPTargetLinkAddr NDPOptionType = 2
	NDPPrefixInfo     NDPOptionType = 3
	NDPRedirectedHdr  NDPOptionType = 4
	NDPMTU            NDPOptionType = 5
	NDPRDNSS          NDPOptionType = 25
)

// NDPOptions is a sequence of ND options.
type NDPOptions []byte

// wellFormed: every option has a non-zero length (RFC 4861 §4.6: "Nodes
// MUST silently discard an ND packet that contains an option with length
// zero") and ends within o.
func (o NDPOptions) wellFormed() bool {
	for len(o) > 0 {
		if len(o) < 2 || o[1] == 0 || int(o[1])*ndOptionUnits > len(o) {
			return false
		}
		o = o[int(o[1])*ndOptionUnits:]
	}
	return true
}

// All yields each option's type and body (what follows type and length),
// in order; o must be from a message ValidateNDP accepted.
func (o NDPOptions) All() iter.Seq2[NDPOptionType, []byte] {
	return func(yield func(NDPOptionType, []byte) bool) {
		for len(o) >= 2 && o[1] != 0 && int(o[1])*ndOptionUnits <= len(o) {
			n := int(o[1]) * ndOptionUnits
			if !yield(NDPOptionType(o[0]), o[2:n]) {
				return
			}
			o = o[n:]
		}
	}
}

// Has says whether o holds an option of type t.
func (o NDPOptions) Has(t NDPOptionType) bool {
	_, ok := o.Find(t)
	return ok
}

// Find is the body of o's first option of type t.
func (o NDPOptions) Find(t NDPOptionType) ([]byte, bool) {
	for typ, body := range o.All() {
		if typ == t {
			return body, true
		}
	}
	return nil, false
}

// LinkAddr reads a source or target link-layer address option's body: an
// Ethernet address is one 8-octet unit (RFC 2464 §8).
func LinkAddr(body []byte) (MAC, bool) {
	if len(body) != ndOptionUnits-2 {
		return MAC{}, false
	}
	return MAC(body), true
}

// PrefixInfo is a Prefix Information option (RFC 4861 §4.6.2).
type PrefixInfo struct {
	Prefix            netip.Prefix
	OnLink            bool   // L
	Autonomous        bool   // A: for stateless address autoconfiguration (RFC 4862)
	ValidLifetime     uint32 // seconds; 0xffffffff: infinity
	PreferredLifetime uint32
}

// ParsePrefixInfo reads a Prefix Information option's body (30 bytes).
func ParsePrefixInfo(body []byte) (PrefixInfo, bool) {
	if len(body) != 30 || body[0] > 128 {
		return PrefixInfo{}, false
	}
	addr := netip.AddrFrom16([16]byte(body[14:30]))
	prefix, err := addr.Prefix(int(body[0])) // the bits past the length are ignored
	if err != nil {
		return PrefixInfo{}, false
	}
	return PrefixInfo{
		Prefix: prefix, OnLink: body[1]&0x80 != 0, Autonomous: body[1]&0x40 != 0,
		ValidLifetime: binary.BigEndian.Uint32(body[2:]), PreferredLifetime: binary.BigEndian.Uint32(body[6:]),
	}, true
}

// ParseMTUOption reads an MTU option's body (RFC 4861 §4.6.4).
func ParseMTUOption(body []byte) (uint32, bool) {
	if len(body) != 6 {
		return 0, false
	}
	return binary.BigEndian.Uint32(body[2:]), true
}

// NeighborSolicitation writes a Neighbor Solicitation for target into b
// (which must hold 32 bytes), with a source link-layer address option
// unless src is nil (duplicate address detection sends none), and returns
// its length. The caller sets the checksum (SetChecksumFor).
func NeighborSolicitation(b []byte, target netip.Addr, src *MAC) int {
	return ndpWithAddr(b, ICMPv6NeighborSolic, 0, target, NDPSourceLinkAddr, src)
}

// NeighborAdvertisement writes a Neighbor Advertisement for target with
// flags (NARouter, NASolicited, NAOverride) and a target link-layer
// address option into b (32 bytes) and returns its length.
func NeighborAdvertisement(b []byte, target netip.Addr, flags uint8, mac MAC) int {
	return ndpWithAddr(b, ICMPv6NeighborAdvert, flags, target, NDPTargetLinkAddr, &mac)
}

// RouterSolicitation writes a Router Solicitation into b (16 bytes), with
// a source link-layer address option unless src is nil (a host with no
// address yet sends none), and returns its length.
func RouterSolicitation(b []byte, src *MAC) int {
	clear(b[:rsFixed])
	ICMPv6(b).SetType(ICMPv6RouterSolicit)
	return rsFixed + putLinkAddr(b[rsFixed:], NDPSourceLinkAddr, src)
}

func ndpWithAddr(b []byte, t ICMPv6Type, flags uint8, target netip.Addr, opt NDPOptionType, mac *MAC) int {
	clear(b[:nsFixed])
	ICMPv6(b).SetType(t)
	b[4] = flags
	put16(b[ndTarget:], target)
	return nsFixed + putLinkAddr(b[nsFixed:], opt, mac)
}

// putLinkAddr writes a link-layer address option for mac, if not nil.
func putLinkAddr(b []byte, t NDPOptionType, mac *MAC) int {
	if mac == nil {
		return 0
	}
	b[0], b[1] = uint8(t), 1
	copy(b[2:8], mac[:])
	return ndOptionUnits
}
