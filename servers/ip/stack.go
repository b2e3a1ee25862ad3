package ip

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"keepnet/drivers/link"
	"keepnet/servers/header"
)

// Link is the way to the NIC driver. SendFrame must not keep frame after it
// returns: the caller (the server) copies it into a pool buffer, and the
// Stack reuses the slice for the next frame.
type Link interface {
	SendFrame(frame []byte) error
}

// OffloadLink is a Link whose device can insert TCP/UDP checksums and cut
// TCP segments (drivers/link's offloads); the Stack uses it for the
// datagrams a transport sends with an Offload. Features are the offloads
// the device announced (link.Feature*): over IPv4 the server offers the
// transports only what it has, over IPv6 the Stack asks it for a
// checksum only where it says it does one.
type OffloadLink interface {
	Link
	SendFrameOffload(frame []byte, o link.Offload) error
	Features() uint64
}

// FrameLender is an OffloadLink that lends the Stack the transmit buffer
// a frame will go out in: the Stack builds the frame there, and
// SendFrameOffload hands that buffer to the driver instead of copying
// the frame into one. FrameBuffer returns n bytes of it, or nil when
// none is free (the Stack then builds the frame in its own memory, and
// SendFrameOffload copies it, or fails, as for any frame).
type FrameLender interface {
	OffloadLink
	FrameBuffer(n int) []byte
}

// Offload is what a transport asks of the device for one datagram: the
// transport left its checksum field for the device to fill (Checksum), and
// with MSS the datagram may exceed the MTU: the device cuts its TCP
// payload into segments of MSS bytes (TCP only, never fragmented).
//
// ECN is the ECN codepoint (RFC 3168 §5, servers/ops ECNECT0...) its IP
// header is to carry; with MSS every segment the device cuts carries it.
type Offload struct {
	Checksum bool
	MSS      int
	ECN      uint8
}

// Transport is a transport server (udp, tcp) reached by protocol number.
// payload is valid only during the call.
type Transport interface {
	Deliver(proto uint8, src, dst netip.Addr, payload []byte)
}

// DatagramTransport is a Transport that takes the whole datagram (header
// included, reassembled): what a transport server in another process needs,
// to answer with ICMP errors that quote it. The Stack prefers it. verified:
// the device found the transport checksum right (HandleFrameChecked), and
// the transport need not compute it again.
type DatagramTransport interface {
	DeliverDatagram(ip header.IPv4, verified bool)
}

// ErrorTransport is a Transport that takes the ICMP errors about the
// datagrams it sent (pmtu.go): ip, the whole ICMP datagram, whose quote
// handleICMP checked (a datagram of ours, of the transport's protocol, its
// IP header and 8 bytes of its transport header quoted); pathMTU is the
// path MTU to the quoted destination after a "fragmentation needed", 0
// for other errors.
type ErrorTransport interface {
	DeliverError(ip header.IPv4, pathMTU int)
}

// Clock is the time source; tests pass a fake one and never sleep.
type Clock interface {
	Now() time.Time
}

// Errors of Output and SendUnreachable, wrapped with the destination.
var (
	ErrNoRoute   = errors.New("no route to host")         // not in the subnet and no gateway, or not IPv4
	ErrTooBig    = errors.New("datagram too big")         // payload over 65515 bytes
	ErrBadPacket = errors.New("invalid offending packet") // SendUnreachable got no valid IPv4 datagram
	ErrNotOurs   = errors.New("source address not ours")  // OutputFrom a source no interface has
	ErrNoAddress = errors.New("no address to send from")  // Source: none configured, or each tentative
)

// Limits bound what a Stack holds for others: reassemblies and packets
// waiting for ARP. They are not part of Config (nothing to persist);
// DefaultLimits fits the appliance, tests shrink them.
type Limits struct {
	ReassemblyTimeout time.Duration // a datagram's fragments are dropped this long after the first arrived
	ReassemblyMemory  int           // bytes held across all reassemblies (data plus per-fragment overhead)
	MaxReassemblies   int           // datagrams being reassembled at once; the oldest is evicted
	ARPQueueLen       int           // packets queued per unresolved neighbour; the oldest is dropped
	ARPQueueMemory    int           // payload bytes queued across all neighbours; past it new packets are dropped
	ARPRetries        int           // requests sent before giving up on a neighbour
	ARPRetryInterval  time.Duration // between requests
	ARPReachable      time.Duration // a resolved entry is used this long, then resolved again
	MaxNeighbors      int           // ARP cache entries; the oldest is evicted
	// ICMP errors sent (unreachable, time exceeded) are limited by a token
	// bucket, as RFC 1812 §4.3.2.8 asks: ICMPErrorRate a second, bursts
	// of up to ICMPErrorBurst; the rest are not sent (ICMPErrorsRateLimited).
	ICMPErrorRate  int
	ICMPErrorBurst int
}

// DefaultLimits returns the limits New starts with.
func DefaultLimits() Limits {
	return Limits{
		ReassemblyTimeout: 30 * time.Second,
		ReassemblyMemory:  4 << 20,
		MaxReassemblies:   64,
		ARPQueueLen:       16,
		ARPQueueMemory:    1 << 20,
		ARPRetries:        3,
		ARPRetryInterval:  time.Second,
		ARPReachable:      60 * time.Second,
		MaxNeighbors:      1024,
		ICMPErrorRate:     1000, // Linux's icmp_msgs_per_sec
		ICMPErrorBurst:    50,   // Linux's icmp_msgs_burst
	}
}

// Counters are the Stack's statistics. Every dropped packet is counted in
// exactly one "drop" counter.
type Counters struct {
	// Ethernet.
	FramesIn          uint64 // every frame handed to HandleFrame
	FramesOut         uint64 // every frame handed to the Link successfully
	FramesOversized   uint64 // drop: longer than MTU + Ethernet header
	FramesTruncated   uint64 // drop: shorter than an Ethernet header
	FramesNotForUs    uint64 // drop: destination MAC neither ours nor broadcast
	FramesUnknownType uint64 // drop: EtherType not IPv4, ARP or (when on) IPv6
	LinkErrors        uint64 // Link.SendFrame failed

	// ARP.
	ARPRequestsIn      uint64
	ARPRepliesIn       uint64
	ARPRequestsOut     uint64 // resolution requests, retries and gratuitous ARP
	ARPRepliesOut      uint64
	ARPBad             uint64 // drop: truncated, not Ethernet/IPv4, unknown operation
	ARPNotForUs        uint64 // drop (after learning nothing new): target address not ours
	ARPConflicts       uint64 // drop: another MAC claims our address
	ARPResolveFailures uint64 // neighbours that did not answer ARPRetries requests
	ARPEvictions       uint64 // entries evicted because the cache was full
	QueueDrops         uint64 // packets dropped while waiting for ARP (queue full, memory, failure, eviction)

	// IPv4 input.
	IPIn              uint64 // IPv4 packets in frames for us
	IPTruncated       uint64 // drop: header.ErrTruncated
	IPBadVersion      uint64 // drop: header.ErrBadVersion
	IPBadIHL          uint64 // drop: header.ErrBadIHL
	IPBadLength       uint64 // drop: header.ErrBadLength
	IPBadChecksum     uint64 // drop: header.ErrBadChecksum
	IPNotForUs        uint64 // drop: destination neither our address nor a broadcast
	IPBadSource       uint64 // drop: source is a broadcast or multicast address
	IPUnknownProtocol uint64 // drop: no transport (protocol unreachable sent)
	IPDelivered       uint64 // datagrams handed to a Transport

	// Reassembly.
	FragmentsIn           uint64
	ReassemblyOK          uint64 // datagrams reassembled
	ReassemblyTimeouts    uint64 // datagrams dropped after ReassemblyTimeout
	ReassemblyOverlaps    uint64 // datagrams dropped for an overlapping (or duplicate) fragment
	ReassemblyMemoryDrops uint64 // datagrams dropped to stay under ReassemblyMemory
	ReassemblyEvictions   uint64 // datagrams dropped to stay under MaxReassemblies
	ReassemblyBad         uint64 // datagrams/fragments dropped: empty or unaligned fragment, inconsistent end, over 65535

	// Checksums the device verified on receive (link.RxChecked*).
	IPChecksumVerified uint64 // IPv4 headers whose checksum was not computed again
	L4ChecksumVerified uint64 // IPv4 datagrams delivered whose TCP/UDP checksum the device verified

	// IPv4 output.
	IPOut           uint64 // datagrams sent (or queued for ARP) by Output
	FragmentsOut    uint64 // frames of fragmented datagrams
	SegmentationOut uint64 // datagrams handed to the device to cut into TCP segments
	NoRoute         uint64 // Output calls refused with ErrNoRoute

	// ICMP.
	ICMPIn                uint64
	ICMPBad               uint64 // drop: truncated or bad checksum
	ICMPEchoRequests      uint64
	ICMPEchoReplies       uint64 // replies sent
	ICMPEchoIgnored       uint64 // drop: echo request to a broadcast address
	ICMPUnreachableOut    uint64
	ICMPTimeExceededOut   uint64
	ICMPErrorsSuppressed  uint64 // errors not sent, per RFC 1122 §3.2.2
	ICMPErrorsRateLimited uint64 // errors not sent: over Limits.ICMPErrorRate

	// IPv6 (ipv6.go).
	IP6In               uint64 // IPv6 datagrams in frames for us
	IP6Bad              uint64 // drop: truncated, wrong version, a group or loopback source
	IP6NotForUs         uint64 // drop: destination none of our addresses or groups
	IP6BadExtension     uint64 // drop: an extension header refused (parameter problem sent, or discarded as its option asks)
	IP6NoTransport      uint64 // drop: no transport for it, or a packet filter that cannot judge IPv6 (unreachable or parameter problem sent)
	IP6Delivered        uint64 // datagrams handed to a transport
	IP6Out              uint64 // datagrams sent or queued for Neighbor Discovery
	IP6ChecksumOffload  uint64 // of those, sent with the TCP/UDP checksum left to the device
	IP6ChecksumVerified uint64 // datagrams delivered whose TCP/UDP checksum the device verified
	IP6NoRoute          uint64 // Output6 refused: no router, not on-link
	IP6AddrsConfigured  uint64 // addresses that passed DAD
	IP6AddrsKept        uint64 // addresses a predecessor had, in use again at once (EnableIPv6's kept)
	IP6KeptRefused      uint64 // kept IPv6 state that could not be read: started anew
	DADConflicts        uint64 // tentative addresses given up: another node has them
	ICMP6In             uint64
	ICMP6Bad            uint64 // drop: truncated or bad checksum
	ICMP6Ignored        uint64 // valid messages nothing here acts on (router solicitations, redirects, MLD, errors)
	ICMP6EchoRequests   uint64
	ICMP6EchoReplies    uint64
	ICMP6ErrorsOut      uint64
	ICMP6PacketTooBig   uint64 // Packet Too Big about a datagram of ours: the path MTU learned
	NDBad               uint64 // drop: ND messages RFC 4861's checks refuse (hop limit, options, addresses)
	NSIn, NAIn, RAIn    uint64
	NSOut, NAOut, RSOut uint64
	MLDReportsOut       uint64 // MLDv2 reports: groups joined or left, answers to queries
	NDResolveFailures   uint64 // neighbours that did not answer their solicitations
	NDQueueDrops        uint64 // datagrams dropped while waiting for Neighbor Discovery
	RARefused           uint64 // routers, prefixes, addresses not taken: over nd's bounds (an advertisement flood)
	ICMPErrorsIn        uint64 // unreachable, time exceeded, parameter problem received
	ICMPErrorsIgnored   uint64 // drop: their quote is no datagram of ours, or too short
	ICMPErrorsDelivered uint64 // handed to the transport that sent the quoted datagram

	// Path MTU discovery (pmtu.go).
	PathMTUDecreases uint64 // estimates lowered by "fragmentation needed"
	PathMTUExpired   uint64 // estimates forgotten after PathMTUAge
	PathMTUClamped   uint64 // offloaded TCP segments cut at a path MTU below the transport's MSS
}

// A Stack is one IP server's protocol state for one interface. It is not
// safe for concurrent use: one server loop owns it.
type Stack struct {
	cfg        Config
	addr       netip.Addr   // cfg.Addr.Addr()
	subnet     netip.Prefix // cfg.Addr.Masked()
	bcast      netip.Addr   // subnet's directed broadcast
	mac        header.MAC
	link       Link
	clock      Clock
	transports map[uint8]Transport
	limits     Limits
	c          Counters

	// rxChecked is what the device verified of the frame being handled
	// (HandleFrameChecked; link.RxChecked*), 0 outside it.
	rxChecked uint64

	nextID uint16 // IP identification of the next datagram sent

	neigh       map[netip.Addr]*neighbor
	queuedBytes int // payload bytes queued across all neighbours

	reasm    map[fragKey]*reassembly
	reasmMem int // charge of all reassemblies against Limits.ReassemblyMemory

	icmpTokens tokenBucket // ICMP errors (Limits.ICMPErrorRate)

	v6   *stack6   // IPv6 (ipv6.go); nil until EnableIPv6
	pmtu pmtuCache // path MTU estimates by destination (pmtu.go)

	// router joins this Stack to the others of a multi-NIC appliance
	// (forward.go); nil for the lone interface, which then routes by its
	// subnet and gateway alone.
	router *Router

	tx      []byte // the frame being built, unless the link lends one; the largest datagram + Ethernet header
	icmpBuf []byte // echo replies and ICMP errors; up to a whole datagram
	bigBuf  []byte // the datagram being reassembled
}

// New returns a Stack for cfg, which must pass Config.Validate (New panics
// otherwise: a server validates its config before). transports maps IP
// protocol numbers to their servers; ICMP echo is answered by the Stack
// itself, other ICMP messages go to transports[1] if there is one.
func New(cfg Config, link Link, clock Clock, transports map[uint8]Transport) *Stack {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("ip.New: %v", err))
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	s := &Stack{
		cfg:        cfg,
		addr:       cfg.Addr.Addr(),
		subnet:     cfg.Addr.Masked(),
		bcast:      broadcastOf(cfg.Addr),
		mac:        cfg.MAC,
		link:       link,
		clock:      clock,
		transports: make(map[uint8]Transport, len(transports)),
		limits:     DefaultLimits(),
		neigh:      make(map[netip.Addr]*neighbor),
		reasm:      make(map[fragKey]*reassembly),
		tx:         make([]byte, header.EthernetMinimumSize+header.IPv4MaximumSize),
		icmpBuf:    make([]byte, header.IPv4MaximumSize),
		bigBuf:     make([]byte, header.IPv4MaximumSize),
		// Start IDs somewhere time-dependent so a restarted server does
		// not reuse the IDs of its predecessor's recent datagrams.
		nextID: uint16(clock.Now().UnixNano() >> 10),
	}
	for p, t := range transports {
		s.transports[p] = t
	}
	return s
}

// SetLimits replaces DefaultLimits. Call it before the first frame.
func (s *Stack) SetLimits(l Limits) { s.limits = l }

// Config returns the configuration the Stack runs with (MTU defaulted).
func (s *Stack) Config() Config { return s.cfg }

// Counters returns a snapshot of the statistics.
func (s *Stack) Counters() Counters {
	c := s.c
	if s.v6 != nil {
		c.RARefused = s.v6.auto.Refused()
	}
	return c
}

// HandleFrameChecked is HandleFrame of a frame whose checksums the device
// verified as checked says (link.RxCheckedL4, RxCheckedIPv4): the Stack
// does not compute those again, and tells the transport so for a datagram
// that came whole in this frame (one put together from fragments is not
// what the device checked).
func (s *Stack) HandleFrameChecked(frame []byte, checked uint64) {
	s.rxChecked = checked
	s.HandleFrame(frame)
	s.rxChecked = 0
}

// HandleFrame processes one received Ethernet frame (without FCS). The
// Stack does not keep frame after it returns; a frame it forwards it
// rewrites in place (addresses, TTL) and hands to the out interface's Link.
func (s *Stack) HandleFrame(frame []byte) {
	s.c.FramesIn++
	if len(frame) > header.EthernetMinimumSize+s.cfg.MTU {
		s.c.FramesOversized++
		return
	}
	if header.ValidateEthernet(frame) != nil {
		s.c.FramesTruncated++
		return
	}
	eth := header.Ethernet(frame)
	if d := eth.Dst(); d != s.mac && d != header.BroadcastMAC && !s.acceptsGroup(d) {
		s.c.FramesNotForUs++
		return
	}
	switch eth.Type() {
	case header.EtherTypeARP:
		s.handleARP(eth.Payload())
	case header.EtherTypeIPv4:
		s.handleIPv4(eth)
	case header.EtherTypeIPv6:
		s.handleIPv6(eth)
	default:
		s.c.FramesUnknownType++
	}
}

// Tick runs the timers: ARP retries and ageing, reassembly timeouts. The
// server calls it periodically; its resolution is the timers'.
func (s *Stack) Tick() {
	now := s.clock.Now()
	s.tickARP(now)
	s.tickReassembly(now)
	s.tick6(now)
	s.tickPathMTU(now)
}

// sendFrame hands the first n bytes of s.tx to the link.
func (s *Stack) sendFrame(n int) error {
	if err := s.link.SendFrame(s.tx[:n]); err != nil {
		s.c.LinkErrors++
		return err
	}
	s.c.FramesOut++
	return nil
}

// isBroadcast reports whether a is the limited or our directed broadcast.
func (s *Stack) isBroadcast(a netip.Addr) bool {
	return a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || a == s.bcast
}

// owner is the Stack whose address a is: s, or with a Router another of
// its interfaces; nil if a is none of ours.
func (s *Stack) owner(a netip.Addr) *Stack {
	switch {
	case a == s.addr:
		return s
	case s.router != nil:
		return s.router.owner(a)
	}
	return nil
}
