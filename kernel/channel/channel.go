// Package channel connects two keepnet components with asynchronous,
// fixed-size messages in shared memory (DESIGN.md, "Channels").
//
// A channel is one memfd region holding two single-producer single-consumer
// rings, one per direction, of 64-byte Msgs, and one eventfd per direction
// for wake-ups. The supervisor creates it (New) and passes the three
// descriptors to the two components, which each Open their Side. A Msg names
// a packet by pool.Ref; the bytes stay in the pool.
//
// # Memory ordering
//
// Each ring index has exactly one writer: the producer writes the producer
// index, the consumer the consumer index. The producer fills slots with plain
// stores and then publishes them all with one store of the producer index;
// the consumer loads that index, reads the slots below it, and hands them
// back with one store of the consumer index. Go's sync/atomic operations are
// sequentially consistent (the Go memory model), hence at least
// release/acquire: whoever observes the new index also observes the slot
// contents written before it, and a producer never overwrites a slot before
// the consumer's index store says it has been read. (On amd64 the store is
// an XCHG and the load a plain MOV.) Indices run freely and wrap; the
// capacity is a power of two, so index & (capacity-1) is the slot.
//
// # Wake-ups
//
// No system call on the fast path: a receiver that finds its ring empty
// spins briefly, then sets its ring's "sleeping" word, loads the producer
// index once more, and only if the ring is still empty blocks in ppoll(2) on
// its eventfd. A sender stores its producer index and then loads the
// sleeping word; only if it is set does it take it (swap to 0) and write the
// eventfd — so one wake-up per sleep, whatever the number of batches. Both
// sides store and then load the other's word, under sequential consistency,
// so at least one of them sees the other's store: either the receiver sees
// the message and does not sleep, or the sender sees the flag and wakes it.
// A wake-up may be spurious (the receiver found the message on its re-check
// while the sender was taking the flag); Wait absorbs those.
//
// A receiver may sleep patiently (SetPatient): the word then says so, and a
// message sent lazily (SendLazy: a reply that only gives back a buffer)
// does not wake it; an ordinary one does, and the lazy ones before it are
// read with it. A receiver that runs short of buffers sleeps impatiently,
// and its Arm's re-check finds any lazy message already waiting.
//
// # Back-pressure
//
// Send takes as many messages as fit and returns that count; the sender
// keeps the rest. Under the request/reply discipline a full request ring
// means replies are due on the other ring, so the sender Waits for replies
// and retries: it never needs to sleep on a full ring.
//
// # Restart
//
// Every request gets exactly one reply, carrying the request's ID. A sender
// keeps its requests in an Outstanding table. When its peer restarts, the
// supervisor hands both sides a fresh channel and announces the peer's new
// generation; the sender then sends Outstanding.Resubmit, which re-issues
// every unanswered request under a fresh, larger ID. IDs only grow, so a late
// reply to an old ID is recognised as stale and dropped by Complete. The old
// region is unmapped; nothing in it is trusted after the restart.
//
// # Trust
//
// The peer is a separate process that may crash at any instruction or be
// buggy. Its index stores are atomic, so a crash cannot leave a torn index;
// an index that claims more messages (or more room) than the ring holds
// breaks the Endpoint with ErrCorrupt instead of being followed. Msg fields
// are plain data: their meaning (IDs, Refs) is checked by whoever uses them,
// and a user that finds the peer broke the protocol (a reply to a request
// never made) breaks the Endpoint itself (Break, ErrProtocol).
//
// A broken Endpoint stays broken: Send and Recv do nothing, Wait, Arm and
// WaitAny return its error (which wraps ErrBroken) instead of reporting a
// message, so a loop that sleeps on it ends instead of spinning. The
// component then exits (kernel/exitcode.BrokenChannel) and its restart
// gives both sides fresh channels; its neighbours resubmit as after any
// crash.
package channel

import (
	"errors"
	"fmt"
	"os"
	"time"

	"keepnet/kernel/pool"
)

// Msg is the fixed 64-byte unit of a channel (its size is checked at compile
// time).
type Msg struct {
	ID     uint64    // request id; the reply carries the same id; ids only grow
	Op     uint16    // operation, defined by the servers
	Flags  uint16    // op-specific
	Status int32     // in replies: 0 ok, else an error code
	Ref    pool.Ref  // the packet, if any: (pool, offset, length); 12 bytes
	Aux    [2]uint16 // op-specific small arguments (servers/ops: ports)
	Arg    [4]uint64
}

// MsgSize is the size of a Msg and of a ring slot.
const MsgSize = 64

// Side names one end of a channel. Side A sends on ring 0 and receives on
// ring 1; side B the reverse.
type Side uint8

const (
	A Side = 0
	B Side = 1
)

func (s Side) String() string {
	if s == A {
		return "A"
	}
	return "B"
}

// Port is one end of a channel as a component sees it: what servers take so
// that tests can hand them a fake.
type Port interface {
	// Send enqueues as many of msgs as fit and returns how many it took.
	Send(msgs ...Msg) int
	// Recv moves up to len(buf) received messages into buf, without
	// blocking, and returns how many.
	Recv(buf []Msg) int
	// Wait blocks until a message can be received or timeout passes
	// (os.ErrDeadlineExceeded); a negative timeout waits forever.
	Wait(timeout time.Duration) error
	Close() error
}

var _ Port = (*Endpoint)(nil)

// Errors.
var (
	// ErrBadRegion: Open was handed descriptors that are not a keepnet
	// channel of this version.
	ErrBadRegion = errors.New("channel: not a keepnet channel region")
	// ErrBroken: the channel cannot be used any more; every error that
	// breaks an Endpoint wraps it.
	ErrBroken = errors.New("channel broken")
	// ErrCorrupt: the peer published an impossible ring index.
	ErrCorrupt = fmt.Errorf("%w: peer corrupted a ring index", ErrBroken)
	// ErrProtocol: the peer sent what the protocol over the channel does
	// not allow (Break).
	ErrProtocol = fmt.Errorf("%w: peer broke the protocol", ErrBroken)
	// ErrClosed: the Endpoint was closed.
	ErrClosed = os.ErrClosed
)

// Flush sends as much of the queue q as p takes and returns what is left,
// moved to the front of q's array, and how many it sent. A sender whose
// channel was full queues its messages and flushes them every round; the
// queue keeps its array from batch to batch instead of sliding off its end
// and growing a new one.
func Flush(p Port, q []Msg) (rest []Msg, sent int) {
	if len(q) == 0 {
		return q, 0
	}
	sent = p.Send(q...)
	return q[:copy(q, q[sent:])], sent
}

// FlushLazyIf is Flush, sending lazily (Endpoint.SendLazy: the peer need
// not wake) if lazy reports every message of q so: replies that only give
// back the peer's buffers, which it asks for by sleeping impatiently when
// it runs short. A Port without lazy sends sends them as Flush does.
func FlushLazyIf(p Port, q []Msg, lazy func(Msg) bool) (rest []Msg, sent int) {
	l, ok := p.(interface{ SendLazy(...Msg) int })
	if !ok || len(q) == 0 {
		return Flush(p, q)
	}
	for _, m := range q {
		if !lazy(m) {
			return Flush(p, q)
		}
	}
	sent = l.SendLazy(q...)
	return q[:copy(q, q[sent:])], sent
}
