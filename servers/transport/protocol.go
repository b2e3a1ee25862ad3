package transport

import (
	"net/netip"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
)

// Protocol is a transport's protocol core, as the framework drives it. All
// calls come from the framework's one goroutine.
type Protocol interface {
	Sockets
	// SetAddr tells the core our address and what IP's device can do for
	// the segments it sends, whenever IP answers OpAddr.
	SetAddr(p netip.Prefix, o Offloads)
	// Deliver takes a segment IP received for the protocol, from src to
	// dst (the transport header and payload; IP checked its own header).
	// It returns ops.StatusOK, or ops.StatusNoPort to have IP answer with
	// ICMP port unreachable. seg is a private copy of IP's buffer (no
	// other process writes it while the core parses), valid only during
	// the call.
	Deliver(seg []byte, src, dst netip.Addr) ops.Status
	// DropRequests forgets, without replying, every request the core
	// keeps: the SYSCALL generation that sent them is gone. It returns
	// how many there were.
	DropRequests() int
	// Hold and Flush bracket each batch of messages from one channel, so
	// that a core may answer a batch with one segment per connection.
	Hold()
	Flush()
	// Poll runs after each batch: timers that are due, requests that may
	// have been unblocked. busy says it left work for another poll at
	// once; wake is when it must run again at the latest (zero: no timer).
	Poll() (busy bool, wake time.Time)
	// Stats is what the process publishes: the core's own counters with
	// the framework's (common) embedded, so that they read as one record.
	Stats(common Stats) any
}

// ErrorReceiver is a core that takes the ICMP errors about the datagrams
// it sent (servers/ops OpDeliverError): e is valid only during the call
// (its Quote is a private copy of IP's buffer). A core without it has
// them dropped.
type ErrorReceiver interface {
	DeliverError(e ops.ICMPError)
}

// SourceReceiver is a core that asks IP which source address it would
// send to a destination from (Host.AskSource, servers/ops OpSource):
// Source gets IP's answer to the question asked with key — src and
// ops.StatusOK, or the status saying why there is none. Questions IP
// has not answered when it restarts are asked again of its next
// generation, as its OpOutputs are resent; an answer may come after the
// core stopped waiting for it, and is then ignored by the core's key
// ([SourceQuestions] keeps the questions by key and gives up on them).
type SourceReceiver interface {
	Source(key uint64, src netip.Addr, st ops.Status)
}

// ECNReceiver is a core that wants the ECN codepoint (RFC 3168 §5,
// servers/ops ECNCE...) of the datagrams IP delivers: the framework calls
// DeliverECN in place of Deliver.
type ECNReceiver interface {
	DeliverECN(seg []byte, src, dst netip.Addr, ecn uint8) ops.Status
}

// VerifiedReceiver is a core that can take a segment whose TCP or UDP
// checksum the device verified (servers/ops DeliveredVerified) without
// computing it again: the framework calls DeliverVerified for those, in
// place of Deliver or DeliverECN.
type VerifiedReceiver interface {
	DeliverVerified(seg []byte, src, dst netip.Addr, ecn uint8) ops.Status
}

// SharedReceiver is a core that takes a segment in the buffer IP handed
// over (shared memory, which a faulty IP could still write) and copies
// out of it itself: first what it decides on, its header, once, then its
// payload straight to where it is kept. The framework calls DeliverShared
// in place of the others, without its private copy of the whole segment.
// verified: the device found its checksum right.
type SharedReceiver interface {
	DeliverShared(shared []byte, src, dst netip.Addr, ecn uint8, verified bool) ops.Status
}

// PoolDropper is a core that may hold references into granted pools (an
// application's buffers, which SYSCALL forwards by reference): before
// such a pool is unmapped — its owner restarted, and the grant of its new
// generation came — DropPool answers StatusClosed every request whose
// buffer is in pool id, and returns how many. (The application that
// posted them is gone; SYSCALL closes its sockets.)
type PoolDropper interface {
	DropPool(id uint32) int
}

// Hooked is a core with test hooks of its own (kernel/wiring), run in the
// loop like the built-in ones.
type Hooked interface {
	Hooks() []wiring.Hook
}

// Sockets are the socket operations of servers/ops, one method each. Each
// gets SYSCALL's request as it came and answers it exactly once through
// Host.Reply — at once, or when what it waits for happens — unless
// DropRequests drops it.
type Sockets interface {
	Open(m channel.Msg)
	Bind(m channel.Msg)
	Connect(m channel.Msg)
	SendTo(m channel.Msg)
	RecvFrom(m channel.Msg)
	Close(m channel.Msg)
	Reset(m channel.Msg)
	// Adopt answers StatusOK if socket Arg[0] exists, StatusNoSocket if
	// not (a new SYSCALL generation taking it over).
	Adopt(m channel.Msg)
	// CloseRange closes every socket with an id in [Arg[0], Arg[1]).
	CloseRange(m channel.Msg)
}

// StreamSockets are the operations only a stream protocol has. A core
// without them answers OpListen, OpAccept, OpShutdown and OpSetOption
// StatusInvalid.
type StreamSockets interface {
	Listen(m channel.Msg)
	Accept(m channel.Msg)
	Shutdown(m channel.Msg)
	SetOption(m channel.Msg)
}

// Host is what the framework offers its core.
type Host interface {
	Output
	// Reply queues the answer to a SYSCALL request for the channel.
	Reply(m channel.Msg)
	// ReplyStored queues an answer that must not leave before what the
	// core saved in its journal is in the store: the answer to a request
	// that made or removed a record (a bind, a listen, a close). Answered
	// at once, a crash of the process right after would lose what the
	// application was told it has (the restart protocol in the package
	// doc). The answer waits for every change queued so far, a store
	// round trip.
	ReplyStored(m channel.Msg)
	// SyscallBytes is the buffer of SYSCALL's current generation that ref
	// names; false (counted as a bad request) if it names none.
	SyscallBytes(ref pool.Ref) ([]byte, bool)
	// Invalid answers m StatusInvalid and counts it as a bad request.
	Invalid(m channel.Msg)
	// AskSource asks IP which source address it would send to dst from;
	// the answer goes to the core's SourceReceiver.Source with key. false:
	// the question could not be queued (too many requests to IP
	// outstanding); ask again later.
	AskSource(dst netip.Addr, key uint64) bool
	// Kept is the memory init keeps for the process across its restarts
	// under name (boot/hub's kept memory), or nil if there is none.
	Kept(name string) []byte
}

// Output is the way down to IP, the same for every protocol core.
type Output interface {
	// Buffer lends room for the next segment: n bytes of a buffer of the
	// transport's pool, for a core that builds its segment in place; nil
	// when none is free or n is larger than a buffer.
	Buffer(n int) []byte
	// Send hands IP seg, a whole segment (header and payload) from src to
	// dst, its checksum filled in for them unless o leaves it to the
	// device. A seg built in the last Buffer goes as it is; any other is
	// copied, so the caller may reuse its memory at once, and waits in
	// order while every buffer is with IP. IP sends from src, which must
	// be one of its interfaces' addresses (OpOutput's source); an invalid
	// src with o.Checksum leaves the source to IP, which takes the address
	// of the interface the route picks and checksums over it. An error
	// means the segment is dropped.
	Send(seg []byte, src, dst netip.Addr, o Offload) error
}

// Offloads are what IP's device does for the segments a transport sends
// (servers/ops: OpAddr's Arg[2]).
type Offloads struct {
	Checksum bool // it fills in the checksum
	TSO      bool // it cuts a TCP segment of several MSS into segments
}

// Offload is what one segment asks of the device: the checksum, and with
// MSS > 0 cutting its payload into segments of MSS bytes. Only what
// SetAddr's Offloads said may be asked. ECN is the codepoint IP is to set
// in its IP header (servers/ops ECNECT0; zero: Not-ECT), which every IP
// does.
type Offload struct {
	Checksum bool
	MSS      int
	ECN      uint8
}
