// Package tcp is keepnet's TCP protocol logic: the RFC 9293 state machine
// with its modern extensions, free of any operating-system dependency so
// that tests drive it packet by packet on a fake clock.
//
// A [Table] holds every connection ([Endpoint]) and listener ([Listener])
// of the TCP server. Three things drive it, all from the server's single
// loop:
//
//   - segments from IP: [Table.Input] validates them once (header, checksum,
//     options) and demultiplexes them to a connection, a listener, or an RST
//     (RFC 9293 §3.10.7.1);
//   - user calls from the socket layer: [Table.Listen], [Listener.Accept],
//     [Table.Connect] (or [Table.ConnectFrom] a bound port),
//     [Endpoint.Read], [Endpoint.Write],
//     [Endpoint.CloseWrite], [Endpoint.Close], [Endpoint.Abort];
//   - time: the Table reads the injected [Clock] for timestamps and
//     reports when it next needs to run ([Table.NextTimeout]); the loop
//     calls [Table.Tick] then. There are no goroutines and no sleeps.
//     Neither looks at idle connections: timers are in a heap
//     (timer.go), TIME-WAITs are small records in a FIFO (timewait.go).
//
// Segments leave through the injected Output (servers/transport), whole
// and checksummed.
//
// Given memory that outlives the process ([Table.Keep]), the Table keeps
// every connection there — its state and its buffers — and [Table.Commit]
// seals what changed at the end of each loop pass, so that a restarted
// server adopts the connections of the one that crashed (keep.go).
//
// What is implemented, by RFC:
//
//   - RFC 9293: all eleven states, simultaneous open and close, TIME-WAIT
//     for 2*MSL ([MSL] = 30 s), the segment acceptability test, RST
//     generation for segments to nothing, half-close;
//   - RFC 5961: challenge ACKs for in-window RSTs that are not exact and for
//     SYNs in synchronized states, ACK range check, rate-limited;
//   - RFC 6528: ISNs from a keyed hash (HMAC-SHA256, key injected) of the
//     4-tuple plus a 4 µs clock;
//   - RFC 9293 §3.7.1 MSS option; RFC 7323 window scaling, timestamps, PAWS
//     (a duplicate ACK the network reordered passes, as in Linux) and RTT
//     measurement from timestamps (Karn's algorithm without them);
//   - RFC 6298 RTO: 1 s initial, 200 ms minimum (as Linux), 60 s maximum,
//     exponential back-off; 6 SYN retries and 15 data retries before
//     ErrTimedOut;
//   - loss recovery (recovery.go): with SACK, RFC 6675 — a bounded
//     scoreboard of the peer's SACK blocks, IsLost, pipe and NextSeg, only
//     holes retransmitted, during fast recovery and hole by hole after a
//     timeout (§5.1, scoreboard kept, reneging detected) — with lost
//     retransmissions found by SACK; without SACK, RFC 6582 NewReno;
//     needless reductions undone by timestamps (RFC 3522 Eifel) or D-SACK
//     (RFC 3708);
//   - RFC 5681 congestion control, one reduction per loss episode; the
//     growth and reduction rules are a [Congestion] interface, with
//     [NewReno] and [CUBIC] (RFC 9438, the default);
//   - RFC 1122/5681 delayed ACKs (every second full segment, 40 ms timer),
//     Nagle with NoDelay, zero-window probes (persist timer), keepalive
//     (off by default); per connection, the socket options of Go's
//     net.TCPConn: SetNoDelay, SetKeepAlive (idle, interval, count),
//     SetLinger, SetSendBuffer and SetRecvBuffer;
//   - RFC 6928's initial window of ten segments (Config.InitialWindow);
//   - RFC 3168 ECN (ecn.go), as Linux's default: agreed to when a peer's
//     SYN asks (Config.NoECN refuses), never asked for; CE marks echoed
//     with ECE until CWR; one window reduction per window on ECE;
//   - RFC 2018 SACK blocks in our ACKs describing the bounded out-of-order
//     queue (contiguous data held as one range), and RFC 2883 D-SACK for
//     duplicates;
//   - ICMP errors (icmp.go): RFC 5927's window check on the quoted
//     sequence number; RFC 1191 path MTU discovery (the segment size
//     lowered, the flight resent at it); RFC 1122/5461 hard errors
//     refusing a connection attempt, soft errors reported on a timeout;
//   - SYN-flood resistance: a bounded SYN queue per listener and, when it
//     is full, SYN cookies (RFC 4987 §3.6, syncookie.go) that keep no
//     state; buffers are allocated lazily.
//
// The Table is not safe for concurrent use; it belongs to the server loop.
package tcp

import (
	"errors"
	"time"
)

// Clock gives the current time. The server passes the real clock, tests a
// fake one they advance by hand.
type Clock interface{ Now() time.Time }

// Segments leave through servers/transport's Output, the one every
// transport core uses: each is a whole TCP segment with its checksum filled
// in for src and dst, unless Table.SetOffload turned an offload on; then
// its checksum field is left to the device, and with segmentation on a
// segment may carry up to MaxOffloadData bytes, with Offload.MSS the MSS
// the device must cut it at (0 when it carries no more than one MSS). The
// Table reuses a segment's memory once Send returns (Send copies it).

// MaxOffloadData is the most data one segment handed to segmentation
// offload carries: with 60 bytes of TCP header it stays inside an IPv4
// datagram, and with the link headers inside a 64 KiB buffer.
const MaxOffloadData = 64<<10 - 256

// Errors. The set is closed; the socket layer maps them to errno values.
var (
	ErrReset        = errors.New("connection reset by peer")       // ECONNRESET
	ErrRefused      = errors.New("connection refused")             // ECONNREFUSED
	ErrTimedOut     = errors.New("connection timed out")           // ETIMEDOUT
	ErrUnreachable  = errors.New("no route to host")               // EHOSTUNREACH: timed out after an ICMP unreachable (icmp.go)
	ErrClosed       = errors.New("use of closed connection")       // EPIPE on write after close
	ErrWouldBlock   = errors.New("operation would block")          // EAGAIN: retry when Readable/Writable
	ErrNotConnected = errors.New("not connected")                  // ENOTCONN
	ErrInUse        = errors.New("address in use")                 // EADDRINUSE
	ErrNoPorts      = errors.New("no ephemeral port free")         // EADDRNOTAVAIL
	ErrInvalid      = errors.New("invalid argument")               // EINVAL
	ErrAborted      = errors.New("connection aborted by the user") // the endpoint was Aborted
	ErrTooManyConns = errors.New("too many connections")           // ENOBUFS: Config.MaxConns reached
	ErrNoBuffers    = errors.New("no buffer space")                // ENOBUFS: Config.BufferBudget exhausted
)

// The initial window (Config.InitialWindow), in segments: RFC 6928's ten
// by default (Linux's), and at most what a 64 KiB window holds of a
// 1000-byte MSS.
const (
	DefaultInitialWindow = 10
	MaxInitialWindow     = 64
)

// MSL is the maximum segment lifetime; TIME-WAIT lasts 2*MSL.
const MSL = 30 * time.Second

// Timer and retry constants.
const (
	InitialRTO    = time.Second            // RFC 6298 §2.1
	MinRTO        = 200 * time.Millisecond // Linux's TCP_RTO_MIN; RFC 6298 says 1 s
	MaxRTO        = 60 * time.Second       // RFC 6298 §2.5
	DelayedACK    = 40 * time.Millisecond
	FinWait2Time  = 60 * time.Second // Linux tcp_fin_timeout, for connections the user closed
	maxSynRetries = 6                // Linux tcp_syn_retries
	maxRetries    = 15               // Linux tcp_retries2
	maxPersist    = 60 * time.Second
)

// Ephemeral ports (RFC 6335 §6: the dynamic range).
const (
	EphemeralFirst = 49152
	EphemeralLast  = 65535
)

// State is a connection state of RFC 9293 §3.3.2.
type State int

const (
	Closed State = iota
	Listen
	SynSent
	SynReceived
	Established
	FinWait1
	FinWait2
	CloseWait
	Closing
	LastAck
	TimeWait
)

var stateNames = [...]string{"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED",
	"FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(?)"
}

// Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4; RFC 1982): a is
// before b when b-a, as a signed 32-bit number, is positive.
func seqLT(a, b uint32) bool  { return int32(a-b) < 0 }
func seqLEQ(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGT(a, b uint32) bool  { return int32(a-b) > 0 }
func seqGEQ(a, b uint32) bool { return int32(a-b) >= 0 }

// seqInWindow reports whether start <= x < start+size.
func seqInWindow(x, start, size uint32) bool { return x-start < size }
