// Package nic is the NIC driver process: it serves the IP server's link
// requests (drivers/link) on a device core (netdev.Device), turning pool
// references into DMA buffers and descriptor completions into replies. It
// is device-neutral: Run picks the NIC family for its PCI function by
// vendor:device ID from a netdev.Registry the driver's main fills (e1000
// today), and nothing here knows a family's registers.
//
// One goroutine does everything: drain requests from the channel (a batch
// at a time), put them on the rings, write each ring's tail once, harvest
// completions, send the replies as one batch. While there is work it polls,
// and spinRounds empty polls more; then it sleeps on the device's
// interrupt, the channel's wake-up and the wiring socket at once (sleep and
// settle in run.go). A device that moderates its interrupts gets a spacing
// chosen by the load (moderate.go): none when idle, longer as the link gets
// busier. Timing, in the published Stats, shows how the loop waits: IP's
// turn-around, the empty polls, the moderation's class.
//
// # Restart protocol
//
// A driver process starts by quiescing its device (the family's Quiesce: no
// DMA into anything the previous generation posted), then joins the wiring
// (kernel/wiring), resets the device on its persistent ring region, and
// serves. It keeps no state: IP resubmits every request the previous
// generation left unanswered. (Under VFIO the function is also reset through
// the kernel where it can be, and the pools are mapped for the device anew:
// backend.go.) When IP restarts, the driver gets a channel to
// the new generation: it resets the device (forgetting the old generation's
// buffers, whose owner is gone), releases the old pools to init, and serves
// the new IP.
//
// # Frame generator
//
// Booted with keepnet.pktgen, the first generation of the first NIC's
// driver runs a frame generator before it serves (pktgen.go): the driver
// alone, with no stack above it, sends frames as fast as the device takes
// them and counts what arrives, which is the emulated NIC's ceiling on the
// machine; it publishes the result and then serves as usual.
//
// # Watchdog
//
// A device that stops on its own (a transmit hang, a receive stall) is
// reset by the loop's watchdog while serving the same IP generation, its
// buffers requeued; see watchdog.go. A loop that stops is init's business:
// it answers init's pings on the wiring socket (kernel/wiring, "Hang
// detection"), and a silent one is restarted.
package nic

import (
	"fmt"
	"slices"
	"time"

	"keepnet/drivers/link"
	"keepnet/drivers/netdev"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

// Peer is the IP server generation being served: its channel and the pools
// its references point into.
type Peer struct {
	Name       string
	Generation int
	Port       channel.Port
	Pools      []*pool.Pool
}

// Counters are the loop's own counts, beside the device's.
type Counters struct {
	Requests, Replies uint64
	BadRefs           uint64 // requests whose ref is not in a peer pool
	Resets            uint64 // device resets: for a new IP generation, or by the watchdog
	TxHangResets      uint64 // by the watchdog: transmit hang (watchdog.go)
	RxStallResets     uint64 // by the watchdog: receive stall
	Throttled         uint64 // requests answered StatusThrottled: MaxWaiting were waiting
	OutboxStalls      uint64 // rounds that took no request: MaxOutbox replies waited for room
}

// Bounds on what the loop holds (issue 11). Both are far above what IP
// posts (its pools bound it); they keep a peer that misbehaves from
// growing the driver's memory.
const (
	// MaxWaiting bounds each of the RX and TX queues of requests waiting
	// for room on the ring; beyond it a request is answered at once with
	// link.StatusThrottled, counted in Throttled.
	MaxWaiting = 4096
	// MaxOutbox bounds the replies waiting for room in the channel: while
	// that many wait, the loop takes no new request (the peer is not
	// reading its replies), counted in OutboxStalls.
	MaxOutbox = 4096
)

// Translate gives the host view and the device address of a buffer.
type Translate func(p *pool.Pool, ref pool.Ref) (mem []byte, addr uint64, err error)

// Physical is the real Translate: the device sees physical memory
// (uio_pci_generic has no IOMMU mapping), translated once per huge page.
func Physical(p *pool.Pool, ref pool.Ref) ([]byte, uint64, error) {
	mem, err := p.Bytes(ref)
	if err != nil {
		return nil, 0, err
	}
	addr, err := p.Phys(ref)
	return mem, addr, err
}

// Driver serves one peer at a time on one device.
type Driver struct {
	dev       netdev.Device
	translate Translate
	peer      *Peer
	// pools maps a pool id to the peer's pool.
	pools map[uint32]*pool.Pool

	// pending holds the requests the device has, by cookie (the index).
	pending []channel.Msg
	free    []uint64
	// waiting are requests the rings had no room for, oldest first.
	waitRX, waitTX []channel.Msg
	// outbox holds replies the channel had no room for.
	outbox []channel.Msg

	in       []channel.Msg // receive batch buffer
	counters Counters
	// onRX and onTX are d.received and d.sent, made once: a method value
	// passed through the Device interface escapes, so taking it in every
	// Poll allocated twice per pass, idle passes included.
	onRX func(cookie uint64, frame []byte, check netdev.RxCheck)
	onTX func(cookie uint64)
	// maxWaiting and maxOutbox are MaxWaiting and MaxOutbox, or what a
	// test sets.
	maxWaiting, maxOutbox int
	watch                 watchdog
	// groups are the multicast groups IP joined (OpMulticast).
	groups [][6]byte
	// probe is a receive buffer of the driver's own on the ring (PostProbe),
	// or nil.
	probe *probe

	// now is the clock of Timing and the moderation: time.Now, or a
	// test's.
	now    func() time.Time
	timing Timing
	// handedUp is when replies went up to a peer that has sent no
	// request since; zero when it has.
	handedUp time.Time
	mod      moderation
	// moderator is dev when it moderates its interrupts, else nil.
	moderator netdev.Moderator
}

// probe is a buffer PostProbe put on the receive ring: no request of IP's,
// so no reply goes out for it; done is called instead.
type probe struct {
	buf    netdev.Buffer
	posted bool // on the ring, as cookie; else waiting for room
	cookie uint64
	done   func(frame []byte)
}

// PostProbe puts b on the receive ring as a buffer of the driver's own (a
// test hook's: its address may be anything), ahead of IP's buffers as soon
// as there is room (IP keeps the ring full: a received frame makes room);
// done gets the frame the device reports in it, or nil when a reset takes
// it back. One at a time: false when one is out already.
func (d *Driver) PostProbe(b netdev.Buffer, done func(frame []byte)) bool {
	if d.probe != nil {
		return false
	}
	d.probe = &probe{buf: b, done: done}
	d.postProbe()
	return true
}

// postProbe puts the probe on the ring if it waits and there is room.
func (d *Driver) postProbe() {
	p := d.probe
	if p == nil || p.posted || d.dev.RxFree() == 0 {
		return
	}
	b := p.buf
	b.Cookie = d.track(channel.Msg{})
	if !d.dev.PostRX(b) {
		d.untrack(b.Cookie)
		return
	}
	d.dev.FlushRX()
	p.posted, p.cookie = true, b.Cookie
}

// isProbe tells whether cookie is the probe's.
func (d *Driver) isProbe(cookie uint64) bool {
	return d.probe != nil && d.probe.posted && cookie == d.probe.cookie
}

// BatchSize is how many requests the loop drains per iteration.
const BatchSize = 64

// New makes a driver for dev, which must have been Reset on its rings. A
// device that moderates its interrupts starts in the idle class: no
// spacing.
func New(dev netdev.Device, translate Translate) *Driver {
	d := &Driver{dev: dev, translate: translate, in: make([]channel.Msg, BatchSize),
		maxWaiting: MaxWaiting, maxOutbox: MaxOutbox, now: time.Now}
	d.onRX, d.onTX = d.received, d.sent
	if m, ok := dev.(netdev.Moderator); ok {
		d.moderator = m
		m.SetInterruptInterval(d.mod.class.Interval())
	}
	return d
}

// Timing returns how the loop waits, and the moderation's class.
func (d *Driver) Timing() Timing {
	t := d.timing
	t.Class, t.ClassChanges = d.mod.class.String(), d.mod.changes
	if d.moderator != nil {
		t.Interval = d.mod.class.Interval()
	}
	return t
}

// Moderate samples the load at now (the loop calls it on every round, Poll
// when it hands replies up) and sets the device's interrupt spacing when the
// class changes (moderate.go).
func (d *Driver) Moderate(now time.Time) {
	if d.mod.sample(now, d.counters.Replies) && d.moderator != nil {
		d.moderator.SetInterruptInterval(d.mod.class.Interval())
	}
}

// Counters returns the loop's counts.
func (d *Driver) Counters() Counters { return d.counters }

// Peer is the generation being served, or nil.
func (d *Driver) Peer() *Peer { return d.peer }

// peerWakeups is how many times the channel to the peer woke it (0 for
// one that is not a kernel/channel Endpoint).
func (d *Driver) peerWakeups() uint64 {
	if d.peer == nil {
		return 0
	}
	if ep, ok := d.peer.Port.(*channel.Endpoint); ok {
		return ep.Wakeups()
	}
	return 0
}

// Adopt starts serving p. If another peer was served, the device is reset
// first: its buffers belonged to a generation that is gone. Adopt returns
// the pools of the previous peer, which the caller releases (to init) and
// closes.
func (d *Driver) Adopt(p *Peer) ([]*pool.Pool, error) {
	var old []*pool.Pool
	if d.peer != nil {
		if _, err := d.dev.Reset(); err != nil {
			return nil, fmt.Errorf("nic: reset for %s generation %d: %w", p.Name, p.Generation, err)
		}
		d.counters.Resets++
		old = d.peer.Pools
		d.peer.Port.Close()
	}
	d.peer = p
	d.pools = make(map[uint32]*pool.Pool, len(p.Pools))
	for _, pl := range p.Pools {
		d.pools[pl.ID()] = pl
	}
	d.pending, d.free = d.pending[:0], d.free[:0]
	d.waitRX, d.waitTX, d.outbox = nil, nil, nil
	if d.probe != nil {
		d.probe.done(nil)
		d.probe = nil
	}
	d.watch = watchdog{}
	d.handedUp = time.Time{}
	return old, nil
}

// Poll does one round of work and reports whether there was any.
func (d *Driver) Poll() bool {
	if d.peer == nil {
		return false
	}
	work := false
	n := 0
	if len(d.outbox) < d.maxOutbox {
		n = d.peer.Port.Recv(d.in)
	} else {
		d.counters.OutboxStalls++
	}
	if n > 0 && !d.handedUp.IsZero() {
		d.timing.turnaround(d.now().Sub(d.handedUp))
		d.handedUp = time.Time{}
	}
	for _, m := range d.in[:n] {
		d.counters.Requests++
		d.handle(m)
	}
	work = n > 0

	d.postProbe()
	d.waitRX = drain(d.waitRX, d.post)
	d.waitTX = drain(d.waitTX, d.transmit)
	d.dev.FlushTX()
	if d.dev.PollRX(d.onRX) > 0 {
		work = true
	}
	d.dev.FlushRX() // after the harvest: it knows how many buffers the device still holds
	if d.dev.PollTX(d.onTX) > 0 {
		work = true
	}
	var sent int
	d.outbox, sent = d.flush()
	d.counters.Replies += uint64(sent)
	work = work || sent > 0
	if sent > 0 && d.handedUp.IsZero() {
		d.handedUp = d.now()
		d.Moderate(d.handedUp)
	}
	if !work {
		d.timing.EmptyPolls++
	}
	return work
}

// flush hands IP the replies waiting in the outbox; lazily if they are all
// transmit completions, which only give IP its buffers back: a sleeping IP
// takes them when a frame or a transport wakes it, and sleeps impatiently
// (channel.Endpoint.SetPatient) when it runs short of buffers. A ping's
// answer then costs IP one wake-up, not two.
func (d *Driver) flush() (rest []channel.Msg, sent int) {
	return channel.FlushLazyIf(d.peer.Port, d.outbox, isCompletion)
}

// isCompletion reports whether m is the reply to a transmission.
func isCompletion(m channel.Msg) bool { return link.OpOf(m) == link.OpTx }

// drain hands the queued requests to put, oldest first, until it refuses
// one (its ring is full), and returns what is left, moved to the front so
// that the queue's array is reused rather than regrown.
func drain(q []channel.Msg, put func(channel.Msg) bool) []channel.Msg {
	n := 0
	for n < len(q) && put(q[n]) {
		n++
	}
	if n == 0 {
		return q
	}
	return q[:copy(q, q[n:])]
}

// Idle reports whether the loop has nothing it could do before the device
// or the channel moves: a caller may sleep then. Requests waiting for room
// on a full ring do not count; the device's interrupt (a frame received, a
// transmission written back) is what makes room. IP posts more receive
// buffers than the ring holds, so waitRX is rarely empty.
func (d *Driver) Idle() bool {
	return len(d.outbox) == 0 &&
		(len(d.waitRX) == 0 || d.dev.RxFree() == 0) &&
		(len(d.waitTX) == 0 || d.dev.TxFree() == 0)
}

func (d *Driver) handle(m channel.Msg) {
	switch link.OpOf(m) {
	case link.OpRx:
		// In order: behind buffers already waiting for room.
		if len(d.waitRX) > 0 || !d.post(m) {
			d.waitRX = d.wait(d.waitRX, m)
		}
	case link.OpTx:
		if len(d.waitTX) > 0 || !d.transmit(m) {
			d.waitTX = d.wait(d.waitTX, m)
		}
	case link.OpInfo:
		r := m
		link.SetStatus(&r, link.StatusOK)
		r.Arg[0] = link.MACToArg(d.dev.MAC())
		r.Arg[1] = 0
		if d.dev.LinkUp() {
			r.Arg[1] = 1
		}
		r.Arg[2] = linkFeatures(d.dev.Features())
		d.reply(r)
	case link.OpMulticast:
		d.multicast(m)
	default:
		r := m
		link.SetStatus(&r, link.StatusBadRef)
		d.reply(r)
	}
}

// multicast joins or leaves the group m names and programs the device's
// filter with the groups joined.
func (d *Driver) multicast(m channel.Msg) {
	r := m
	mc, ok := d.dev.(netdev.Multicaster)
	if !ok {
		link.SetStatus(&r, link.StatusError)
		d.reply(r)
		return
	}
	g := link.ArgToMAC(m.Arg[0])
	i := slices.Index(d.groups, g)
	switch {
	case m.Arg[1] != 0 && i < 0:
		d.groups = append(d.groups, g)
	case m.Arg[1] == 0 && i >= 0:
		d.groups = slices.Delete(d.groups, i, i+1)
	}
	mc.SetMulticast(d.groups)
	link.SetStatus(&r, link.StatusOK)
	d.reply(r)
}

// wait queues m behind q, or answers it StatusThrottled when MaxWaiting
// are there already.
func (d *Driver) wait(q []channel.Msg, m channel.Msg) []channel.Msg {
	if len(q) >= d.maxWaiting {
		d.counters.Throttled++
		r := m
		link.SetStatus(&r, link.StatusThrottled)
		r.Ref.Len = 0
		d.reply(r)
		return q
	}
	return append(q, m)
}

// linkFeatures announces a device's offloads in OpInfo's terms.
func linkFeatures(f netdev.Features) uint64 {
	var v uint64
	if f&netdev.FeatureChecksum != 0 {
		v |= link.FeatureChecksum
	}
	for _, b := range []struct {
		dev  netdev.Features
		link uint64
	}{
		{netdev.FeatureTSO, link.FeatureTSO},
		{netdev.FeatureChecksum6, link.FeatureChecksum6},
		{netdev.FeatureUDPChecksum6, link.FeatureUDPChecksum6},
		{netdev.FeatureTSO6, link.FeatureTSO6},
	} {
		if f&b.dev != 0 {
			v |= b.link
		}
	}
	return v
}

// linkOffload is o in the device's terms.
func linkOffload(o link.Offload) netdev.Offload {
	return netdev.Offload{L3: int(o.L3), L4: int(o.L4), TCP: o.TCP, IPv6: o.IPv6, MSS: int(o.MSS), HdrLen: int(o.HdrLen)}
}

// buffer turns a request's reference into a DMA buffer.
func (d *Driver) buffer(m channel.Msg) (netdev.Buffer, error) {
	p, ok := d.pools[m.Ref.Pool]
	if !ok {
		return netdev.Buffer{}, fmt.Errorf("pool %d unknown", m.Ref.Pool)
	}
	mem, addr, err := d.translate(p, m.Ref)
	if err != nil {
		return netdev.Buffer{}, err
	}
	return netdev.Buffer{Mem: mem, Addr: addr}, nil
}

// post puts an RX request on the ring; false when the ring is full.
func (d *Driver) post(m channel.Msg) bool {
	if d.dev.RxFree() == 0 {
		return false
	}
	b, err := d.buffer(m)
	if err != nil || len(b.Mem) < d.dev.RxBufSize() {
		d.badRef(m)
		return true
	}
	b.Cookie = d.track(m)
	if !d.dev.PostRX(b) {
		d.untrack(b.Cookie)
		return false
	}
	return true
}

// transmit puts a TX request on the ring; false when the ring is full.
func (d *Driver) transmit(m channel.Msg) bool {
	if d.dev.TxFree() == 0 {
		return false
	}
	b, err := d.buffer(m)
	o, offload := link.OffloadFromArg(m.Arg[0])
	if err != nil || !frameFits(len(b.Mem), o, offload) || offload && !d.offers(o) {
		d.badRef(m)
		return true
	}
	b.Cookie = d.track(m)
	var queued bool
	if offload {
		queued = d.dev.TransmitOffload(b, len(b.Mem), linkOffload(o))
	} else {
		queued = d.dev.Transmit(b, len(b.Mem))
	}
	if !queued {
		d.untrack(b.Cookie)
		return false
	}
	return true
}

// maxFrame is the largest Ethernet frame without FCS (or VLAN tag).
const maxFrame = 1514

// frameFits checks a transmit request's length and offload against what
// the device takes: a frame of at most maxFrame bytes, or for segmentation
// headers that fit before the payload and at most link.MaxTSO of payload
// in segments of 64 bytes to a frame's worth.
func frameFits(n int, o link.Offload, offload bool) bool {
	switch {
	case n == 0 || offload && o.L4 > 200: // IPv4 with options behind a VLAN tag ends before 100
		return false
	case !offload || o.MSS == 0:
		return n <= maxFrame && (!offload || int(o.L3) < int(o.L4) && int(o.L4)+8 <= n)
	default:
		hdr := int(o.HdrLen)
		return int(o.L3) < int(o.L4) && int(o.L4)+20 <= hdr && hdr < n && n-hdr <= link.MaxTSO &&
			o.MSS >= 64 && hdr+int(o.MSS) <= maxFrame
	}
}

// offers tells whether the device does what o asks: a device that does
// not announce an offload is never handed a request for it.
func (d *Driver) offers(o link.Offload) bool {
	need := linkOffload(o).Needs()
	return d.dev.Features()&need == need
}

func (d *Driver) badRef(m channel.Msg) {
	d.counters.BadRefs++
	r := m
	link.SetStatus(&r, link.StatusBadRef)
	d.reply(r)
}

func (d *Driver) track(m channel.Msg) uint64 {
	if n := len(d.free); n > 0 {
		c := d.free[n-1]
		d.free = d.free[:n-1]
		d.pending[c] = m
		return c
	}
	d.pending = append(d.pending, m)
	return uint64(len(d.pending) - 1)
}

func (d *Driver) untrack(c uint64) channel.Msg {
	m := d.pending[c]
	d.pending[c] = channel.Msg{}
	d.free = append(d.free, c)
	return m
}

func (d *Driver) received(cookie uint64, frame []byte, check netdev.RxCheck) {
	r := d.untrack(cookie)
	if d.isProbe(cookie) {
		d.probe.done(frame)
		d.probe = nil
		return
	}
	switch {
	case frame == nil:
		link.SetStatus(&r, link.StatusUnused)
		r.Ref.Len = 0
	case check&netdev.RxBad != 0:
		link.SetStatus(&r, link.StatusError)
		r.Ref.Len = uint32(len(frame))
	default:
		link.SetStatus(&r, link.StatusOK)
		r.Ref.Len = uint32(len(frame))
		r.Arg[0] = 0
		if check&netdev.RxL4Checked != 0 {
			r.Arg[0] |= link.RxCheckedL4
		}
		if check&netdev.RxIPv4Checked != 0 {
			r.Arg[0] |= link.RxCheckedIPv4
		}
	}
	d.reply(r)
}

func (d *Driver) sent(cookie uint64) {
	r := d.untrack(cookie)
	link.SetStatus(&r, link.StatusOK)
	d.reply(r)
}

// reply queues a reply; Poll sends the batch.
func (d *Driver) reply(r channel.Msg) {
	d.outbox = append(d.outbox, r)
}
