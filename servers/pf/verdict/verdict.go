// Package verdict is the protocol between the IP server and the packet
// filter (servers/pf), over a kernel/channel channel. ip asks; pf answers
// each question exactly once, with the question's id.
//
//	OpAsk  ip -> pf. Ref is a whole frame in one of ip's pools (a received
//	       frame in ip.rx, one to send in ip.tx or ip.tx.big), which pf
//	       maps read-only; Aux[0] is the interface's index in pf's list
//	       (cmd/pf -ifaces), Aux[1] where the IP header starts in the
//	       frame, Arg[0] the direction (In, Out). Arg[1] is ip's own (the
//	       driver's offload request for a frame to send): pf leaves it
//	       alone. The reply's Status is StatusPass or StatusBlock; its
//	       Arg[2] is the pf.Reason and Arg[3] the deciding rule plus one
//	       (0: none), for ip's counters and logs.
//
// Batching: ip queues its questions and sends all it has in one go, one
// wake-up for the batch (kernel/channel); pf drains every question on
// its channel per wake-up, decides them in order, and answers them in one
// send. A message is one datagram, so a batch is as large as the traffic
// of one pass of ip's loop, and the channel is never a per-packet system
// call.
//
// Ownership: the frame stays ip's. pf reads it (once: pf.Filter.Verdict
// copies nothing and parses each field once) and answers; ip neither
// writes nor reuses the buffer until the answer comes, and acts on the
// same bytes pf judged.
//
// Recovery: ip keeps every question in its outstanding table
// (channel.Outstanding). After a pf restart it resubmits them, with new
// ids, to the new generation; late answers of the old one are ignored.
// While no pf is there, the questions — and their frames — wait, up to
// ip's bound; beyond it a frame is dropped and counted, never passed
// unfiltered. After an ip restart pf simply answers the new generation;
// the old one's questions died with their buffers.
package verdict

import (
	"fmt"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

// Op is an operation of this protocol (channel.Msg.Op).
type Op uint16

// Operations, numbered here and nowhere else.
const (
	OpAsk Op = 1
)

func (o Op) String() string {
	if o == OpAsk {
		return "OpAsk"
	}
	return fmt.Sprintf("Op(%d)", uint16(o))
}

// OpOf is m's operation.
func OpOf(m channel.Msg) Op { return Op(m.Op) }

// Dir is the way a datagram crosses an interface (the values are
// pf.In and pf.Out).
type Dir uint64

const (
	In  Dir = 1
	Out Dir = 2
)

func (d Dir) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return fmt.Sprintf("Dir(%d)", uint64(d))
}

// Status is an answer's status (channel.Msg.Status).
type Status int32

// Answer statuses, numbered here and nowhere else.
const (
	StatusPass   Status = 0
	StatusBlock  Status = 1
	StatusBadRef Status = 2 // the ref is not in a pool of ip's that pf maps: blocked
	StatusBadOp  Status = 3 // not a question pf knows: blocked
)

var statusNames = [...]string{"StatusPass", "StatusBlock", "StatusBadRef", "StatusBadOp"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int32(s))
}

// StatusOf is m's status.
func StatusOf(m channel.Msg) Status { return Status(m.Status) }

// Ask is the question whether frame, whose IPv4 or IPv6 header starts at ipOff,
// may cross interface iface going dir; ipArg is ip's, returned untouched.
func Ask(frame pool.Ref, iface, ipOff uint16, dir Dir, ipArg uint64) channel.Msg {
	return channel.Msg{Op: uint16(OpAsk), Ref: frame, Aux: [2]uint16{iface, ipOff}, Arg: [4]uint64{uint64(dir), ipArg}}
}

// DirOf is a question's direction.
func DirOf(m channel.Msg) Dir { return Dir(m.Arg[0]) }

// Answer turns question q into its answer with status st, the pf.Reason
// reason and the deciding rule (-1: none).
func Answer(q channel.Msg, st Status, reason uint8, rule int) channel.Msg {
	q.Status = int32(st)
	q.Arg[2], q.Arg[3] = uint64(reason), uint64(rule+1)
	return q
}
