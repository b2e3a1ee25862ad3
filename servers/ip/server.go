package ip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"slices"
	"time"

	"keepnet/drivers/link"
	"keepnet/kernel/channel"
	"keepnet/kernel/loop"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/store"
)

// The IP server process: a Stack per NIC driver (drivers/link), joined by
// a Router when there are several (forward.go), and the transport servers
// (servers/ops), each over a kernel/channel channel, with its
// configuration in the store. This file is the process, run by the loop
// every server shares (kernel/loop); the protocol logic is the Stack.
//
// The interfaces share ip's pools: one receive pool all drivers write
// (each keeps RxPosted of its buffers), one transmit pool. A frame
// forwarded from one interface to another is copied once, from the
// received frame into a transmit buffer, and the pools need not be sized
// for the busiest interface each; init sizes them by the number of NICs.
//
// Every request IP sends (to the driver: receive buffers, frames, info; to
// a transport: delivered datagrams, in the very buffer their frame was
// parsed in when it came whole) stays in the link's outstanding table
// until its reply. When the neighbour restarts, IP gets a channel to the new
// generation and resubmits the whole table with new ids, so the old
// generation's late replies are ignored and nothing is lost (a frame may go
// out twice).

// upHeadroom is where a datagram starts in a buffer of UpSmallPool: after
// the link header of the frame it came in, which IP parsed in that buffer
// and handed over as it was, or after as much room when it was copied
// there (reassembled, or with no buffer free to parse in). The transports
// need not know: OpDeliver's offset of the transport header counts it.
const upHeadroom = header.EthernetMinimumSize

// Pool names, as the component table gives them.
const (
	RxPool = "ip.rx" // receive buffers posted to the driver
	TxPool = "ip.tx" // frames handed to the driver
	UpPool = "ip.up" // datagrams delivered to the transports
	// UpSmallPool (optional) holds the delivered datagrams that fit its
	// buffers: a segment of bulk TCP is 1.5 KB, and a pool of 64 KiB
	// buffers sized for the largest UDP datagram ran out at a few hundred
	// segments in flight to tcp, dropping them. IP also copies each
	// received frame into one of its buffers to parse it, and a datagram
	// that came whole in that frame goes to its transport in that very
	// buffer (upHeadroom).
	UpSmallPool = "ip.up.small"
	// TxBigPool (optional) holds frames of up to 64 KiB for the device to
	// cut into TCP segments; without it IP offers no segmentation.
	TxBigPool = "ip.tx.big"
)

// ServerOptions configure the process.
type ServerOptions struct {
	Name string // the component, "ip"
	// Ifaces are the NICs: interface i is Ifaces[i]. The first one's
	// address is the one the transports use.
	Ifaces []Iface
	// Routes are the static routes; Forward turns forwarding between the
	// interfaces on (it needs two).
	Routes  []StaticRoute
	Forward bool
	// Transports maps IP protocol numbers to transport components
	// ({17: "udp"}).
	Transports map[uint8]string
	Store      *store.Client
	// RxPosted is how many receive buffers are kept with each driver.
	RxPosted int
	// Filter is the packet filter component ("pf"): every IP datagram
	// in and out waits for its verdict (filter.go). Empty: no filter, and
	// no datagram waits.
	Filter string
}

// StatsNS is the store namespace components publish their counters in.
const StatsNS = "stats"

const (
	statsEvery  = time.Second
	tickEvery   = 100 * time.Millisecond
	joinTimeout = 10 * time.Second
	storeNS     = "ip"
	storeKey    = "config"
)

// Bounds on what IP holds for its neighbours (issue 11). Each is also
// bounded by the pools and outstanding tables behind it; these say so
// where the memory is, and count when they are hit.
const (
	// MaxHeld bounds the transports' OpOutputs waiting for a transmit
	// buffer; beyond it one is answered StatusNoBuffers (OutputsThrottled).
	MaxHeld = 1024
	// MaxLinkQueue bounds the messages waiting for room in one
	// neighbour's channel; a new request beyond it is not made and its
	// buffer goes back to its pool (LinkQueueDrops).
	MaxLinkQueue = 4096
)

// Iface is one NIC as the options give it.
type Iface struct {
	Driver string // the driver component, "e1000.0"
	Config Config // from the kernel command line; the store's copy wins
	// DHCP: the address comes from a DHCP server (dhcpnic.go), not
	// Config; only for a lone interface.
	DHCP bool
	// IPv6 is its IPv6 configuration (ipv6.go): on unless IPv6.Off.
	IPv6 IPv6Config
}

// nic is one interface of the running server: its driver and its Stack.
type nic struct {
	index    int
	driver   string
	cfg      Config // the Stack's, until it starts
	mac      [6]byte
	haveMAC  bool
	features uint64 // the offloads its driver announced (drivers/link)
	posted   int    // receive buffers its driver has
	stack    *Stack
	// groups are the multicast groups its Stack joined: a new driver
	// generation starts with none, and is told them again.
	groups []header.MAC
}

// peerLink is the channel to one neighbour's current generation.
type peerLink struct {
	name  string               // the neighbour's
	nic   *nic                 // the interface, if the neighbour is its driver
	peer  *wiring.Peer         // nil until its first generation attaches (pf's link)
	out   *channel.Outstanding // requests IP sent and the peer has not answered
	queue []channel.Msg        // messages (requests and replies) the channel had no room for
}

func (l *peerLink) send(m channel.Msg) { l.queue = append(l.queue, m) }

// server is the IP process's state. One goroutine runs it.
type server struct {
	o          ServerOptions
	rx, tx, up *pool.Pool
	upSmall    *pool.Pool // nil: every delivery goes in up
	txBig      *pool.Pool // nil: no segmentation offload
	nics       []*nic
	router     *Router // nil with one NIC and no static routes
	stack      *Stack  // the first interface's: the transports'
	// features are the offloads every driver announced (drivers/link).
	features uint64

	links map[string]*peerLink // by peer name
	in    []channel.Msg
	// frame is the private copy of the received frame being handled: the
	// receive buffer is memory the driver (and its device) can write while
	// the Stack parses, so every field is taken from the copy, once.
	frame []byte
	// parse is the buffer of UpSmallPool the next received frame is
	// copied into instead of frame, so that its datagram can go to a
	// transport without another copy (receive, handOver); zero when none
	// is allocated yet. parsing is the frame in it now, nil when the
	// frame being handled is in frame.
	parse   pool.Ref
	parsing []byte
	// Bytes of datagrams delivered to the transports: handed over in the
	// buffer their frame was parsed in, or copied into an "ip.up" buffer.
	deliveredInPlace, deliveredCopied uint64
	// lent is the transmit buffer the Stack is building a frame in
	// (nicLink.FrameBuffer), zero when none: sendFrame hands it to the
	// driver as it is. Bytes of frames sent: built in place, or copied
	// into a transmit buffer.
	lent                    pool.Ref
	sentInPlace, sentCopied uint64

	// held are transports' OpOutputs waiting for a transmit buffer, in
	// the order they came: when the driver has every buffer, a segment
	// waits here (and its transport with it) instead of being refused and
	// lost.
	held      []heldOutput
	deferred  uint64 // OpOutputs that had to wait in held
	refused   uint64 // OpOutputs answered with an error
	throttled uint64 // OpOutputs refused: MaxHeld were held
	// maxHeld and maxLinkQueue are MaxHeld and MaxLinkQueue (zero), or
	// what a test sets.
	maxHeld, maxLinkQueue int
	linkQueueDrops        uint64 // requests not made: MaxLinkQueue reached or the outstanding table full

	// The filter's (filter.go): the datagrams pf passed, blocked, and
	// that found no room to wait.
	filterPassed, filterBlocked, filterDrops uint64

	drops uint64 // frames and datagrams dropped for want of a peer or a buffer
	stats *store.Publisher
	gen   int

	dhcp *dhcpNIC // interface 0's DHCP client; nil: a static address

	announce func() // tells init we are up
	// release tells init a superseded neighbour's pool is unmapped
	// (wiring.Conn.Release); nil in tests.
	release  func(id uint32)
	nextTick time.Time // when the Stacks tick next

	// Path MTU estimates (pmtustore.go): what the store kept, per
	// interface, for start; and where changes go.
	keptPMTUs   [][]byte
	keptIPv6    []byte        // interface 0's IPv6 state from the store (ipv6.go); nil: none
	pmtuJournal *store.Writer // nil in tests
}

// heldOutput is an OpOutput m from the transport on l.
type heldOutput struct {
	l *peerLink
	m channel.Msg
}

// Stats is what the IP server publishes for `keepnet stats ip`.
type Stats struct {
	Generation       int
	Driver           string // the first interface's (also in Ifaces)
	DriverGeneration int
	Outstanding      int // requests the driver has not answered
	NoPeerDrops      uint64
	RxPoolFree       int
	TxPoolFree       int
	UpPoolFree       int
	UpSmallPoolFree  int
	TxBigPoolFree    int
	Offloads         uint64 // offered to the transports (servers/ops Offload*)
	OutputsHeld      int    // transports' segments waiting for a transmit buffer now
	OutputsDeferred  uint64 // segments that ever had to wait for one
	OutputsRefused   uint64 // segments refused (answered with an error)
	OutputsThrottled uint64 // of those, refused because MaxHeld were held
	LinkQueueDrops   uint64 // requests to a neighbour not made (MaxLinkQueue reached); their buffers freed
	// Bytes of datagrams delivered to the transports: handed over in the
	// buffer IP parsed their frame in, or copied (reassembled ones, and
	// those that found no buffer to be parsed in).
	DeliveredInPlace uint64
	DeliveredCopied  uint64
	// Bytes of frames sent: built in the transmit buffer the driver gets
	// (a transport's datagram with offloads), or built apart and copied
	// into one (the rest: ARP, ICMP, fragments, IPv6, forwarded frames).
	SentInPlace uint64
	SentCopied  uint64
	// The packet filter's, if there is one (filter.go).
	Filter           string
	FilterGeneration int
	FilterWaiting    int    // datagrams waiting for a verdict now
	FilterPassed     uint64 // datagrams pf passed
	FilterBlocked    uint64 // datagrams pf blocked
	FilterDrops      uint64 // datagrams dropped: MaxFilterWait were waiting
	// Every interface's, and the routing table and forwarding counters
	// when there is a Router.
	Ifaces     []IfaceStats
	Routes     []string
	Forwarding ForwardCounters
	DHCP       *DHCPStats `json:",omitempty"` // interface 0's client, if it has one
	Counters              // the first interface's
}

// IfaceStats are one interface's, in Stats.
type IfaceStats struct {
	Driver           string
	DriverGeneration int
	Addr             string // address/prefix
	MAC              string
	MTU              int
	Outstanding      int      // requests the driver has not answered
	RxPosted         int      // receive buffers the driver has
	IPv6             []string `json:",omitempty"` // "address/prefix state" (tentative, preferred, deprecated)
	Counters
}

// realClock is the wall clock the process gives its Stack.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Serve runs the IP server process until ctx ends.
func Serve(ctx context.Context, o ServerOptions) error {
	if o.RxPosted == 0 {
		o.RxPosted = 512
	}
	cfgs, from, err := loadConfigs(ctx, o)
	if err != nil {
		return err
	}
	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	s := &server{o: o, rx: setup.Pools[RxPool], tx: setup.Pools[TxPool], up: setup.Pools[UpPool], upSmall: setup.Pools[UpSmallPool],
		txBig: setup.Pools[TxBigPool],
		links: map[string]*peerLink{}, in: make([]channel.Msg, 64), gen: setup.Generation}
	if s.rx == nil || s.tx == nil || s.up == nil {
		return fmt.Errorf("ip: init sent no %s, %s and %s pools", RxPool, TxPool, UpPool)
	}
	s.stats = store.NewPublisher(o.Store, StatsNS, o.Name)
	defer s.stats.Close()
	if o.Ifaces[0].DHCP {
		if cfgs[0], err = s.dhcpLoad(ctx); err != nil {
			return err
		}
		defer s.dhcp.journal.Close()
	}
	s.addNICs(cfgs)
	s.keptPMTUs = loadPathMTUs(ctx, o.Store, len(cfgs))
	s.keptIPv6 = loadIPv6State(ctx, o.Store)
	s.pmtuJournal = store.NewWriter(o.Store, storeNS)
	defer s.pmtuJournal.Close()
	for i, c := range cfgs {
		log.Printf("interface %d on %s: address %v, gateway %v (configuration from %s), generation %d",
			i, o.Ifaces[i].Driver, c.Addr, c.Gateway, from, setup.Generation)
	}

	watch, err := wiring.Watch(conn)
	if err != nil {
		return err
	}
	defer watch.Close()
	defer conn.Close()
	if s.filtering() {
		s.links[o.Filter] = newFilterLink(o.Filter)
	}
	for _, p := range setup.Peers {
		s.Attach(p)
	}
	s.release = conn.Release
	s.announce = func() {
		if err := conn.Send(wiring.Message{Type: wiring.TypeUp}); err != nil {
			log.Printf("wiring: %v", err)
		}
	}
	if err := loop.Run(ctx, loop.FromWatcher(watch), s, loop.Options{Publish: s.publish, PublishEvery: statsEvery}); err != nil {
		return fmt.Errorf("ip: %w", err)
	}
	return nil
}

// Poll is the loop's (kernel/loop): start the Stacks once every driver
// told its MAC (and DHCP gave the address), move messages, tick the
// Stacks every tickEvery and the DHCP client when its timers say.
func (s *server) Poll() (bool, time.Time) {
	if s.stack == nil && s.haveMACs() && s.addressed() {
		s.start()
	}
	work := s.poll()
	now := time.Now()
	if now.After(s.nextTick) {
		for _, n := range s.nics {
			if n.stack != nil {
				n.stack.Tick()
			}
		}
		s.releaseHeld() // a buffer freed some other way
		s.savePathMTUs()
		s.saveIPv6State()
		s.nextTick = now.Add(tickEvery)
	}
	wake := s.nextTick
	if s.dhcp != nil {
		if t := s.dhcpTick(now); !t.IsZero() && t.Before(wake) {
			wake = t
		}
	}
	return work, wake
}

// addNICs makes the interfaces of the options, with their configurations
// cfgs.
func (s *server) addNICs(cfgs []Config) {
	for i, c := range cfgs {
		s.nics = append(s.nics, &nic{index: i, driver: s.o.Ifaces[i].Driver, cfg: c})
	}
}

// haveMACs reports whether every driver has told its MAC.
func (s *server) haveMACs() bool {
	for _, n := range s.nics {
		if !n.haveMAC {
			return false
		}
	}
	return true
}

// start makes the Stacks (and the Router joining them), announces us on
// every link and tells init we are up.
func (s *server) start() {
	transports := map[uint8]Transport{}
	for proto, name := range s.o.Transports {
		transports[proto] = &transportLink{s: s, name: name}
	}
	if s.dhcp != nil { // the client's replies come as UDP
		t, _ := transports[header.ProtocolUDP].(DatagramTransport)
		transports[header.ProtocolUDP] = dhcpTap{s: s, inner: t}
	}
	stacks := make([]*Stack, len(s.nics))
	for i, n := range s.nics {
		cfg := n.cfg
		cfg.MAC = n.mac
		n.stack = New(cfg, nicLink{s, n}, realClock{}, transports)
		if i == 0 { // the transports' interface; IPv6 is not forwarded
			n.stack.EnableIPv6(s.o.Ifaces[i].IPv6, s.keptIPv6)
			if s.keptIPv6 != nil {
				log.Printf("IPv6: %d addresses from the store", len(n.stack.IPv6Addresses()))
			}
		}
		if i < len(s.keptPMTUs) && s.keptPMTUs[i] != nil {
			log.Printf("path MTUs of %d destinations from the store", n.stack.RestorePathMTUs(s.keptPMTUs[i]))
		}
		stacks[i] = n.stack
	}
	if len(stacks) > 1 || len(s.o.Routes) > 0 {
		r, err := NewRouter(stacks, s.o.Routes, s.o.Forward && len(stacks) > 1)
		if err != nil {
			log.Printf("routes: %v; only the connected networks and the default route", err) // the command line checked them
			r, _ = NewRouter(stacks, nil, s.o.Forward && len(stacks) > 1)
		}
		s.router = r
	}
	s.stack = stacks[0]
	for _, n := range s.nics {
		if err := n.stack.AnnounceGratuitousARP(); err != nil {
			log.Printf("gratuitous ARP on %s: %v", n.driver, err)
		}
		log.Printf("up on %s, MAC %x", n.driver, n.mac)
	}
	s.announce()
}

// nicLink is the Stack's Link (and OffloadLink) of one interface: its
// frames go to that interface's driver.
type nicLink struct {
	s *server
	n *nic
}

// SendFrame copies the frame into a TX buffer and hands it to the driver.
func (l nicLink) SendFrame(frame []byte) error { return l.s.sendFrame(l.n, frame, 0) }

// SendFrameOffload is SendFrame with the offload request for the driver.
func (l nicLink) SendFrameOffload(frame []byte, o link.Offload) error {
	return l.s.sendFrame(l.n, frame, o.Arg())
}

// FrameBuffer lends the Stack a transmit buffer to build a frame of n
// bytes in (FrameLender).
func (l nicLink) FrameBuffer(n int) []byte { return l.s.lend(n) }

// Features are the offloads the interface's driver announced.
func (l nicLink) Features() uint64 { return l.n.features }

// SetMulticast asks the driver to let frames to group in (or no longer).
func (l nicLink) SetMulticast(group header.MAC, join bool) error {
	n := l.n
	i := slices.Index(n.groups, group)
	switch {
	case join && i < 0:
		n.groups = append(n.groups, group)
	case !join && i >= 0:
		n.groups = slices.Delete(n.groups, i, i+1)
	}
	on := uint64(0)
	if join {
		on = 1
	}
	if dl := l.s.links[n.driver]; dl != nil && dl.peer != nil {
		l.s.request(dl, link.OpMulticast.Msg(pool.Ref{}, link.MACToArg(group), on))
	}
	return nil
}

// AppendPorts is the loop's: every neighbour's channel.
func (s *server) AppendPorts(dst []*channel.Endpoint) []*channel.Endpoint {
	spareTx, spareUp := s.buffersToSpare(), s.upToSpare()
	for _, l := range s.links {
		if l.peer == nil {
			continue
		}
		// How patiently to sleep on it (Lazy replies): this round is
		// over, so the buffers are what the sleep starts with.
		// Messages queued for a full channel wait for the peer's
		// replies, lazy ones included: then it must wake us.
		switch {
		case l.nic != nil:
			l.peer.Port.SetPatient(spareTx && len(l.queue) == 0)
		case s.isTransport(l):
			l.peer.Port.SetPatient(spareUp && len(l.queue) == 0)
		}
		dst = append(dst, l.peer.Port)
	}
	return dst
}

// loadConfigs takes every interface's configuration from the store (a
// restarted server) or from the options (the first start), and makes sure
// the store has them: interface 0's under "config", as with one NIC, the
// others' under "config.N". It says where the first one came from.
func loadConfigs(ctx context.Context, o ServerOptions) ([]Config, string, error) {
	if len(o.Ifaces) == 0 {
		return nil, "", errors.New("ip: no interface")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cfgs := make([]Config, len(o.Ifaces))
	var from string
	if o.Ifaces[0].DHCP && len(o.Ifaces) > 1 {
		return nil, "", errors.New("ip: DHCP configures only a lone interface")
	}
	for i, ifc := range o.Ifaces {
		if ifc.DHCP {
			from = "DHCP"
			continue // dhcpLoad
		}
		c, f, err := loadConfig(cctx, o.Store, configKey(i), ifc.Config)
		if err != nil {
			return nil, "", fmt.Errorf("ip: %s: %w", ifc.Driver, err)
		}
		cfgs[i] = c
		from = cmp.Or(from, f)
	}
	return cfgs, from, nil
}

// configKey is the store key of interface i's configuration.
func configKey(i int) string {
	if i == 0 {
		return storeKey
	}
	return fmt.Sprintf("%s.%d", storeKey, i)
}

// loadConfig takes one interface's configuration from the store under key,
// or else c, which it stores.
func loadConfig(ctx context.Context, st *store.Client, key string, c Config) (Config, string, error) {
	if b, ok, err := st.Get(ctx, storeNS, key); err != nil {
		log.Printf("store: %v; using the kernel command line", err)
	} else if ok {
		sc, err := UnmarshalConfig(b)
		if err == nil {
			return sc, "the store", nil
		}
		log.Printf("store: %v; using the kernel command line", err)
	}
	c.MAC = [6]byte{0x02} // a placeholder until the driver says; not stored
	if err := c.Validate(); err != nil {
		return Config{}, "", fmt.Errorf("configuration: %w", err)
	}
	if err := st.Put(ctx, storeNS, key, MarshalConfig(c)); err != nil {
		log.Printf("store: saving the configuration: %v", err)
	}
	return c, "the kernel command line", nil
}

// Attach starts talking to a (new generation of a) neighbour: everything
// the previous one left unanswered is resubmitted with new ids, so its late
// replies, if any, are ignored.
func (s *server) Attach(p *wiring.Peer) {
	l := s.links[p.Name]
	if l == nil {
		l = s.newLink(p.Name)
		s.links[p.Name] = l
	} else if l.peer != nil {
		l.peer.Retire(s.release)
	}
	l.peer = p
	// What the previous generation asked for is not this one's: it
	// resubmits what it still wants.
	s.held = slices.DeleteFunc(s.held, func(h heldOutput) bool { return h.l == l })
	l.queue = l.out.Resubmit()
	resent := len(l.queue)
	if l.nic != nil {
		for l.nic.posted < s.o.RxPosted {
			if !s.postRX(l) {
				break
			}
		}
		s.request(l, link.OpInfo.Msg(pool.Ref{}))
		for _, g := range l.nic.groups {
			s.request(l, link.OpMulticast.Msg(pool.Ref{}, link.MACToArg(g), 1))
		}
	}
	log.Printf("%s generation %d: %d requests resubmitted", p.Name, p.Generation, resent)
}

// newLink is the link to the neighbour name; a driver's knows its
// interface.
func (s *server) newLink(name string) *peerLink {
	for _, n := range s.nics {
		if n.driver == name {
			return &peerLink{name: name, nic: n, out: channel.NewOutstanding(s.rx.Len()+s.tx.Len()+16, 1)}
		}
	}
	return &peerLink{name: name, out: channel.NewOutstanding(64<<10, 1)}
}

// postRX posts a free receive buffer to the driver on drv, and reports
// whether it did.
func (s *server) postRX(drv *peerLink) bool {
	ref, ok := s.rx.Alloc()
	return ok && s.repostRX(drv, ref)
}

// repostRX posts the receive buffer ref to the driver on drv, and reports
// whether it did (else ref is back in its pool).
func (s *server) repostRX(drv *peerLink, ref pool.Ref) bool {
	if !s.request(drv, link.OpRx.Msg(ref)) {
		return false
	}
	drv.nic.posted++
	return true
}

// request queues a new request to a neighbour. Beyond MaxLinkQueue, or
// with the outstanding table full, it is not made: its buffer goes back
// to its pool, and request reports false.
func (s *server) request(l *peerLink, m channel.Msg) bool {
	var err error
	if len(l.queue) < cmp.Or(s.maxLinkQueue, MaxLinkQueue) {
		if m, err = l.out.Add(m); err == nil {
			l.send(m)
			return true
		}
	}
	if s.linkQueueDrops++; s.linkQueueDrops&(s.linkQueueDrops-1) == 0 { // 1, 2, 4, 8...: never a log flood
		log.Printf("request to %s not made (%d so far): %d messages queued, %v", l.name, s.linkQueueDrops, len(l.queue), err)
	}
	if p := s.poolOf(m.Ref); p != nil && !m.Ref.IsZero() {
		p.MustFree(m.Ref)
	}
	return false
}

// poolOf is the pool of ours ref is in, or nil.
func (s *server) poolOf(ref pool.Ref) *pool.Pool {
	for _, p := range []*pool.Pool{s.rx, s.tx, s.txBig, s.up, s.upSmall} {
		if p != nil && p.ID() == ref.Pool {
			return p
		}
	}
	return nil
}

// offloads are what IP offers its transports: the drivers' checksum
// insertion, and their segmentation if there is a pool for big frames.
func (s *server) offloads() uint64 {
	var o uint64
	if s.features&link.FeatureChecksum != 0 {
		o |= ops.OffloadChecksum
		if s.features&link.FeatureTSO != 0 && s.txBig != nil {
			o |= ops.OffloadTSO
		}
	}
	return o
}

// sendFrame hands frame to n's driver with OpTx's Arg[0]: in the buffer
// lent to build it in (lend), or copied into a TX buffer — one of the big
// pool if it is longer than a small one.
func (s *server) sendFrame(n *nic, frame []byte, offload uint64) error {
	l := s.links[n.driver]
	if l == nil {
		s.drops++
		return errors.New("ip: no driver")
	}
	ref, ok := s.takeLent(frame)
	if ok {
		s.sentInPlace += uint64(len(frame))
	} else {
		p := s.txPool(len(frame))
		if p == nil || len(frame) > p.BufSize() {
			s.drops++
			return ErrTooBig
		}
		if ref, ok = p.Alloc(); !ok {
			s.drops++
			return errors.New("ip: transmit pool exhausted")
		}
		buf, _ := p.Bytes(ref)
		ref.Len = uint32(copy(buf, frame))
		s.sentCopied += uint64(len(frame))
	}
	if s.filtering() && isIP(frame) {
		return s.filterOut(n, ref, offload)
	}
	if !s.request(l, link.OpTx.Msg(ref, offload)) {
		return errors.New("ip: the driver's queue is full")
	}
	return nil
}

// transportLink is the Stack's Transport for one transport server: it
// hands the datagram over in an "ip.up" buffer (up).
type transportLink struct {
	s    *server
	name string
}

func (t *transportLink) Deliver(uint8, netip.Addr, netip.Addr, []byte) {
	panic("ip: transportLink gets whole datagrams") // the Stack prefers DeliverDatagram
}

func (t *transportLink) DeliverDatagram(ip header.IPv4, verified bool) {
	if ref, at, l, ok := t.up(ip[:ip.TotalLength()]); ok {
		// The addresses and where the transport header starts, so that
		// no transport parses IP (servers/ops), its ECN codepoint, and
		// whether the device verified its checksum.
		m := ops.Deliver(ref, ip.Src(), ip.Dst(), at+ip.HeaderLength())
		ops.SetDeliverECN(&m, ip.TOS()&3)
		ops.SetDeliverVerified(&m, verified)
		t.s.request(l, m)
	}
}

// DeliverError hands the transport an ICMP error about a datagram it sent,
// with IP's path MTU estimate in place of the router's next-hop MTU
// (servers/ops: OpDeliverError).
func (t *transportLink) DeliverError(ip header.IPv4, pathMTU int) {
	ref, at, l, ok := t.up(ip[:ip.TotalLength()])
	if !ok {
		return
	}
	if pathMTU > 0 {
		b, _ := t.s.upBuffer(ref).Bytes(ref)
		header.ICMPv4(b[at+ip.HeaderLength():]).SetMTU(uint16(pathMTU))
	}
	t.s.request(l, ops.DeliverError(ref, ip.Src(), ip.Dst(), at+ip.HeaderLength()))
}

// up puts a whole datagram, either family, in a buffer of the "ip.up"
// pools for the transport: the buffer its frame was parsed in, if it came
// whole in one (handOver), else a copy. It returns the buffer, where the
// datagram starts in it, and the transport's link; false if there is no
// transport or no buffer (counted in drops).
func (t *transportLink) up(dgram []byte) (ref pool.Ref, at int, l *peerLink, ok bool) {
	s := t.s
	if l = s.links[t.name]; l == nil {
		s.drops++
		return pool.Ref{}, 0, nil, false
	}
	if ref, ok = s.handOver(dgram); ok {
		s.deliveredInPlace += uint64(len(dgram))
		return ref, upHeadroom, l, true
	}
	p := s.upPool(len(dgram))
	ref, ok = p.Alloc()
	if !ok && p != s.up {
		p = s.up
		ref, ok = p.Alloc()
	}
	if !ok {
		s.drops++
		return pool.Ref{}, 0, nil, false
	}
	buf, _ := p.Bytes(ref)
	at = s.headroom(ref)
	ref.Len = uint32(at + copy(buf[at:], dgram))
	s.deliveredCopied += uint64(len(dgram))
	return ref, at, l, true
}

// handOver gives up the buffer of the frame being parsed if dgram is that
// frame's datagram, after its link header (not reassembled, not rebuilt),
// and returns it with Len covering both: ip must not touch it again until
// the transport's reply. The next frame is parsed in another buffer.
func (s *server) handOver(dgram []byte) (pool.Ref, bool) {
	f := s.parsing
	if len(dgram) == 0 || len(f) < upHeadroom+len(dgram) || &f[upHeadroom] != &dgram[0] {
		return pool.Ref{}, false
	}
	ref := s.parse
	ref.Len = uint32(upHeadroom + len(dgram))
	s.parse, s.parsing = pool.Ref{}, nil
	return ref, true
}

// DeliverDatagram6 hands an IPv6 datagram over as DeliverDatagram does an
// IPv4 one: whole, with its transport header at off (after the extension
// headers).
func (t *transportLink) DeliverDatagram6(h header.IPv6, off int, verified bool) {
	if upHeadroom+off > ops.MaxDeliverOffset {
		t.s.drops++ // extension headers no real sender writes: more than OpDeliver can say
		return
	}
	if ref, at, l, ok := t.up(h); ok {
		m := ops.Deliver(ref, h.Src(), h.Dst(), at+off)
		ops.SetDeliverECN(&m, h.TrafficClass()&3)
		ops.SetDeliverVerified(&m, verified)
		t.s.request(l, m)
	}
}

// upPool is the pool for a delivered datagram of n bytes.
func (s *server) upPool(n int) *pool.Pool {
	if s.upSmall != nil && upHeadroom+n <= s.upSmall.BufSize() {
		return s.upSmall
	}
	return s.up
}

// headroom is where the datagram starts in the delivery buffer ref.
func (s *server) headroom(ref pool.Ref) int {
	if s.upSmall != nil && ref.Pool == s.upSmall.ID() {
		return upHeadroom
	}
	return 0
}

// upBuffer is the delivery pool a Ref of ours names.
func (s *server) upBuffer(ref pool.Ref) *pool.Pool {
	if s.upSmall != nil && ref.Pool == s.upSmall.ID() {
		return s.upSmall
	}
	return s.up
}

// poll moves requests and replies once; it reports whether anything moved.
func (s *server) poll() bool {
	work := false
	for _, l := range s.links {
		work = s.pollLink(l) || work
	}
	return work
}

// pollLink moves l's replies and requests once; it reports whether
// anything moved.
func (s *server) pollLink(l *peerLink) bool {
	if l.peer == nil {
		return false // pf, before its first generation: questions wait
	}
	port := l.peer.Port
	n := port.Recv(s.in)
	for _, m := range s.in[:n] {
		s.handle(l, m)
	}
	var sent int
	if s.isTransport(l) {
		l.queue, sent = channel.FlushLazyIf(port, l.queue, isOutputReply)
	} else {
		l.queue, sent = channel.Flush(port, l.queue)
	}
	return n > 0 || sent > 0
}

// isTransport reports whether l's neighbour is a transport: neither a
// driver nor the packet filter.
func (s *server) isTransport(l *peerLink) bool {
	return l.nic == nil && !(s.filtering() && l.name == s.o.Filter)
}

// Lazy replies
//
// A reply that only gives a neighbour its buffer back need not wake it:
// it goes lazily (kernel/channel: SendLazy), and the neighbour finds it
// when something else wakes it, unless it sleeps impatiently, which it
// does when it runs short of buffers. IP answers the transports' OpOutput
// so; the drivers answer IP's transmissions so, and the transports IP's
// deliveries that went well.

// isOutputReply reports whether m, to a transport, is the answer to its
// OpOutput (IP sends a transport no OpOutput of its own).
func isOutputReply(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOutput }

// buffersToSpare reports whether ip may sleep through the drivers'
// transmit completions, which they send lazily (drivers/nic: flush): it
// holds no segment waiting for a buffer and has a quarter of each
// transmit pool free. Otherwise a completion wakes it.
func (s *server) buffersToSpare() bool {
	return len(s.held) == 0 && plenty(s.tx) && plenty(s.txBig)
}

// upToSpare reports whether ip may sleep through the transports' answers
// to its deliveries: a quarter of each pool it delivers in is free.
func (s *server) upToSpare() bool { return plenty(s.up) && plenty(s.upSmall) }

// plenty is pool.Plenty, true of a pool ip does not have.
func plenty(p *pool.Pool) bool { return p == nil || p.Plenty() }

// handle takes one message from a neighbour. The channel it came on says
// which protocol it speaks: drivers/link with the driver, servers/pf/verdict
// with the filter, servers/ops with a transport.
func (s *server) handle(l *peerLink, m channel.Msg) {
	switch {
	case l.nic != nil:
		s.fromDriver(l, m)
	case s.filtering() && l.name == s.o.Filter:
		s.fromFilter(l, m)
	default:
		s.fromTransport(l, m)
	}
}

// fromDriver takes the driver's reply to one of IP's requests.
func (s *server) fromDriver(l *peerLink, m channel.Msg) {
	req, ok := l.out.CompleteFrom(l.peer.Port, m)
	if !ok {
		return // a reply to a request already resubmitted elsewhere
	}
	n := l.nic
	switch link.OpOf(req) {
	case link.OpRx:
		n.posted--
		if link.StatusOf(m) == link.StatusOK && n.stack != nil {
			ref := req.Ref
			ref.Len = m.Ref.Len
			shared, err := s.rx.Bytes(ref)
			if err == nil && s.filtering() && isIP(shared) {
				s.filterIn(l, ref) // handled when pf has judged it
				return
			}
			if err == nil {
				n.stack.HandleFrameChecked(s.receive(shared), m.Arg[0])
			}
		} else if link.StatusOf(m) == link.StatusOK && s.dhcp != nil {
			ref := req.Ref
			ref.Len = m.Ref.Len
			if shared, err := s.rx.Bytes(ref); err == nil {
				s.dhcpFrame(n, s.private(shared))
			}
		}
		// The Stack copied what it keeps: post the buffer again
		// (repostRX, by hand: the path of every received frame).
		if s.request(l, link.OpRx.Msg(req.Ref)) {
			n.posted++
		}
	case link.OpTx:
		if s.txBig != nil && req.Ref.Pool == s.txBig.ID() {
			s.txBig.MustFree(req.Ref)
		} else {
			s.tx.MustFree(req.Ref)
		}
		s.releaseHeld()
	case link.OpInfo:
		n.mac, n.haveMAC = link.ArgToMAC(m.Arg[0]), true
		n.features = m.Arg[2]
		s.features = ^uint64(0)
		for _, other := range s.nics {
			s.features &= other.features
		}
	}
}

// receive copies a received frame out of shared memory into a buffer of
// ip's own, which the Stack then parses at leisure: one of UpSmallPool if
// it fits and one is free, so that its datagram can go to a transport in
// it (handOver), else s.frame (private).
func (s *server) receive(shared []byte) []byte {
	s.parsing = nil
	if s.upSmall == nil || len(shared) > s.upSmall.BufSize() {
		return s.private(shared)
	}
	if s.parse.IsZero() {
		if s.parse, _ = s.upSmall.Alloc(); s.parse.IsZero() {
			return s.private(shared) // all with the transports
		}
	}
	buf, _ := s.upSmall.Bytes(s.parse)
	s.parsing = buf[:copy(buf, shared)]
	return s.parsing
}

// private copies a frame out of shared memory into s.frame, which the Stack
// may then parse at leisure.
func (s *server) private(shared []byte) []byte {
	if cap(s.frame) < len(shared) {
		s.frame = make([]byte, s.rx.BufSize())
	}
	return s.frame[:copy(s.frame[:len(shared)], shared)]
}

// fromTransport takes a transport's request, or its reply to an
// OpDeliver.
func (s *server) fromTransport(l *peerLink, m channel.Msg) {
	switch ops.OpOf(m) {
	case ops.OpOutput:
		s.output(l, m)
		return
	case ops.OpAddr:
		r := m
		ops.SetStatus(&r, ops.StatusOK)
		if s.stack != nil {
			c := s.stack.Config()
			ops.SetAddrReply(&r, c.Addr, s.offloads())
		} else {
			ops.SetStatus(&r, ops.StatusError) // not up yet: ask again
		}
		l.send(r)
		return
	case ops.OpSource:
		l.send(s.source(m))
		return
	}
	req, ok := l.out.CompleteFrom(l.peer.Port, m)
	if !ok {
		return // a reply to a request already resubmitted elsewhere
	}
	switch ops.OpOf(req) {
	case ops.OpDeliverError:
		s.upBuffer(req.Ref).MustFree(req.Ref)
	case ops.OpDeliver:
		if ops.StatusOf(m) == ops.StatusNoPort && s.stack != nil {
			if b, err := s.upBuffer(req.Ref).Bytes(req.Ref); err == nil && isIPv6Datagram(b[s.headroom(req.Ref):]) {
				s.stack.SendUnreachable6(b[s.headroom(req.Ref):])
			} else if err == nil {
				s.stack.SendUnreachable(header.ICMPv4PortUnreachable, b[s.headroom(req.Ref):])
			}
		}
		s.upBuffer(req.Ref).MustFree(req.Ref)
	}
}

// source answers a transport's OpSource: the address the stack would
// send to the destination from, or why there is none.
func (s *server) source(m channel.Msg) channel.Msg {
	r := m
	if s.stack == nil {
		ops.SetStatus(&r, ops.StatusNetUnreach) // not up yet
		return r
	}
	src, err := s.stack.Source(ops.GetAddr(m, ops.AtArg0).IP())
	switch {
	case errors.Is(err, ErrNoAddress):
		ops.SetStatus(&r, ops.StatusAddrNotAvail)
	case err != nil:
		ops.SetStatus(&r, ops.StatusNetUnreach)
	default:
		ops.SetStatus(&r, ops.StatusOK)
		ops.PutAddr(&r, ops.AtArg0, ops.MakeAddr(src, 0))
	}
	return r
}

// output sends a transport's segment and answers its request, or holds it
// until a transmit buffer is free (behind any held before it).
func (s *server) output(l *peerLink, m channel.Msg) {
	if len(s.held) >= cmp.Or(s.maxHeld, MaxHeld) {
		s.throttled++
		s.refused++
		r := m
		ops.SetStatus(&r, ops.StatusNoBuffers)
		l.send(r)
		return
	}
	if len(s.held) > 0 || !s.txRoom(m) {
		s.held = append(s.held, heldOutput{l, m})
		s.deferred++
		return
	}
	s.outputNow(l, m)
}

// releaseHeld sends the held segments a transmit buffer is free for, in
// order.
func (s *server) releaseHeld() {
	for len(s.held) > 0 && s.txRoom(s.held[0].m) {
		h := s.held[0]
		s.held[0] = heldOutput{}
		s.held = s.held[1:]
		s.outputNow(h.l, h.m)
	}
}

// txRoom reports whether the pool the segment's frame will go in has a
// free buffer, and the packet filter room for a question about it. (A
// segment that needs none now, waiting for ARP, or more than one, as
// fragments, may still fail: it is refused as before.)
func (s *server) txRoom(m channel.Msg) bool {
	p := s.txPool(int(m.Ref.Len) + header.EthernetMinimumSize + header.IPv4MinimumSize)
	if p == nil {
		return true // too big: refused at once
	}
	lent := !s.lent.IsZero() && s.lent.Pool == p.ID() // lend gives it again
	return (p.Available() > 0 || lent) && !s.filterFull()
}

// lend returns n bytes of a transmit buffer for the Stack to build a
// frame in, which sendFrame then sends as it is: the one lent before if
// it was not sent and is of the right pool, else a new one (nil: none
// free). ip holds at most one lent buffer; outputNow takes it back.
func (s *server) lend(n int) []byte {
	p := s.txPool(n)
	if p == nil || n > p.BufSize() {
		return nil
	}
	if !s.lent.IsZero() && s.lent.Pool != p.ID() {
		s.returnLent()
	}
	if s.lent.IsZero() {
		ref, ok := p.Alloc()
		if !ok {
			return nil
		}
		s.lent = ref
	}
	buf, err := p.Bytes(s.lent)
	if err != nil || len(buf) < n {
		return nil
	}
	return buf[:n]
}

// takeLent returns the lent buffer, with Len set, if frame was built in
// it, and it is no longer lent.
func (s *server) takeLent(frame []byte) (pool.Ref, bool) {
	if s.lent.IsZero() || len(frame) == 0 {
		return pool.Ref{}, false
	}
	p := s.txPool(len(frame))
	if p == nil || p.ID() != s.lent.Pool {
		return pool.Ref{}, false
	}
	buf, err := p.Bytes(s.lent)
	if err != nil || len(buf) < len(frame) || &buf[0] != &frame[0] {
		return pool.Ref{}, false
	}
	ref := s.lent
	ref.Len = uint32(len(frame))
	s.lent = pool.Ref{}
	return ref, true
}

// returnLent frees the lent buffer, if the Stack did not send it (it
// refused the datagram after asking for one).
func (s *server) returnLent() {
	if s.lent.IsZero() {
		return
	}
	if s.txBig != nil && s.lent.Pool == s.txBig.ID() {
		s.txBig.MustFree(s.lent)
	} else {
		s.tx.MustFree(s.lent)
	}
	s.lent = pool.Ref{}
}

// txPool is the transmit pool a frame of n bytes goes in: ip.tx, or for a
// larger one ip.tx.big (nil without segmentation offload).
func (s *server) txPool(n int) *pool.Pool {
	if n <= s.tx.BufSize() {
		return s.tx
	}
	return s.txBig
}

// outputNow sends a transport's segment and answers its request.
func (s *server) outputNow(l *peerLink, m channel.Msg) {
	r := m
	ops.SetStatus(&r, ops.StatusOK)
	p := l.peer.Pool(m.Ref.Pool)
	seg, err := []byte(nil), error(nil)
	if p != nil {
		seg, err = p.Bytes(m.Ref)
	}
	dst := ops.GetAddr(m, ops.AtArg0).IP()
	offload := ops.OutputOffload(m)
	switch {
	case p == nil || err != nil:
		ops.SetStatus(&r, ops.StatusInvalid)
	case s.stack == nil:
		ops.SetStatus(&r, ops.StatusNoRoute)
	default:
		o := Offload{Checksum: offload&ops.OffloadChecksum != 0, MSS: ops.TSOMSS(offload), ECN: ops.OutputECN(m)}
		if dst.Is4() && (o.Checksum && s.offloads()&ops.OffloadChecksum == 0 || o.MSS > 0 && s.offloads()&ops.OffloadTSO == 0) {
			ops.SetStatus(&r, ops.StatusInvalid) // not offered
			break
		}
		var err error
		if dst.Is4() {
			err = s.stack.OutputFrom(ops.OutputProto(m), ops.OutputSource(m), dst, seg, o)
		} else {
			err = s.stack.OutputTransport6ECN(ops.OutputProto(m), ops.OutputSource(m), dst, seg, o.Checksum, o.ECN)
		}
		switch {
		case errors.Is(err, ErrNotOurs):
			ops.SetStatus(&r, ops.StatusInvalid)
		case errors.Is(err, ErrNoRoute):
			ops.SetStatus(&r, ops.StatusNoRoute)
		case errors.Is(err, ErrTooBig):
			ops.SetStatus(&r, ops.StatusTooBig)
		case err != nil:
			ops.SetStatus(&r, ops.StatusError)
		}
	}
	s.returnLent()
	if ops.StatusOf(r) != ops.StatusOK {
		s.refused++
	}
	l.send(r)
}

func (s *server) publish() {
	st := Stats{Generation: s.gen, Driver: s.nics[0].driver, NoPeerDrops: s.drops,
		RxPoolFree: s.rx.Available(), TxPoolFree: s.tx.Available(), UpPoolFree: s.up.Available()}
	if s.upSmall != nil {
		st.UpSmallPoolFree = s.upSmall.Available()
	}
	if s.txBig != nil {
		st.TxBigPoolFree = s.txBig.Available()
	}
	st.Offloads = s.offloads()
	st.OutputsHeld, st.OutputsDeferred, st.OutputsRefused = len(s.held), s.deferred, s.refused
	st.OutputsThrottled, st.LinkQueueDrops = s.throttled, s.linkQueueDrops
	st.DeliveredInPlace, st.DeliveredCopied = s.deliveredInPlace, s.deliveredCopied
	st.SentInPlace, st.SentCopied = s.sentInPlace, s.sentCopied
	for _, n := range s.nics {
		st.Ifaces = append(st.Ifaces, s.ifaceStats(n))
	}
	st.DriverGeneration, st.Outstanding = st.Ifaces[0].DriverGeneration, st.Ifaces[0].Outstanding
	if l := s.links[s.o.Filter]; l != nil {
		st.Filter, st.FilterWaiting = s.o.Filter, l.out.Len()
		if l.peer != nil {
			st.FilterGeneration = l.peer.Generation
		}
	}
	st.FilterPassed, st.FilterBlocked, st.FilterDrops = s.filterPassed, s.filterBlocked, s.filterDrops
	st.Counters = st.Ifaces[0].Counters
	st.DHCP = s.dhcp.stats()
	if s.router != nil {
		for _, r := range s.router.Table() {
			st.Routes = append(st.Routes, r.String())
		}
		st.Forwarding = s.router.Counters()
	}
	s.stats.Publish(st)
}

// ifaceStats are n's statistics.
func (s *server) ifaceStats(n *nic) IfaceStats {
	is := IfaceStats{Driver: n.driver, Addr: n.cfg.Addr.String(), MTU: cmp.Or(n.cfg.MTU, DefaultMTU), RxPosted: n.posted}
	if n.haveMAC {
		is.MAC = header.MAC(n.mac).String()
	}
	if l := s.links[n.driver]; l != nil && l.peer != nil {
		is.DriverGeneration, is.Outstanding = l.peer.Generation, l.out.Len()
	}
	if n.stack != nil {
		is.Counters = n.stack.Counters()
		for _, a := range n.stack.IPv6Addresses() {
			is.IPv6 = append(is.IPv6, fmt.Sprintf("%v %v", a.Prefix, a.State))
		}
	}
	return is
}
