// Package netdev is the device-neutral face of a network interface card:
// the interface a NIC family's driver core implements (Device), the types it
// speaks (Regs, Region, Buffer, Offload, Features, Stats, Forgotten), and the
// registry through which the driver process picks, by PCI vendor:device ID,
// the family that drives a function (Family, Registry).
//
// It sits between kernel/ and the NIC families (DESIGN.md, "Layers"): the
// driver process loop (drivers/nic) speaks only these types, and a family
// (e1000/, the 8254x and the 82574L; later igb/...) implements them and
// imports nothing above drivers/. A family's package lists the IDs it
// drives in its Family; the driver's main puts every family it links into
// one Registry. A family that drives several parts is told which one in
// Quiesce and Open (the PCI ID) and keeps their differences itself.
//
// # Restart protocol
//
// A family's part in a driver restart is two calls, in this order:
//
//  1. Family.Quiesce, before the driver process says hello to init: the
//     previous generation may have left buffers posted, in pools init frees
//     once the new process is up, so the device must stop its DMA first.
//  2. Device.Reset, after Family.Open laid the rings out: the device owns no
//     buffer afterwards; Reset returns, in Forgotten, every buffer this
//     Device had posted (none for a fresh process).
//
// Every buffer handed to a Device comes back exactly once: through PollRX or
// PollTX, or in the Forgotten list of Reset.
package netdev

import "time"

// Regs is a device's register file: a memory BAR mapped by drivers/pci in
// the driver process, a register-level model of the device in tests.
// Offsets are byte offsets of 32-bit registers; every access is one 32-bit
// access.
type Regs interface {
	Read32(off uint32) uint32
	Write32(off uint32, val uint32)
}

// Region is DMA memory the device reads and writes: the host view and the
// device (bus) address of byte 0.
type Region struct {
	Mem  []byte
	Addr uint64
}

// Buffer is a packet buffer the driver hands to the device. Cookie
// identifies it to the caller (drivers/nic uses the index of the request it
// answers); the device core never interprets it.
type Buffer struct {
	Mem    []byte
	Addr   uint64
	Cookie uint64
}

// Offload describes the checksum insertion and TCP segmentation a frame
// asks of the device. Offsets count from the start of the Ethernet frame.
//
// The frame is prepared the way checksum-offloading NICs expect: the TCP or
// UDP checksum field holds the one's-complement sum of the pseudo-header,
// not complemented — with the length for a single frame, without it for
// segmentation, where the device adds each segment's length. For
// segmentation the IPv4 header checksum field is zero: the device fills it
// in for each segment, whose total length and identification it rewrites
// too. Over IPv6 (IPv6 set) there is no header checksum, and the device
// only inserts the TCP or UDP checksum: no family's segmentation over IPv6
// is offered (Features).
type Offload struct {
	L3, L4 int  // where the IP header and the TCP/UDP header start
	TCP    bool // TCP (else UDP)
	IPv6   bool // the IP header is IPv6's (else IPv4's)
	// MSS, if not zero, asks for TCP segmentation: the payload after
	// HdrLen bytes of headers is cut into segments of MSS bytes, each sent
	// behind a copy of the headers with sequence number, lengths and
	// checksums fixed up, and PSH and FIN only on the last.
	MSS    int
	HdrLen int
}

// Features are the offloads a Device does.
type Features uint32

// Offloads a Device may do.
const (
	FeatureChecksum Features = 1 << iota // TCP/UDP checksum insertion over IPv4
	FeatureTSO                           // TCP segmentation over IPv4
	// FeatureChecksum6: TCP checksum insertion over IPv6.
	FeatureChecksum6
	// FeatureUDPChecksum6: UDP checksum insertion over IPv6, by a device
	// that sends a computed zero as 0xFFFF (a zero UDP checksum is not
	// allowed over IPv6, RFC 8200 §8.1).
	FeatureUDPChecksum6
	// FeatureTSO6: TCP segmentation over IPv6.
	FeatureTSO6
)

// Needs is the features a device must announce to take o.
func (o Offload) Needs() Features {
	var f Features
	switch {
	case !o.IPv6:
		f = FeatureChecksum
		if o.MSS != 0 {
			f |= FeatureTSO
		}
	case o.TCP:
		f = FeatureChecksum6
		if o.MSS != 0 {
			f |= FeatureTSO6
		}
	default:
		f = FeatureUDPChecksum6
	}
	return f
}

// RxCheck is what the device found of a received frame (PollRX).
type RxCheck uint8

// Checks a Device reports of a received frame.
const (
	// RxBad: the device flagged an error (a bad frame, or a checksum it
	// found wrong); the caller drops the frame.
	RxBad RxCheck = 1 << iota
	// RxL4Checked: the device verified the TCP or UDP checksum of a
	// whole, unfragmented datagram in this frame and found it right.
	RxL4Checked
	// RxIPv4Checked: the device verified the IPv4 header checksum and
	// found it right.
	RxIPv4Checked
)

// Stats are a device core's counters. They survive Reset.
type Stats struct {
	RxFrames, RxBytes uint64 // good frames handed to PollRX callbacks
	RxErrors          uint64 // frames the device marked bad (still handed over)
	RxBadChecksum     uint64 // of RxFrames, those whose IPv4 or TCP/UDP checksum the device found wrong (handed over marked bad)
	RxChecksumGood    uint64 // of RxFrames, those whose TCP/UDP checksum the device verified right (handed over RxL4Checked)
	RxDropped         uint64 // frames the core could not hand over whole (spanning buffers), dropped
	TxFrames, TxBytes uint64 // frames the device reported done
	TxChecksum4       uint64 // frames queued with TCP/UDP checksum insertion over IPv4 (segmentation requests count once)
	TxChecksum6       uint64 // frames queued with TCP/UDP checksum insertion over IPv6
	TxSegmented       uint64 // of those, TCP segmentation requests
	TxContexts        uint64 // offload contexts loaded into the device (a frame whose context it holds needs none)
	RxMissed          uint64 // frames the device dropped: no room in its receive FIFO
	RxNoBuffer        uint64 // times the device found no receive buffer posted
	RxTailWrites      uint64 // receive tail writes: how often FlushRX told the device of buffers
	TxTailWrites      uint64 // transmit tail writes: how often FlushTX started a batch
}

// Progress is what a device watchdog (drivers/nic) compares between two
// looks to tell a device that stopped from one that is merely busy or idle.
type Progress struct {
	TxPending int    // transmit descriptors handed to the device and not yet processed
	TxHead    uint32 // the device's transmit head: moves as it processes them
	RxPosted  int    // empty receive buffers the device holds
	RxHead    uint32 // the device's receive head: moves as it fills them
	RxMissed  uint64 // frames the device dropped (no room, no buffer), so far
	LinkUp    bool
}

// Forgotten lists the cookies of the buffers a Reset took back from the
// device: every buffer posted and not yet returned by PollRX or PollTX. TX is
// in submission order: the frames to resubmit.
type Forgotten struct {
	RX, TX []uint64
}

// Multicaster is a Device whose receive filter takes multicast groups
// (IPv6's solicited-node and all-nodes groups): after SetMulticast the
// device lets in frames to those groups (perhaps a few others: a hash
// filter), and a Reset keeps them.
type Multicaster interface {
	SetMulticast(groups [][6]byte)
}

// Moderator is a Device that can space its interrupts (interrupt
// moderation): after raising one it raises the next no sooner than the
// interval set, gathering the frames that come meanwhile into one wake-up
// of the driver. Zero asks for no spacing. An interrupt after a quiet
// period longer than the interval is never delayed. A Reset keeps the
// interval.
type Moderator interface {
	SetInterruptInterval(d time.Duration)
}

// Device is a NIC family's driver core for one function: two descriptor
// rings in DMA memory, the registers that drive them, and the device's
// counters. The driver process calls it from one goroutine; it need not be
// safe for concurrent use.
//
// Posting and flushing are apart so that a batch costs one register write:
// PostRX and Transmit only fill descriptors, FlushRX and FlushTX tell the
// device.
type Device interface {
	// Reset brings the device to a known state and rebuilds both rings,
	// whatever state a previous driver left; it returns every buffer this
	// Device had posted. Call it before anything else.
	Reset() (Forgotten, error)

	// RxBufSize is the least length of a buffer PostRX takes: the device
	// writes up to that many bytes.
	RxBufSize() int
	// PostRX hands b to the device for one received frame; false when the
	// ring is full.
	PostRX(b Buffer) bool
	// RxFree is how many buffers PostRX would take now.
	RxFree() int
	// FlushRX gives the buffers posted since the last flush to the device,
	// or some of them: a device may hold a few back while it has plenty
	// (they go at a later flush, in time to be filled).
	FlushRX()
	// PollRX hands back the buffers the device has filled, in ring order,
	// calling fn with each buffer's cookie, the frame (a prefix of its Mem;
	// nil for a buffer given back without a frame) and what the device
	// checked of it: RxBad if it flagged an error, the checksums it
	// verified. It returns how many buffers it handed back.
	PollRX(fn func(cookie uint64, frame []byte, check RxCheck)) int

	// Transmit queues the first n bytes of b as one frame; false when the
	// ring is full.
	Transmit(b Buffer, n int) bool
	// TransmitOffload queues the first n bytes of b with the offloads o asks
	// for (which Features announced); false when the ring lacks room.
	TransmitOffload(b Buffer, n int, o Offload) bool
	// TxFree is how many frames Transmit would take now.
	TxFree() int
	// FlushTX starts transmission of the frames queued since the last flush.
	FlushTX()
	// PollTX hands back the buffers of frames the device has sent, in
	// submission order, calling fn with each cookie, and returns how many.
	PollTX(fn func(cookie uint64)) int

	// MAC is the station address Reset read and programmed.
	MAC() [6]byte
	// LinkUp reports the link state.
	LinkUp() bool
	// Features are the offloads TransmitOffload does.
	Features() Features
	// Interrupts reads and acknowledges the device's pending interrupt
	// causes (deasserting its line) and returns them, in the family's own
	// bits: not zero when any was pending.
	Interrupts() uint32
	// Stats returns the counters.
	Stats() Stats
	// Progress reads the device's ring heads and drop counters, for the
	// watchdog; a few register reads.
	Progress() Progress
}
