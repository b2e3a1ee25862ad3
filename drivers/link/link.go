// Package link is the protocol between the IP server and a NIC driver, over
// a kernel/channel channel. IP sends requests; the driver answers each exactly
// once, with the request's id.
//
//	OpRx    IP -> driver. Ref is an empty buffer of IP's receive pool. The
//	        driver posts it to the device; the reply comes when a frame has
//	        arrived in it: Ref.Len is the frame's length, Arg[0] the
//	        checksums the device verified (RxChecked*; 0: none, IP and the
//	        transports check them). A frame the device found bad is
//	        answered StatusError. A buffer the
//	        driver gives back unused (a reset, a shutdown) is answered with
//	        StatusUnused.
//	OpTx    IP -> driver. Ref is a whole Ethernet frame (without FCS). The
//	        reply comes once the device has read it out of memory (its
//	        descriptor is done): only then may IP free or reuse the buffer.
//	        Arg[0], if not zero, is an Offload (Offload.Arg) the driver
//	        announced it can do: checksum insertion, or TCP segmentation of
//	        a frame of up to 64 KiB of payload into MSS-sized segments.
//	OpInfo  IP -> driver. The reply carries the MAC address in Arg[0] (the
//	        low 48 bits, first byte in bits 40-47), link state in Arg[1]
//	        (1: up) and the offloads the driver does in Arg[2] (Feature*).
//	OpMulticast  IP -> driver. Arg[0] is a multicast MAC address (as
//	        OpInfo's), Arg[1] 1 to receive frames sent to it, 0 to stop.
//	        Answered StatusOK, or StatusError by a device with no
//	        multicast filter. A new driver starts with none: IP joins its
//	        groups again after a restart.
//
// After a driver restart IP gets a fresh channel (kernel/wiring) and resubmits
// every request that has no reply yet, with new ids: TX frames that may not
// have gone out are sent again (a few duplicates, never a loss), and its
// receive buffers are posted again. The new driver reset the device before
// it said hello, so none of the old requests is still in the device's hands.
package link

import (
	"fmt"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

// Op is an operation of this protocol (channel.Msg.Op).
type Op uint16

// Operations, numbered here and nowhere else.
const (
	OpRx   Op = 1
	OpTx   Op = 2
	OpInfo Op = 3
	// OpMulticast joins or leaves a multicast group.
	OpMulticast Op = 4
)

var opNames = map[Op]string{OpRx: "OpRx", OpTx: "OpTx", OpInfo: "OpInfo", OpMulticast: "OpMulticast"}

func (o Op) String() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return fmt.Sprintf("Op(%d)", uint16(o))
}

// Msg is a request of operation o for ref, with the arguments args.
func (o Op) Msg(ref pool.Ref, args ...uint64) channel.Msg {
	m := channel.Msg{Op: uint16(o), Ref: ref}
	copy(m.Arg[:], args)
	return m
}

// OpOf is m's operation.
func OpOf(m channel.Msg) Op { return Op(m.Op) }

// Status is a reply's status (channel.Msg.Status).
type Status int32

// Reply statuses, numbered here and nowhere else.
const (
	StatusOK     Status = 0
	StatusUnused Status = 1 // an RX buffer returned without a frame
	StatusBadRef Status = 2 // the ref is not inside a pool the driver knows
	StatusError  Status = 3 // the device reported an error for this frame
	// StatusThrottled: the driver already had its most requests waiting
	// for room on the ring (drivers/nic MaxWaiting); this one was not
	// taken (an RX buffer comes back unused, a frame was not sent).
	StatusThrottled Status = 4
)

var statusNames = map[Status]string{
	StatusOK: "StatusOK", StatusUnused: "StatusUnused",
	StatusBadRef: "StatusBadRef", StatusError: "StatusError", StatusThrottled: "StatusThrottled",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Status(%d)", int32(s))
}

// StatusOf is m's status.
func StatusOf(m channel.Msg) Status { return Status(m.Status) }

// SetStatus sets m's status to s.
func SetStatus(m *channel.Msg, s Status) { m.Status = int32(s) }

// Offloads a driver may announce in OpInfo's Arg[2] (netdev.Features).
const (
	FeatureChecksum     uint64 = 1 << 0 // TCP/UDP checksum insertion over IPv4
	FeatureTSO          uint64 = 1 << 1 // TCP segmentation over IPv4
	FeatureChecksum6    uint64 = 1 << 2 // TCP checksum insertion over IPv6
	FeatureUDPChecksum6 uint64 = 1 << 3 // UDP checksum insertion over IPv6 (never a zero checksum)
	FeatureTSO6         uint64 = 1 << 4 // TCP segmentation over IPv6
)

// Checksums the device verified of a received frame, in OpRx's reply
// Arg[0] (netdev.RxCheck).
const (
	// RxCheckedL4: the TCP or UDP checksum of the unfragmented datagram
	// in the frame is right.
	RxCheckedL4 uint64 = 1 << 0
	// RxCheckedIPv4: the IPv4 header checksum is right.
	RxCheckedIPv4 uint64 = 1 << 1
)

// MaxTSO is the most payload one segmentation request may carry.
const MaxTSO = 64<<10 - 256

// Offload asks the driver to insert the TCP or UDP checksum of a frame and,
// with MSS set, to cut it into segments (see netdev.Offload for how the frame
// must be prepared). Offsets count from the frame's start.
type Offload struct {
	L3, L4 uint8  // where the IPv4 and the TCP/UDP headers start
	HdrLen uint8  // with MSS: the headers copied into every segment
	MSS    uint16 // 0: checksum only
	TCP    bool   // TCP, else UDP
	IPv6   bool   // the IP header at L3 is IPv6's, else IPv4's
}

const (
	offloadValid = 1 << 63
	offloadTCP   = 1 << 62
	offloadIPv6  = 1 << 61
)

// Arg packs o into a message argument; never zero.
func (o Offload) Arg() uint64 {
	v := uint64(offloadValid) | uint64(o.L3) | uint64(o.L4)<<8 | uint64(o.HdrLen)<<16 | uint64(o.MSS)<<24
	if o.TCP {
		v |= offloadTCP
	}
	if o.IPv6 {
		v |= offloadIPv6
	}
	return v
}

// OffloadFromArg unpacks Offload.Arg; false for zero (no offload) or a
// value Arg cannot have made.
func OffloadFromArg(v uint64) (Offload, bool) {
	if v&offloadValid == 0 || v&^(offloadValid|offloadTCP|offloadIPv6|1<<40-1) != 0 {
		return Offload{}, false
	}
	return Offload{L3: uint8(v), L4: uint8(v >> 8), HdrLen: uint8(v >> 16), MSS: uint16(v >> 24),
		TCP: v&offloadTCP != 0, IPv6: v&offloadIPv6 != 0}, true
}

// MACToArg packs a MAC address into a message argument.
func MACToArg(mac [6]byte) uint64 {
	var v uint64
	for _, b := range mac {
		v = v<<8 | uint64(b)
	}
	return v
}

// ArgToMAC unpacks MACToArg.
func ArgToMAC(v uint64) [6]byte {
	var mac [6]byte
	for i := 5; i >= 0; i-- {
		mac[i] = byte(v)
		v >>= 8
	}
	return mac
}
