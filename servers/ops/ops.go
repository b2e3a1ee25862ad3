// Package ops is the protocol between the servers above the driver: IP and
// the transports (udp, tcp), the transports and the SYSCALL server, and the
// SYSCALL server and applications (their socket library). Every message is a
// kernel/channel Msg; every request gets exactly one reply with its id; a
// packet travels as a pool reference, owned by the sender's pool, and comes
// back with the reply.
//
// # Addresses
//
// An address (Addr: IPv4 or IPv6, and a port) takes three fields of a
// message: its 16 bytes in two Arg words (IPv4 as ::ffff:a.b.c.d) and its
// port in one of the two 16-bit Aux slots. Three slots are used (Slot):
//
//	AtArg0  Arg[0..1], port Aux[0]   a reply's address; OpOutput, OpAddr
//	AtArg1  Arg[1..2], port Aux[0]   a request's address (Arg[0]: socket)
//	AtArg2  Arg[2..3], port Aux[1]   a reply's second address (OpAccept)
//
// PutAddr and GetAddr are the only code that knows this layout. A request
// on a socket names the socket in Arg[0] and keeps Arg[3] for the
// requester (the SYSCALL server's key); a reply need not echo the socket,
// which the requester knows from its table of outstanding requests, so its
// four words are free for two addresses. Where a path carries IPv4 only,
// an IPv6 address is answered StatusAFNoSupport (GetAddr4), never read as
// 0.0.0.0.
//
// # IP <-> transport
//
//	OpDeliver  IP -> transport. Ref: a whole IPv4 datagram (header included,
//	           reassembled if it was fragmented, validated) in IP's "ip.up"
//	           pools, perhaps after the link header of the frame it came
//	           in (IP hands over the buffer it parsed the frame in, with
//	           no copy); AtArg0 its source, AtArg2 its destination (port 0),
//	           Flags the offset of the transport header from the Ref's
//	           start, so that a transport never parses IP
//	           (Deliver, Delivered), in its two top bits the
//	           datagram's ECN codepoint (SetDeliverECN, DeliveredECN),
//	           and below them whether the device verified its TCP/UDP
//	           checksum (SetDeliverVerified, DeliveredVerified): the
//	           transport then skips its own check. The reply frees it. StatusNoPort asks IP to answer the sender with
//	           ICMP port unreachable (IP still has the datagram).
//	OpDeliverError IP -> transport. An ICMP error (destination unreachable,
//	           time exceeded, parameter problem) about a datagram this
//	           transport sent, as OpDeliver delivers a datagram: Ref the
//	           whole ICMP datagram, AtArg0 its source (the router or host
//	           that complained), AtArg2 its destination, Flags the offset
//	           of the ICMP header. IP checked the message: the quoted
//	           datagram is one of ours, of the transport's protocol, and
//	           the quote holds its IP header and at least 8 bytes of its
//	           transport header; ICMPErrorOf reads it, so that the
//	           transport does not parse IP. A "fragmentation needed" IP
//	           has learned from already (its path MTU cache). The reply
//	           frees it; its status is ignored.
//	OpOutput   transport -> IP. Ref: a transport segment (header and payload,
//	           checksum filled in) in the transport's pool. AtArg0: the
//	           destination (port 0), Arg[2]: IP protocol number in its
//	           low byte and the source address (IPv4, the one the
//	           checksum covers; 0: IP's first) in its upper half, Arg[3]: an
//	           Offload the transport asks for (0: none; only what OpAddr
//	           offered). The ECN codepoint IP is to set travels in
//	           Arg[2] bits 8-9 (IPv6: Flags; SetOutputECN, OutputECN).
//	           Reply once IP has copied it out (StatusOK) or could
//	           not (StatusNoRoute, StatusError, StatusTooBig,
//	           StatusAFNoSupport).
//	OpAddr     transport -> IP. The reply carries IP's address at AtArg0
//	           (port 0), the prefix length in Arg[2], and in Arg[3] the
//	           offloads IP can pass on to its device (OffloadChecksum,
//	           OffloadTSO).
//	OpSource   transport -> IP. AtArg0: a destination (port 0); Arg[3] is
//	           the transport's (IP leaves it, so that the transport knows
//	           whose question it was). The reply carries at AtArg0 the
//	           source address IP would send to it from (IPv6: the one RFC
//	           6724 picks; IPv4: IP's address), StatusOK, or says why there
//	           is none: StatusNetUnreach (no route to it), StatusAddrNotAvail
//	           (a route but no address to send from: none configured yet,
//	           or each still tentative). A transport that must name its
//	           source before the first datagram (TCP's 4-tuple before its
//	           SYN) asks this way: choosing is IP's, which knows the
//	           addresses, their states and the routes.
//
// # Sockets: application <-> SYSCALL <-> transport
//
// The same operations run on both hops. A socket is named by Arg[0] of a
// request, an id the requester chose (the application library for its hop,
// the SYSCALL server for the next); it is unique per requester for that
// requester's life. Arg[3] of a request belongs to the requester: the
// transport leaves it alone.
//
//	OpOpen     Arg[0] socket, Arg[1] Network. Creates an unbound socket.
//	OpBind     Arg[0] socket, AtArg1 local address (port 0: ephemeral,
//	           0.0.0.0: any). Reply AtArg0: the address bound. StatusInUse.
//	OpConnect  Arg[0] socket, AtArg1 remote address. For UDP: the default
//	           destination and the only source accepted. Binds ephemerally
//	           first if unbound. Reply AtArg0: the local address.
//	OpSendTo   Arg[0] socket, AtArg1 destination (0.0.0.0:0: the connected
//	           peer), Ref: the payload in the requester's pool. Reply once
//	           the payload is copied out; AtArg0: the local address (bound on
//	           first send).
//	OpRecvFrom Arg[0] socket, Ref: an empty buffer of the requester's pool.
//	           The reply comes when a datagram is there: Ref.Len its length
//	           (truncated to the buffer; Flags FlagTruncated), AtArg0 its
//	           source. A requester may keep several posted per socket.
//	OpClose    Arg[0] socket. Every OpRecvFrom still posted on it is answered
//	           StatusClosed first.
//	OpReset    no arguments. Close every socket this requester opened before.
//	           (No SYSCALL server sends it any more: a restarted one adopts
//	           its predecessor's sockets, OpAdopt.)
//	OpAdopt    Arg[0] socket, Arg[1] Network. The requester takes over a
//	           socket a predecessor of it opened, with the same id: StatusOK
//	           if the transport has it (in whatever state), StatusNoSocket
//	           if not. An application adopts each of its sockets when a
//	           new SYSCALL generation comes (servers/socket); SYSCALL makes
//	           its record and forwards it.
//	OpCloseRange Arg[0] first, Arg[1] end: close every socket whose id is in
//	           [first, end), as OpClose would, and answer StatusOK. SYSCALL
//	           closes the sockets of an application's dead generations this
//	           way (its socket ids say whose they are, servers/syscallsrv).
//
// Every socket operation may be issued twice: after a restart of the
// SYSCALL server the library reissues each request that had no reply, and
// the transport may have acted on it already. So OpOpen of an open socket,
// OpBind to the address it has, OpConnect or OpListen repeated, OpClose of
// an unknown socket all answer as the first did; an OpAccept naming a
// connection already accepted for it answers with that connection; stream
// sends and receives carry stream offsets (below).
//
// An address of the other family than the one a socket is bound to (a
// given IPv4 address) is answered StatusAFNoSupport.
//
// Stream sockets (TCP) use the same operations where they fit, and three of
// their own:
//
//	OpBind     as above; for a listener, before OpListen.
//	OpListen   Arg[0] socket, Arg[1] backlog. The socket accepts connections.
//	OpAccept   Arg[0] listening socket, Arg[1] the id the requester gives the
//	           new connection. The reply comes when a connection is
//	           established: AtArg0 its remote address, AtArg2 its local
//	           address. A requester may keep several posted.
//	OpConnect  Arg[0] socket, AtArg1 remote address. The reply comes when
//	           the connection is established (StatusOK, AtArg0 the local
//	           address) or failed (StatusRefused, StatusTimedOut,
//	           StatusNoRoute; to IPv6, what OpSource answered:
//	           StatusNetUnreach, StatusAddrNotAvail).
//	OpSendTo   Arg[1] the stream offset of the first byte (how many bytes
//	           the requester handed over on this connection before; no
//	           address) with FlagOffset, Ref the bytes. The reply comes when the transport
//	           took them into its send buffer: Arg[2] how many (possibly
//	           fewer than Ref.Len: send the rest again). Bytes below the
//	           offset the transport has taken already are acknowledged,
//	           not queued again: a reissued send never duplicates.
//	OpRecvFrom Arg[1] the stream offset the requester has received up to
//	           (every byte below it is in its hands), with FlagOffset. The transport keeps
//	           the bytes it handed out until a request proves them received
//	           this way, and when a new SYSCALL generation comes it hands
//	           them out again from the last offset proven: a reply lost
//	           with a dead SYSCALL loses no byte. An OpClose proves every
//	           byte handed out.
//	           Ref an empty buffer. The reply comes when bytes are there
//	           (Ref.Len of them, with FlagOffset and Arg[1] the stream
//	           offset of the first), or at the end of the stream: Ref.Len 0
//	           and FlagEOF. A requester with several receives posted drops
//	           what a reply brings below what it has: after a restart of
//	           the transport, a receive posted before an earlier one was
//	           answered may bring that one's bytes again (what the
//	           transport had handed out was only in its process). With FlagNoWait on the request the reply comes at
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
//	           received data is left unread or OptLinger is 0 (RST, as
//	           Linux does). With a positive OptLinger the reply waits
//	           until the peer has acknowledged every byte and the FIN, or
//	           that many seconds have passed (StatusOK either way; the
//	           close goes on in the background).
//	OpSetOption Arg[0] a connection, Arg[1] an Option, Arg[2] its value.
//	           Answered at once: StatusOK, or StatusInvalid (an unknown
//	           option, a value out of its range, a socket that is not a
//	           connection), or StatusReset (a connection the transport no
//	           longer has). The options are Go's net.TCPConn's and live
//	           with the connection, so they outlast a restart of the
//	           transport (servers/tcp keeps them) or of SYSCALL; setting
//	           one again to its value changes nothing, so a reissue
//	           answers as the first did.
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
	OpAdopt
	OpCloseRange
	OpSetOption
	OpDeliverError
	OpSource
)

var opNames = map[Op]string{
	OpDeliver: "OpDeliver", OpOutput: "OpOutput", OpAddr: "OpAddr",
	OpOpen: "OpOpen", OpBind: "OpBind", OpConnect: "OpConnect",
	OpSendTo: "OpSendTo", OpRecvFrom: "OpRecvFrom", OpClose: "OpClose",
	OpReset: "OpReset", OpListen: "OpListen", OpAccept: "OpAccept",
	OpShutdown: "OpShutdown", OpAdopt: "OpAdopt", OpCloseRange: "OpCloseRange",
	OpSetOption:    "OpSetOption",
	OpDeliverError: "OpDeliverError",
	OpSource:       "OpSource",
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
		OpListen, OpAccept, OpShutdown, OpAdopt, OpCloseRange, OpSetOption:
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
	// StatusAFNoSupport: an address of a family the path does not carry
	// (an IPv6 address where IPv4 is needed, the other family than a
	// socket's bound address).
	StatusAFNoSupport Status = 12
	// StatusNoBuffers: a bound was reached (a transport's connections or
	// buffer memory, SYSCALL's pending operations); try again later.
	StatusNoBuffers Status = 13
	// StatusTooManySockets: the application has as many sockets as
	// SYSCALL allows it.
	StatusTooManySockets Status = 14
	// StatusNetUnreach: no route to the network of the destination
	// (OpSource; ENETUNREACH).
	StatusNetUnreach Status = 15
	// StatusAddrNotAvail: no local address to send from (OpSource;
	// EADDRNOTAVAIL).
	StatusAddrNotAvail Status = 16
	// StatusNoPool: a request's buffer is in an application's pool the
	// transport has not been granted (yet: the grant of a new application
	// generation travels apart from syscall's channel). SYSCALL, which
	// forwarded the reference, sends the request again with a copy in
	// its own pool; an application never sees it.
	StatusNoPool Status = 17
)

var statusNames = map[Status][2]string{
	StatusOK:             {"StatusOK", "ok"},
	StatusNoPort:         {"StatusNoPort", "port unreachable"},
	StatusNoRoute:        {"StatusNoRoute", "no route to host"},
	StatusInUse:          {"StatusInUse", "address already in use"},
	StatusNoSocket:       {"StatusNoSocket", "no such socket"},
	StatusClosed:         {"StatusClosed", "socket closed"},
	StatusInvalid:        {"StatusInvalid", "invalid argument"},
	StatusTooBig:         {"StatusTooBig", "message too long"},
	StatusError:          {"StatusError", "error"},
	StatusRefused:        {"StatusRefused", "connection refused"},
	StatusReset:          {"StatusReset", "connection reset by peer"},
	StatusTimedOut:       {"StatusTimedOut", "connection timed out"},
	StatusAFNoSupport:    {"StatusAFNoSupport", "address family not supported by protocol"},
	StatusNoBuffers:      {"StatusNoBuffers", "no buffer space available"},
	StatusTooManySockets: {"StatusTooManySockets", "too many open files"},
	StatusNetUnreach:     {"StatusNetUnreach", "network is unreachable"},
	StatusAddrNotAvail:   {"StatusAddrNotAvail", "cannot assign requested address"},
	StatusNoPool:         {"StatusNoPool", "buffer in a pool not granted"},
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

// Flags (Msg.Flags) of the socket operations (OpDeliver uses the field for
// its transport header offset).
const (
	FlagTruncated uint16 = 1 << 0 // OpRecvFrom: the datagram was longer than the buffer
	FlagEOF       uint16 = 1 << 1 // OpRecvFrom on a stream: the peer closed its side
	// FlagNoWait, on an OpRecvFrom request on a stream socket: answer at
	// once, with Ref.Len 0 and no FlagEOF if nothing is queued.
	FlagNoWait uint16 = 1 << 2
	// FlagOffset, on an OpSendTo or OpRecvFrom request on a stream
	// socket: Arg[1] is its stream offset (above). Without it a send is
	// taken whole and a receive's bytes are consumed as they are handed
	// out (a lost reply loses them).
	FlagOffset uint16 = 1 << 3
)

// Offloads IP offers in OpAddr's Arg[3] and a transport asks for in
// OpOutput's Arg[3]. OffloadChecksum: the segment's checksum field is left
// for the device (its value is ignored). OffloadTSO, with the MSS in bits
// 16-31 of the request: the TCP segment may carry more than one MSS of
// payload (up to drivers/link.MaxTSO), for the device to cut into segments
// of MSS bytes; it implies OffloadChecksum.
const (
	OffloadChecksum uint64 = 1 << 0
	OffloadTSO      uint64 = 1 << 1
)

// TSOArg is OpOutput's Arg[3] for a segment the device is to cut at mss.
func TSOArg(mss int) uint64 { return OffloadChecksum | OffloadTSO | uint64(mss&0xFFFF)<<16 }

// TSOMSS is the MSS of a TSOArg, 0 if it asks for no segmentation.
func TSOMSS(arg uint64) int {
	if arg&OffloadTSO == 0 {
		return 0
	}
	return int(arg >> 16 & 0xFFFF)
}

// Option is a socket option of OpSetOption (Arg[1]); its value is Arg[2].
type Option uint64

// Options, numbered here and nowhere else, with their values' meaning and
// range (the transport answers a value outside it StatusInvalid).
const (
	OptNoDelay           Option = 1 + iota // 1: Nagle's algorithm off (TCP_NODELAY), 0: on
	OptKeepAlive                           // 1: keep-alive probes on, 0: off
	OptKeepAliveIdle                       // nanoseconds idle before the first probe, > 0 (TCP_KEEPIDLE)
	OptKeepAliveInterval                   // nanoseconds between probes, > 0 (TCP_KEEPINTVL)
	OptKeepAliveCount                      // unanswered probes that end the connection, > 0 (TCP_KEEPCNT)
	OptLinger                              // seconds as an int64: < 0 graceful (the default), 0 abortive close, > 0 a close waits (SO_LINGER)
	OptSendBuffer                          // bytes, > 0 (SO_SNDBUF)
	OptRecvBuffer                          // bytes, > 0 (SO_RCVBUF)
)

var optionNames = map[Option]string{
	OptNoDelay: "OptNoDelay", OptKeepAlive: "OptKeepAlive", OptKeepAliveIdle: "OptKeepAliveIdle",
	OptKeepAliveInterval: "OptKeepAliveInterval", OptKeepAliveCount: "OptKeepAliveCount",
	OptLinger: "OptLinger", OptSendBuffer: "OptSendBuffer", OptRecvBuffer: "OptRecvBuffer",
}

func (o Option) String() string {
	if n, ok := optionNames[o]; ok {
		return n
	}
	return fmt.Sprintf("Option(%d)", uint64(o))
}

// SetOptionMsg is an OpSetOption request setting o to v on socket sock.
func SetOptionMsg(sock uint64, o Option, v uint64) channel.Msg {
	return OpSetOption.Msg(sock, uint64(o), v)
}

// Network is what OpOpen creates.
type Network uint64

const (
	UDP Network = 17
	TCP Network = 6
)

// Addr is an IP address, IPv4 or IPv6, and a port, as the servers pass
// them around and messages carry them (PutAddr, GetAddr). The zero Addr is
// 0.0.0.0:0, the IPv4 "any" address with no port, as in the protocol.
type Addr struct {
	ip   [16]byte // IPv4 in the first 4 bytes unless v6
	port uint16
	v6   bool
}

// MakeAddr is ip and port as an Addr. An IPv4-mapped IPv6 address is IPv4;
// an IPv6 address stays IPv6 (its zone is dropped); an invalid (zero)
// netip.Addr is 0.0.0.0, the IPv4 "any" address.
func MakeAddr(ip netip.Addr, port uint16) Addr {
	a := Addr{port: port}
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		b := ip.As4()
		copy(a.ip[:], b[:])
	case ip.Is6():
		a.ip, a.v6 = ip.As16(), true
	}
	return a
}

// FromAddrPort is ap as an Addr (see MakeAddr).
func FromAddrPort(ap netip.AddrPort) Addr { return MakeAddr(ap.Addr(), ap.Port()) }

// IsZero reports whether a is the zero Addr, 0.0.0.0:0.
func (a Addr) IsZero() bool { return a == Addr{} }

// Is4 reports whether a is an IPv4 address: the only family the stack
// carries today.
func (a Addr) Is4() bool { return !a.v6 }

// IP is the address part.
func (a Addr) IP() netip.Addr {
	if a.v6 {
		return netip.AddrFrom16(a.ip)
	}
	return netip.AddrFrom4([4]byte(a.ip[:4]))
}

// Port is the port part.
func (a Addr) Port() uint16 { return a.port }

// AddrPort is a as a netip.AddrPort.
func (a Addr) AddrPort() netip.AddrPort { return netip.AddrPortFrom(a.IP(), a.Port()) }

func (a Addr) String() string { return a.AddrPort().String() }
