package ops

import (
	"encoding/binary"
	"net/netip"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

// Where an address travels in a channel.Msg: its 16 bytes in two
// consecutive Arg words, big-endian (IPv4 as the IPv4-mapped IPv6 address
// ::ffff:a.b.c.d, so that the two families never meet in one encoding), and
// its port in one of the two Aux slots. The package doc lists, op by op,
// which slot each address takes.
type Slot struct{ word, aux uint8 }

var (
	// AtArg0 is Arg[0..1] with the port in Aux[0]: a reply's (first)
	// address, OpOutput's destination, OpAddr's address.
	AtArg0 = Slot{word: 0, aux: 0}
	// AtArg1 is Arg[1..2] with the port in Aux[0]: the address of a
	// request on a socket (Arg[0] names the socket; Arg[3] is the
	// requester's).
	AtArg1 = Slot{word: 1, aux: 0}
	// AtArg2 is Arg[2..3] with the port in Aux[1]: a reply's second
	// address (OpAccept's local address).
	AtArg2 = Slot{word: 2, aux: 1}
)

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// PutAddr writes a into m at slot at.
func PutAddr(m *channel.Msg, at Slot, a Addr) {
	b := a.ip
	if !a.v6 {
		copy(b[12:], a.ip[:4])
		copy(b[:12], v4Prefix[:])
	}
	m.Arg[at.word] = binary.BigEndian.Uint64(b[:8])
	m.Arg[at.word+1] = binary.BigEndian.Uint64(b[8:])
	m.Aux[at.aux] = a.port
}

// GetAddr reads the address at slot at of m. Every value decodes: an
// IPv4-mapped address is IPv4, anything else IPv6 (all zero words are
// [::]: a message that carries no address must still PutAddr the zero
// Addr, 0.0.0.0:0).
func GetAddr(m channel.Msg, at Slot) Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], m.Arg[at.word])
	binary.BigEndian.PutUint64(b[8:], m.Arg[at.word+1])
	a := Addr{port: m.Aux[at.aux]}
	if [12]byte(b[:12]) == v4Prefix {
		copy(a.ip[:], b[12:])
	} else {
		a.ip, a.v6 = b, true
	}
	return a
}

// GetAddr4 is GetAddr for a path that carries IPv4 only: an IPv6 address is
// StatusAFNoSupport.
func GetAddr4(m channel.Msg, at Slot) (Addr, Status) {
	a := GetAddr(m, at)
	if !a.Is4() {
		return Addr{}, StatusAFNoSupport
	}
	return a, StatusOK
}

// Output is an OpOutput request: segment ref from src to dst, of IP
// protocol proto, with offload (0: none). src is the address the
// segment's checksum covers; an invalid one leaves it to IP (for IPv4 its
// first address; for IPv6 the one RFC 6724 picks for dst, and then IP
// fills in the checksum too: ask OffloadChecksum). To an IPv4 dst, src
// travels in Arg[2]'s upper half beside proto and the offload in Arg[3];
// to an IPv6 dst there is no room for that: src takes AtArg2, and proto,
// a checksum offload and flagOutput6 take Flags (no segmentation offload
// over IPv6).
func Output(ref pool.Ref, src, dst netip.Addr, proto uint8, offload uint64) channel.Msg {
	m := OpOutput.Msg()
	m.Ref = ref
	PutAddr(&m, AtArg0, MakeAddr(dst, 0))
	if dst.Is6() && !dst.Is4In6() {
		m.Flags = flagOutput6 | uint16(proto)
		if offload&OffloadChecksum != 0 {
			m.Flags |= flagOutputSum
		}
		PutAddr(&m, AtArg2, MakeAddr(src, 0)) // the zero Addr: [::]
		return m
	}
	m.Arg[2], m.Arg[3] = uint64(proto), offload
	if src.Is4() {
		m.Arg[2] |= uint64(binary.BigEndian.Uint32(src.AsSlice())) << 32
	}
	return m
}

// Flags of an OpOutput to an IPv6 destination (Output): the protocol is
// in the low byte, the ECN codepoint (SetOutputECN) in bits 12-13.
const (
	flagOutput6   = 1 << 15
	flagOutputSum = 1 << 14
	output6ECN    = 12
)

// outputECN4 is where an OpOutput to an IPv4 destination keeps its ECN
// codepoint: bits 8-9 of Arg[2], between the protocol (its low byte) and
// the source (its upper half).
const outputECN4 = 8

// SetOutputECN asks IP to send the OpOutput m's datagram with the ECN
// codepoint ecn (RFC 3168: ECNECT0 for a TCP data segment of a connection
// that negotiated ECN); Output leaves it Not-ECT. Call it after Output.
func SetOutputECN(m *channel.Msg, ecn uint8) {
	if m.Flags&flagOutput6 != 0 {
		m.Flags = m.Flags&^(3<<output6ECN) | uint16(ecn&3)<<output6ECN
		return
	}
	m.Arg[2] = m.Arg[2]&^(3<<outputECN4) | uint64(ecn&3)<<outputECN4
}

// OutputECN is the ECN codepoint an OpOutput asks for (SetOutputECN).
func OutputECN(m channel.Msg) uint8 {
	if m.Flags&flagOutput6 != 0 {
		return uint8(m.Flags>>output6ECN) & 3
	}
	return uint8(m.Arg[2]>>outputECN4) & 3
}

// OutputProto is an OpOutput's IP protocol.
func OutputProto(m channel.Msg) uint8 {
	if m.Flags&flagOutput6 != 0 {
		return uint8(m.Flags)
	}
	return uint8(m.Arg[2])
}

// OutputOffload is the offload an OpOutput asks for (OffloadChecksum,
// TSOArg).
func OutputOffload(m channel.Msg) uint64 {
	if m.Flags&flagOutput6 != 0 {
		if m.Flags&flagOutputSum != 0 {
			return OffloadChecksum
		}
		return 0
	}
	return m.Arg[3]
}

// OutputSource is an OpOutput's source address; invalid if the transport
// left it to IP.
func OutputSource(m channel.Msg) netip.Addr {
	if m.Flags&flagOutput6 != 0 {
		if a := GetAddr(m, AtArg2).IP(); !a.IsUnspecified() {
			return a
		}
		return netip.Addr{}
	}
	v := uint32(m.Arg[2] >> 32)
	if v == 0 {
		return netip.Addr{}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// Deliver is an OpDeliver request: the datagram in ref, from src to dst,
// its transport header at offset off from ref's start (the IP header's
// length, and the link header's if the datagram comes after one), which
// must be at most MaxDeliverOffset.
func Deliver(ref pool.Ref, src, dst netip.Addr, off int) channel.Msg {
	m := OpDeliver.Msg()
	m.Ref = ref
	PutAddr(&m, AtArg0, MakeAddr(src, 0))
	PutAddr(&m, AtArg2, MakeAddr(dst, 0))
	m.Flags = uint16(off) & MaxDeliverOffset
	return m
}

// Delivered reads an OpDeliver request (Deliver).
func Delivered(m channel.Msg) (src, dst Addr, off int) {
	return GetAddr(m, AtArg0), GetAddr(m, AtArg2), int(m.Flags & MaxDeliverOffset)
}

// ECN codepoints (RFC 3168 §5): the two low bits of the IPv4 TOS byte and
// of the IPv6 traffic class.
const (
	ECNNotECT uint8 = 0b00
	ECNECT1   uint8 = 0b01
	ECNECT0   uint8 = 0b10
	ECNCE     uint8 = 0b11
)

// MaxDeliverOffset is the largest transport header offset an OpDeliver
// carries: its Flags keep the offset in their low 13 bits, whether the
// device verified the transport checksum in bit 13 (SetDeliverVerified)
// and the datagram's ECN codepoint in the two above (SetDeliverECN). An
// IPv4 header is at most 60 bytes; IP drops an IPv6 datagram whose
// extension headers reach further (none real does).
const MaxDeliverOffset = 1<<13 - 1

// deliverVerified is the OpDeliver flag of SetDeliverVerified.
const deliverVerified = 1 << 13

// SetDeliverECN records in an OpDeliver request the ECN codepoint of the
// delivered datagram's IP header.
func SetDeliverECN(m *channel.Msg, ecn uint8) {
	m.Flags = m.Flags&(MaxDeliverOffset|deliverVerified) | uint16(ecn&3)<<14
}

// SetDeliverVerified records in an OpDeliver request whether the device
// verified the datagram's TCP or UDP checksum (drivers/link RxCheckedL4),
// so that the transport need not compute it again.
func SetDeliverVerified(m *channel.Msg, verified bool) {
	m.Flags &^= deliverVerified
	if verified {
		m.Flags |= deliverVerified
	}
}

// DeliveredVerified reports whether an OpDeliver's checksum was verified
// by the device (SetDeliverVerified).
func DeliveredVerified(m channel.Msg) bool { return m.Flags&deliverVerified != 0 }

// DeliveredECN is an OpDeliver's ECN codepoint (SetDeliverECN).
func DeliveredECN(m channel.Msg) uint8 { return uint8(m.Flags >> 14) }

// SetAddrReply fills in OpAddr's reply: IP's address and prefix, and the
// offloads it offers.
func SetAddrReply(r *channel.Msg, p netip.Prefix, offloads uint64) {
	PutAddr(r, AtArg0, MakeAddr(p.Addr(), 0))
	r.Arg[2], r.Arg[3] = uint64(p.Bits()), offloads
}

// AddrReply reads OpAddr's reply (SetAddrReply); the prefix is invalid if
// the reply makes no sense.
func AddrReply(r channel.Msg) (netip.Prefix, uint64) {
	return netip.PrefixFrom(GetAddr(r, AtArg0).IP(), int(r.Arg[2])), r.Arg[3]
}

// StoredSize is the size of an Addr's stored form (Put, Get).
const StoredSize = 18

// Put writes a in its stored form into b[:StoredSize]: its 16 bytes as in
// a message (IPv4 mapped, ::ffff:a.b.c.d) and then the port, big-endian.
func (a Addr) Put(b []byte) {
	var m channel.Msg
	PutAddr(&m, AtArg0, a)
	binary.BigEndian.PutUint64(b[0:], m.Arg[0])
	binary.BigEndian.PutUint64(b[8:], m.Arg[1])
	binary.BigEndian.PutUint16(b[16:], a.port)
}

// Get reads an address Put wrote.
func Get(b []byte) Addr {
	var m channel.Msg
	m.Arg[0], m.Arg[1] = binary.BigEndian.Uint64(b[0:]), binary.BigEndian.Uint64(b[8:])
	m.Aux[0] = binary.BigEndian.Uint16(b[16:])
	return GetAddr(m, AtArg0)
}

// WithAddr is a request of operation o on socket id with address a
// (AtArg1).
func (o Op) WithAddr(id uint64, a Addr) channel.Msg {
	m := o.Msg(id)
	PutAddr(&m, AtArg1, a)
	return m
}

// DeliverError is an OpDeliverError request: the ICMP error datagram in
// ref, from src to dst, its ICMP header at offset off.
func DeliverError(ref pool.Ref, src, dst netip.Addr, off int) channel.Msg {
	m := Deliver(ref, src, dst, off)
	m.Op = uint16(OpDeliverError)
	return m
}

// Source is an OpSource request: which source address IP would send to dst
// from. key is the asker's, in Arg[3] (IP leaves it).
func Source(dst netip.Addr, key uint64) channel.Msg {
	m := OpSource.Msg()
	PutAddr(&m, AtArg0, MakeAddr(dst, 0))
	m.Arg[3] = key
	return m
}
