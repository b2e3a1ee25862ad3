// Package ops is the protocol between the servers above the driver: IP and
// the transports (udp, tcp), the transports and the SYSCALL server, and the
// SYSCALL server and applications (their socket library). Every message is a
// kernel/channel Msg; every request gets exactly one reply with its id; a
// packet travels as a pool reference, owned by the sender's pool, and comes
// back with the reply.
//
// # IP <-> transport
//
//	OpDeliver  IP -> transport. Ref: a whole IPv4 datagram (header included,
//	           reassembled if it was fragmented, validated) in IP's "ip.up"
//	           pool; Arg[0]: its source, Arg[1]: its destination (Addr, port
//	           0), Arg[2]: the offset of the transport header in it (the IP
//	           header's length), so that a transport never parses IP. The
//	           reply frees it. StatusNoPort asks IP to answer the sender with
//	           ICMP port unreachable (IP still has the datagram).
//	OpOutput   transport -> IP. Ref: a transport segment (header and payload,
//	           checksum filled in) in the transport's pool. Arg[0]: destination
//	           (Addr), Arg[1]: IP protocol number, Arg[2]: an Offload the
//	           transport asks for (0: none; only what OpAddr offered).
//	           Reply once IP has copied it out (StatusOK) or could not
//	           (StatusNoRoute, StatusError, StatusTooBig).
//	OpAddr     transport -> IP. The reply carries IP's address in Arg[0] (an
//	           Addr with port 0), the prefix length in Arg[1], and in Arg[2]
//	           the offloads IP can pass on to its device (OffloadChecksum,
//	           OffloadTSO).
//
// # Sockets: application <-> SYSCALL <-> transport
//
// The same operations run on both hops. A socket is named by Arg[0], an id
// the requester chose (the application library for its hop, the SYSCALL
// server for the next); it is unique per requester for that requester's life.
// Addresses are Addr values (IPv4 and port packed in a uint64).
//
//	OpOpen     Arg[0] socket, Arg[1] Network. Creates an unbound socket.
//	OpBind     Arg[0] socket, Arg[1] local Addr (port 0: ephemeral, address 0:
//	           any). Reply Arg[1]: the address bound. StatusInUse.
//	OpConnect  Arg[0] socket, Arg[1] remote Addr. For UDP: the default
//	           destination and the only source accepted. Binds ephemerally
//	           first if unbound. Reply Arg[1]: local Addr.
//	OpSendTo   Arg[0] socket, Arg[1] destination Addr (0: the connected
//	           peer), Ref: the payload in the requester's pool. Reply once the
//	           payload is copied out; Arg[1]: local Addr (bound on first send).
//	OpRecvFrom Arg[0] socket, Ref: an empty buffer of the requester's pool.
//	           The reply comes when a datagram is there: Ref.Len its length
//	           (truncated to the buffer; Flags FlagTruncated), Arg[1] source.
//	           A requester may keep several posted per socket.
//	OpClose    Arg[0] socket. Every OpRecvFrom still posted on it is answered
//	           StatusClosed first.
//	OpReset    no arguments. Close every socket this requester opened before
//	           (a restarted SYSCALL server says so to each transport first,
//	           since its predecessor's sockets have no owner any more).
//
// Stream sockets (TCP) use the same operations where they fit, and three of
// their own:
//
//	OpBind     as above; for a listener, before OpListen.
//	OpListen   Arg[0] socket, Arg[1] backlog. The socket accepts connections.
//	OpAccept   Arg[0] listening socket, Arg[1] the id the requester gives the
//	           new connection. The reply comes when a connection is
//	           established: Arg[1] its remote Addr, Arg[2] its local Addr.
//	           A requester may keep several posted.
//	OpConnect  Arg[0] socket, Arg[1] remote Addr. The reply comes when the
//	           connection is established (StatusOK, Arg[1] local Addr) or
//	           failed (StatusRefused, StatusTimedOut, StatusNoRoute).
//	OpSendTo   Arg[1] 0, Ref the bytes. The reply comes when the transport
//	           took them into its send buffer: Arg[2] how many (possibly
//	           fewer than Ref.Len: send the rest again).
//	OpRecvFrom Ref an empty buffer. The reply comes when bytes are there
//	           (Ref.Len of them), or at the end of the stream: Ref.Len 0 and
//	           FlagEOF. With FlagNoWait on the request the reply comes at
//	           once: the bytes there are, the end of the stream or an error
//	           as above, or, if nothing is queued yet, StatusOK with Ref.Len
//	           0 and no FlagEOF ("would block").
//	           With a zero Ref (no buffer; a datagram socket refuses it,
//	           StatusInvalid) it is a readiness receive: the reply comes
//	           when the socket is readable (bytes queued, the end of the
//	           stream, or an error), StatusOK with Ref.Len 0, and consumes
//	           nothing: the next data receive finds what made it readable.
//	           (A closed or unknown socket answers it as it answers any
//	           receive.) A requester waits for data this way without
//	           lending a buffer while the connection is idle: one readiness
//	           receive posted, then FlagNoWait receives with buffers once it
//	           is readable, then a readiness receive again once one of them
//	           would block. Receives of both kinds are answered in the
//	           order they were posted: a FlagNoWait receive behind a
//	           readiness receive still waiting waits for it.
//	OpShutdown Arg[0] socket: no more sending (FIN); receiving goes on.
//	OpClose    as above: for a connection, an orderly close (FIN) unless
//	           received data is left unread (RST, as Linux does).
//
// Errors of a stream socket after it was established come back on its
// pending operations: StatusReset, StatusTimedOut.
package ops

import (
	"fmt"
	"net/netip"

	"keepnet/kernel/channel"
)

// Op is an operation of this protocol (channel.Msg.Op). Its numbers start
// at 0x10, away from drivers/link's, so that a message sent on the wrong
// channel is refused, never misread.
type Op uint16

// Operations, numbered here and nowhere else.
const (
	OpDeliver Op = 0x10 + iota
	OpOutput
	OpAddr
	OpOpen
	OpBind
	OpConnect
	OpSendTo
	OpRecvFrom
	OpClose
	OpReset
	OpListen
	OpAccept
	OpShutdown
)

var opNames = map[Op]string{
	OpDeliver: "OpDeliver", OpOutput: "OpOutput", OpAddr: "OpAddr",
	OpOpen: "OpOpen", OpBind: "OpBind", OpConnect: "OpConnect",
	OpSendTo: "OpSendTo", OpRecvFrom: "OpRecvFrom", OpClose: "OpClose",
	OpReset: "OpReset", OpListen: "OpListen", OpAccept: "OpAccept",
	OpShutdown: "OpShutdown",
}

func (o Op) String() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return fmt.Sprintf("Op(%#x)", uint16(o))
}

// IsSocketOp reports whether o is a socket operation (an application's or
// the SYSCALL server's request on a socket), as opposed to one between IP
// and a transport.
func (o Op) IsSocketOp() bool {
	switch o {
	case OpOpen, OpBind, OpConnect, OpSendTo, OpRecvFrom, OpClose, OpReset,
		OpListen, OpAccept, OpShutdown:
		return true
	}
	return false
}

// Msg is a message of operation o with the arguments args (Arg[0] first).
func (o Op) Msg(args ...uint64) channel.Msg {
	m := channel.Msg{Op: uint16(o)}
	copy(m.Arg[:], args)
	return m
}

// OpOf is m's operation.
func OpOf(m channel.Msg) Op { return Op(m.Op) }

// Status is a reply's status (channel.Msg.Status).
type Status int32

// Reply statuses, numbered here and nowhere else.
const (
	StatusOK       Status = 0
	StatusNoPort   Status = 1 // OpDeliver: nobody listens on the destination port
	StatusNoRoute  Status = 2
	StatusInUse    Status = 3 // the address is bound by another socket
	StatusNoSocket Status = 4 // no such socket
	StatusClosed   Status = 5 // the socket was closed while the request waited
	StatusInvalid  Status = 6 // a malformed request (bad address, bad ref, wrong state)
	StatusTooBig   Status = 7 // the payload does not fit a datagram
	StatusError    Status = 8 // anything else
	StatusRefused  Status = 9 // ICMP port unreachable came back, or a TCP RST answered our SYN
	StatusReset    Status = 10
	StatusTimedOut Status = 11
)

var statusNames = map[Status][2]string{
	StatusOK:       {"StatusOK", "ok"},
	StatusNoPort:   {"StatusNoPort", "port unreachable"},
	StatusNoRoute:  {"StatusNoRoute", "no route to host"},
	StatusInUse:    {"StatusInUse", "address already in use"},
	StatusNoSocket: {"StatusNoSocket", "no such socket"},
	StatusClosed:   {"StatusClosed", "socket closed"},
	StatusInvalid:  {"StatusInvalid", "invalid argument"},
	StatusTooBig:   {"StatusTooBig", "message too long"},
	StatusError:    {"StatusError", "error"},
	StatusRefused:  {"StatusRefused", "connection refused"},
	StatusReset:    {"StatusReset", "connection reset by peer"},
	StatusTimedOut: {"StatusTimedOut", "connection timed out"},
}

// String is s's name, for logs.
func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n[0]
	}
	return fmt.Sprintf("Status(%d)", int32(s))
}

// Text says what s means, for errors.
func (s Status) Text() string {
	if n, ok := statusNames[s]; ok {
		return n[1]
	}
	return fmt.Sprintf("status %d", int32(s))
}

// StatusOf is m's status.
func StatusOf(m channel.Msg) Status { return Status(m.Status) }

// SetStatus sets m's status to s.
func SetStatus(m *channel.Msg, s Status) { m.Status = int32(s) }

// Flags (Msg.Flags).
const (
	FlagTruncated uint16 = 1 << 0 // OpRecvFrom: the datagram was longer than the buffer
	FlagEOF       uint16 = 1 << 1 // OpRecvFrom on a stream: the peer closed its side
	// FlagNoWait, on an OpRecvFrom request on a stream socket: answer at
	// once, with Ref.Len 0 and no FlagEOF if nothing is queued.
	FlagNoWait uint16 = 1 << 2
)

// Offloads IP offers in OpAddr's Arg[2] and a transport asks for in
// OpOutput's Arg[2]. OffloadChecksum: the segment's checksum field is left
// for the device (its value is ignored). OffloadTSO, with the MSS in bits
// 16-31 of the request: the TCP segment may carry more than one MSS of
// payload (up to drivers/link.MaxTSO), for the device to cut into segments
// of MSS bytes; it implies OffloadChecksum.
const (
	OffloadChecksum uint64 = 1 << 0
	OffloadTSO      uint64 = 1 << 1
)

// TSOArg is OpOutput's Arg[2] for a segment the device is to cut at mss.
func TSOArg(mss int) uint64 { return OffloadChecksum | OffloadTSO | uint64(mss&0xFFFF)<<16 }

// TSOMSS is the MSS of a TSOArg, 0 if it asks for no segmentation.
func TSOMSS(arg uint64) int {
	if arg&OffloadTSO == 0 {
		return 0
	}
	return int(arg >> 16 & 0xFFFF)
}

// Network is what OpOpen creates.
type Network uint64

const (
	UDP Network = 17
	TCP Network = 6
)

// Addr is an IPv4 address and a port packed for a message argument:
// address in bits 16-47, port in bits 0-15.
type Addr uint64

// MakeAddr packs an address and port; an invalid address packs as 0.0.0.0.
func MakeAddr(ip netip.Addr, port uint16) Addr {
	var v uint32
	if ip.Is4() {
		b := ip.As4()
		v = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	}
	return Addr(uint64(v)<<16 | uint64(port))
}

// FromAddrPort packs a netip.AddrPort.
func FromAddrPort(ap netip.AddrPort) Addr { return MakeAddr(ap.Addr().Unmap(), ap.Port()) }

// IP is the address part.
func (a Addr) IP() netip.Addr {
	v := uint32(a >> 16)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Port is the port part.
func (a Addr) Port() uint16 { return uint16(a) }

// AddrPort unpacks a.
func (a Addr) AddrPort() netip.AddrPort { return netip.AddrPortFrom(a.IP(), a.Port()) }

func (a Addr) String() string { return a.AddrPort().String() }
