package tcp

import (
	"encoding/binary"
	"fmt"
	"log"
	"slices"
	"time"
)

// # Connections that outlive the process (issue 12)
//
// A crash of tcp must not lose a connection. What a connection is — its
// sequence numbers, windows, options, RTT and congestion state, SACK
// scoreboard, timers, the socket that holds it, and the bytes in its
// buffers — lives in memory init keeps for tcp across its restarts
// (StateName, boot/hub's kept memory), and a restarted tcp adopts it.
//
// The design follows what the reading said. CuriOS (OSDI 2008) keeps each
// client's state outside the server, in memory the server can only reach
// while serving that client, so that a restarted server finds it whole;
// here the memory is tcp's own, but the principle is the same: nothing a
// connection needs is only in the process's heap. OSIRIS (DSN 2016) shows
// that state adopted after a crash must be state at a consistent point:
// Minix 3's servers recover only when the crash fell between requests, in
// a "recovery window". tcp's recovery window is the end of each loop pass:
// every record is written (committed) there, after the pass's segments
// and requests are processed and before anything the pass produced — a
// segment to ip, a reply to syscall — leaves the process (the framework
// sends its queues after the core's Poll). So the world never sees a
// state that a restart could take back, and what a restart does take back
// is only what nobody saw: a segment not sent (the network could have lost
// it), a reply not sent (syscall reissues the request; stream offsets make
// that idempotent). CRIU's TCP repair lists what a Linux connection needs
// to come back — sequence numbers, the queues' contents, the MSS, window
// scale, SACK and timestamp options and the timestamp clock, the windows —
// and the record has all of it, plus what Linux rebuilds and keepnet can
// keep: the congestion window and the loss-recovery state.
//
// The memory (geometry below) is a header, an array of slots, and a data
// area:
//
//   - the header: the layout, the Table's timestamp epoch and ISN key
//     (timestamps and sequence numbers of a new incarnation continue the old
//     ones'; SYN cookies sent before the crash are still valid), and a
//     nonce drawn when the memory was first set up, which every record's
//     checksum covers: records of another set-up never pass;
//   - a slot per connection or TIME-WAIT record: an identity (the 4-tuple
//     and socket, written when they change, so that a connection whose
//     record is bad can still be reset) and two copies of the record. A
//     commit writes the older copy, then seals it: a stamp (a counter that
//     only grows) and a checksum (keptSum) of the stamp and bytes under the
//     nonce. The restart adopts the newest copy whose checksum holds; a copy torn by
//     the crash fails it and the other, one pass older, is used — it is
//     still consistent, since nothing of the pass that tore it left the
//     process. A record that fails both, or decodes to a state that breaks
//     the invariants (keptEndpoint.check), is a connection lost: its peer
//     gets a segment that provokes an RST, its socket answers
//     StatusReset, never data that may be wrong;
//   - the data area: the send and receive buffers themselves (ring), in
//     blocks of a binary buddy allocator (keep_buddy.go) whose free lists
//     live in the process and are rebuilt from the valid records. Bytes go
//     into a buffer where they will stay; a commit writes only the few
//     hundred bytes of a record, never the data. A block a pass frees is
//     reused only after the commit that stops naming it (buddy.settle),
//     so an older copy never names memory someone else has written. Bytes
//     a pass frees within a live buffer are bytes the other side has
//     provably got (acknowledged by the peer, or consumed by the
//     application: servers/ops stream offsets), so an older copy that
//     still counts them only makes tcp send again what the peer drops as
//     old, or hand out what the application's offset trims.
//
// A commit writes the records of the connections the pass touched (every
// entry point into an Endpoint marks it dirty: Table.touch), not all of
// them: an idle connection costs nothing.
//
// What is not kept: out-of-order data (a restarted tcp reneges on it, as
// RFC 2018 allows; the peer still holds it and sends it again), statistics,
// and a connection whose buffers found no room in the kept memory or whose
// record would not fit a slot (counted: Counters.Unkept) — it is lost in
// a crash as before.
//
// After the restart: connections go back into the Table with their timers,
// and each sends at once what the crash may have cut off (Endpoint.resume:
// what was sent in the crash may be lost, and so were the peer's ACKs in
// the gap);
// a listener's half-open and unaccepted connections go back into its
// queues (listeners themselves come from the store); TIME-WAIT records
// go back into their FIFO; and the server gives each held connection its
// socket again, so that syscall's reissued requests find it.

// StateName is the memory init keeps for tcp across its restarts.
const StateName = "tcp.state"

// StateBytes is its size: the records of Config.MaxConns and
// Config.MaxTimeWait connections at their defaults (48 MiB) and room for
// every connection's buffers (the default BufferBudget, 128 MiB), with
// some to spare for the buddy allocator's rounding. Pages cost memory only
// once touched.
const StateBytes = 192 << 20

// Kept memory layout.
const (
	keepMagic   = "keepnet tcp\x00"
	keepVersion = 2 // 2: keptSum instead of CRC-32C

	slotBytes  = 4096
	identBytes = 64
	copyBytes  = (slotBytes - identBytes) / 2
	copyHeader = 16 // stamp, sum, length, kind, version
	maxRecord  = copyBytes - copyHeader

	// Header fields, by offset.
	hdrVersion  = 12
	hdrSlots    = 16
	hdrDataOff  = 24
	hdrDataSize = 32
	hdrMaxOrder = 40
	hdrEpoch    = 48
	hdrNonce    = 56
	hdrKey      = 64
	hdrSum      = 96  // keptSum of the bytes before it
	hdrHigh     = 128 // slots ever used (not in the sum: it grows)
)

// Record kinds.
const (
	kindFree     = 0
	kindConn     = 1
	kindTimeWait = 2
)

// keepGeometry is where things lie in kept memory of size bytes for cfg.
type keepGeometry struct {
	slots            int // number of slots, from pageSize on
	dataOff, dataLen int
	maxOrder         int // the buddy's largest block: a whole buffer
}

func geometryFor(cfg Config, size int) (keepGeometry, error) {
	g := keepGeometry{slots: cfg.MaxConns + cfg.MaxTimeWait}
	for pageSize<<g.maxOrder < max(cfg.SendBuffer, cfg.RecvBuffer) {
		g.maxOrder++
	}
	block := pageSize << g.maxOrder
	g.dataOff = (pageSize + g.slots*slotBytes + block - 1) / block * block
	g.dataLen = (size - g.dataOff) / block * block
	if g.dataLen < block {
		return g, fmt.Errorf("kept memory of %d bytes: %d slots and one %d-byte buffer need more", size, g.slots, block)
	}
	return g, nil
}

// keeper writes the Table's records into the kept memory.
type keeper struct {
	mem   []byte
	geo   keepGeometry
	nonce uint64 // the seed of the records' sums
	buddy *buddy
	stamp uint64  // the last stamp written
	high  int     // slots ever used: the restart reads these
	free  []int   // free slots below high
	next  []uint8 // per slot, the copy the next write goes to

	dirty   []*Endpoint
	dirtyTW []*timeWaitConn
	// lost are the connections the restart could not adopt, to be reset
	// by the first commit (the links to ip are up by then): rst says the
	// sequence number to reset with is known, else an unacceptable ACK
	// provokes the peer into giving it.
	lost []lostConn
	// resume are the restored connections, to resume by the first commit.
	resume []*Endpoint

	// poison is a test's request (HookPoison): the next commit writes the
	// newest connection's records bad.
	poison bool
	newest *Endpoint
}

type lostConn struct {
	id  tuple
	seq uint32
	rst bool
}

// touch marks e changed: the next Commit writes its record.
func (t *Table) touch(e *Endpoint) {
	if k := t.keep; k != nil && !e.dirty {
		e.dirty = true
		k.dirty = append(k.dirty, e)
	}
}

func (t *Table) touchTW(c *timeWaitConn) {
	if k := t.keep; k != nil && !c.dirty {
		c.dirty = true
		k.dirtyTW = append(k.dirtyTW, c)
	}
}

// needsRecord reports whether e must come back after a crash: it is in
// the Table, or its TIME-WAIT is, or a socket still holds it.
func (e *Endpoint) needsRecord() bool {
	return e.inTable || e.tw != nil || e.owned && !e.userClosed
}

// Commit writes the record of every connection changed since the last
// commit: the recovery window. The server calls it at the end of each
// loop pass, before what the pass produced leaves the process.
func (t *Table) Commit() {
	k := t.keep
	if k == nil {
		return
	}
	if len(k.lost) > 0 || len(k.resume) > 0 {
		t.finishRestore()
	}
	if k.poison {
		k.poison = false
		if e := k.newest; e != nil && e.slot != 0 {
			e.poisoned = true
			t.touch(e)
		}
	}
	for i, e := range k.dirty {
		k.dirty[i] = nil
		e.dirty = false
		t.commitConn(e)
	}
	k.dirty = k.dirty[:0]
	for i, c := range k.dirtyTW {
		k.dirtyTW[i] = nil
		c.dirty = false
		if c.gone {
			k.freeSlot(&c.slot)
			continue
		}
		if w, i, ok := k.record(&c.slot, nil); ok {
			encodeTimeWait(&w, c)
			k.commit(i, kindTimeWait, &w)
		}
	}
	k.dirtyTW = k.dirtyTW[:0]
	k.buddy.settle()
}

// finishRestore is what the restart leaves to the first commit, once the
// links are up: the lost connections reset, the restored ones resumed.
func (t *Table) finishRestore() {
	k := t.keep
	for _, l := range k.lost {
		if l.rst {
			t.sendRaw(l.id, l.seq, 0, flagRST, 0, nil)
		} else {
			// The peer answers an unacceptable ACK with its own, which
			// nothing matches now: resetFor's RST, with the exact
			// sequence number, ends it there.
			t.sendRaw(l.id, t.rand.Uint32(), t.rand.Uint32(), flagACK, 0, nil)
		}
	}
	k.lost = nil
	now := t.clock.Now()
	for _, e := range k.resume {
		if e.state != Closed {
			t.touch(e)
			e.resume(now)
		}
	}
	k.resume = nil
}

func (t *Table) commitConn(e *Endpoint) {
	k := t.keep
	switch {
	case !e.needsRecord():
		k.freeSlot(&e.slot)
		e.snd.drop()
		e.rcv.drop()
		if k.newest == e {
			k.newest = nil
		}
		return
	case e.unkept:
		return
	case e.snd.buf != nil && e.snd.off < 0, e.rcv.buf != nil && e.rcv.off < 0:
		t.unkeep(e) // a buffer on the heap: the kept memory was full
		return
	}
	w, i, ok := k.record(&e.slot, e)
	if ok {
		encodeEndpoint(&w, e)
		ok = k.commit(i, kindConn, &w)
	}
	if !ok {
		t.unkeep(e)
		return
	}
	if e.poisoned {
		k.scribble(e.slot - 1)
	}
}

// unkeep gives up keeping e: it has no record, and a crash loses it.
func (t *Table) unkeep(e *Endpoint) {
	log.Printf("connection %v (%v) is no longer kept: no room in the kept memory, or its record too large", e.id, e.state)
	e.unkept = true
	t.keep.freeSlot(&e.slot)
	t.c.Unkept++
}

// slot is slot i's bytes.
func (k *keeper) slot(i int) []byte {
	off := pageSize + i*slotBytes
	return k.mem[off : off+slotBytes : off+slotBytes]
}

func (k *keeper) copyOf(i, c int) []byte {
	off := identBytes + c*copyBytes
	return k.slot(i)[off : off+copyBytes : off+copyBytes]
}

// allocSlot takes a free slot, or reports false if every one is in use.
func (k *keeper) allocSlot() (int, bool) {
	if n := len(k.free); n > 0 {
		i := k.free[n-1]
		k.free = k.free[:n-1]
		return i, true
	}
	if k.high == k.geo.slots {
		return 0, false
	}
	k.high++
	binary.LittleEndian.PutUint32(k.mem[hdrHigh:], uint32(k.high))
	return k.high - 1, true
}

// record starts a record in *slot (taking a slot if it has none): it
// writes the identity if it changed (e's; nil for a TIME-WAIT) and returns
// where the record goes, the older copy of slot i. It reports false if
// there is no slot left. commit seals the record.
func (k *keeper) record(slot *int, e *Endpoint) (w enc, i int, ok bool) {
	if *slot == 0 {
		i, ok := k.allocSlot()
		if !ok {
			return enc{}, 0, false
		}
		*slot = i + 1
		if e != nil {
			e.identWritten = false
		}
	}
	i = *slot - 1
	if e != nil && (!e.identWritten || e.identSock != e.owner.sock) {
		k.writeIdent(i, e)
	}
	return enc{b: k.copyOf(i, int(k.next[i]))[copyHeader:]}, i, true
}

// commit seals the record w of kind in slot i, which record began. It
// reports false if the record did not fit.
func (k *keeper) commit(i int, kind uint8, w *enc) bool {
	if !w.fits() {
		return false
	}
	k.seal(k.copyOf(i, int(k.next[i])), kind, w.n)
	k.next[i] ^= 1
	return true
}

// seal stamps copy c holding n bytes of kind and checksums it.
func (k *keeper) seal(c []byte, kind uint8, n int) {
	k.stamp++
	binary.LittleEndian.PutUint64(c[0:], k.stamp)
	binary.LittleEndian.PutUint16(c[12:], uint16(n))
	c[14], c[15] = kind, keptRecordVersion
	binary.LittleEndian.PutUint32(c[8:], k.sum(c, n))
}

// sum is the checksum of copy c's record of n bytes, under the nonce:
// everything in the copy but the sum itself.
func (k *keeper) sum(c []byte, n int) uint32 {
	return keptSum(k.nonce, c[0:8], c[12:copyHeader+n])
}

// read returns copy c's stamp, kind, record and its version if its
// checksum holds and its version is one this tcp reads.
func (k *keeper) read(c []byte) (stamp uint64, kind uint8, rec []byte, version uint8, ok bool) {
	stamp = binary.LittleEndian.Uint64(c[0:])
	n := int(binary.LittleEndian.Uint16(c[12:]))
	version = c[15]
	if stamp == 0 || n > maxRecord || version < minRecordVersion || version > keptRecordVersion || binary.LittleEndian.Uint32(c[8:]) != k.sum(c, n) {
		return 0, 0, nil, 0, false
	}
	return stamp, c[14], c[copyHeader : copyHeader+n], version, true
}

// freeSlot ends *slot's record: a free record, sealed, supersedes it.
func (k *keeper) freeSlot(slot *int) {
	if *slot == 0 {
		return
	}
	i := *slot - 1
	k.seal(k.copyOf(i, int(k.next[i])), kindFree, 0)
	k.next[i] ^= 1
	k.free = append(k.free, i)
	*slot = 0
}

// scribble breaks both copies of slot i, as a fault that wrote over the
// record would (HookPoison): each copy's checksum is made the complement of
// its bytes' — wrong however often it is done.
func (k *keeper) scribble(i int) {
	for c := range 2 {
		cp := k.copyOf(i, c)
		n := int(binary.LittleEndian.Uint16(cp[12:]))
		binary.LittleEndian.PutUint32(cp[8:], ^k.sum(cp, min(n, maxRecord)))
	}
}

// The identity: its sum, nonce, 4-tuple, socket.
func (k *keeper) writeIdent(i int, e *Endpoint) {
	b := k.slot(i)[:identBytes]
	w := enc{b: b[4:]}
	w.u64(k.nonce)
	w.tuple(e.id)
	w.u64(e.owner.sock)
	binary.LittleEndian.PutUint32(b, keptSum(0, w.bytes()))
	e.identWritten, e.identSock = true, e.owner.sock
}

// identOf is the 4-tuple slot i's identity names, if it is valid.
func (k *keeper) identOf(i int) (tuple, bool) {
	b := k.slot(i)[:identBytes]
	const n = 8 + 36 + 8
	if binary.LittleEndian.Uint32(b) != keptSum(0, b[4:4+n]) {
		return tuple{}, false
	}
	r := dec{b: b[4 : 4+n]}
	if r.u64() != k.nonce {
		return tuple{}, false
	}
	id := r.tuple()
	return id, id.localAddr.IsValid() && id.remoteAddr.IsValid()
}

// Keep makes t keep its connections in mem, the kept memory, from now on.
// If mem holds the records of a previous generation (of the same layout),
// their connections come back first; Keep returns those a socket holds,
// for the server to give them their sockets again (Endpoint.owner). Call
// it once, after the listeners are restored (a connection in a listener's
// queues needs it) and before anything else happens on t.
func (t *Table) Keep(mem []byte) ([]*Endpoint, error) {
	geo, err := geometryFor(t.cfg, len(mem))
	if err != nil {
		return nil, err
	}
	k := &keeper{mem: mem, geo: geo, next: make([]uint8, geo.slots)}
	k.buddy = newBuddy(mem[geo.dataOff:geo.dataOff+geo.dataLen], geo.maxOrder)
	t.keep, t.mem = k, k.buddy
	if !k.sameLayout() {
		k.setUp(t)
		return nil, nil
	}
	return t.restoreKept(), nil
}

// sameLayout reports whether the header is valid and says this layout.
func (k *keeper) sameLayout() bool {
	h := k.mem
	le := binary.LittleEndian
	return string(h[:12]) == keepMagic && le.Uint32(h[hdrSum:]) == keptSum(0, h[:hdrSum]) &&
		le.Uint32(h[hdrVersion:]) == keepVersion && int(le.Uint32(h[hdrSlots:])) == k.geo.slots &&
		int(le.Uint64(h[hdrDataOff:])) == k.geo.dataOff && int(le.Uint64(h[hdrDataSize:])) == k.geo.dataLen &&
		int(le.Uint32(h[hdrMaxOrder:])) == k.geo.maxOrder && int(le.Uint32(h[hdrHigh:])) <= k.geo.slots
}

// setUp writes a fresh header: no records.
func (k *keeper) setUp(t *Table) {
	h := k.mem
	le := binary.LittleEndian
	k.nonce = t.rand.Uint64() | 1
	copy(h, keepMagic)
	le.PutUint32(h[hdrVersion:], keepVersion)
	le.PutUint32(h[hdrSlots:], uint32(k.geo.slots))
	le.PutUint64(h[hdrDataOff:], uint64(k.geo.dataOff))
	le.PutUint64(h[hdrDataSize:], uint64(k.geo.dataLen))
	le.PutUint32(h[hdrMaxOrder:], uint32(k.geo.maxOrder))
	le.PutUint64(h[hdrEpoch:], uint64(t.epoch.UnixNano()))
	le.PutUint64(h[hdrNonce:], k.nonce)
	copy(h[hdrKey:hdrKey+32], t.cfg.ISNKey[:])
	le.PutUint32(h[hdrSum:], keptSum(0, h[:hdrSum]))
	le.PutUint32(h[hdrHigh:], 0)
}

// restoreKept adopts the records of the previous generation.
func (t *Table) restoreKept() []*Endpoint {
	k := t.keep
	h := k.mem
	le := binary.LittleEndian
	k.nonce = le.Uint64(h[hdrNonce:])
	t.epoch = time.Unix(0, int64(le.Uint64(h[hdrEpoch:])))
	copy(t.cfg.ISNKey[:], h[hdrKey:hdrKey+32])
	k.high = int(le.Uint32(h[hdrHigh:]))

	var conns []keptEndpoint
	var tws []*timeWaitConn
	held := map[tuple]bool{} // TIME-WAIT records whose endpoint is kept too
	slotOf := map[*Endpoint]int{}
	var lost []int
	for i := range k.high {
		kind, rec, version, c, ok := k.newestCopy(i)
		k.next[i] = uint8(c ^ 1)
		switch {
		case !ok:
			if _, named := k.identOf(i); named {
				lost = append(lost, i)
			} else {
				k.free = append(k.free, i)
			}
		case kind == kindConn:
			ke, err := decodeEndpoint(t, &dec{b: rec}, version)
			if err != nil {
				log.Printf("kept connections: slot %d: %v", i, err)
				lost = append(lost, i)
				continue
			}
			ke.e.slot, ke.e.identWritten, ke.e.identSock = i+1, true, ke.e.owner.sock
			slotOf[ke.e] = i
			conns = append(conns, ke)
		case kind == kindTimeWait:
			c, h, err := decodeTimeWait(&dec{b: rec})
			if err != nil {
				k.free = append(k.free, i) // nothing to reset: it was closing
				continue
			}
			c.slot = i + 1
			tws = append(tws, c)
			if h {
				held[c.id] = true
			}
		default:
			k.free = append(k.free, i)
		}
	}
	// The buffers: claimed in the buddy, then mapped.
	data := k.buddy.mem
	good := conns[:0]
	for _, ke := range conns {
		if !k.claimRing(ke.snd) || !k.claimRing(ke.rcv) {
			lost = append(lost, slotOf[ke.e])
			continue
		}
		e := ke.e
		e.snd = k.ringFrom(ke.snd, data, ke.sndLimit)
		e.rcv = k.ringFrom(ke.rcv, data, ke.rcvLimit)
		good = append(good, ke)
	}
	for _, i := range lost {
		if id, ok := k.identOf(i); ok {
			k.lost = append(k.lost, lostConn{id: id})
		}
		slot := i + 1
		k.freeSlot(&slot)
		t.c.KeptLost++
	}
	var owned []*Endpoint
	byID := map[tuple]*Endpoint{}
	now := t.clock.Now()
	for _, ke := range good {
		e := ke.e
		if !t.placeKept(ke, held[e.id], now) {
			t.c.KeptLost++
			continue
		}
		byID[e.id] = e
		t.c.KeptConns++
		if e.owned && !e.userClosed {
			owned = append(owned, e)
		}
	}
	slices.SortFunc(tws, func(a, b *timeWaitConn) int { return a.end.Compare(b.end) })
	for _, c := range tws {
		if t.inUse(c.id) {
			k.freeSlot(&c.slot)
			continue
		}
		if e := byID[c.id]; e != nil && e.state == TimeWait {
			c.e, e.tw = e, c
		}
		t.timeWait.byID[c.id] = c
		t.timeWait.pushBack(c)
		t.ports[c.id.localPort]++
		t.c.KeptConns++
	}
	// A held endpoint whose TIME-WAIT record was lost is closed.
	for _, e := range byID {
		if e.state == TimeWait && e.tw == nil {
			e.state = Closed
			t.touch(e)
		}
	}
	return owned
}

// newestCopy is slot i's newest valid copy: its kind, record, the
// record's version and the copy's index.
func (k *keeper) newestCopy(i int) (kind uint8, rec []byte, version uint8, c int, ok bool) {
	var best uint64
	for j := range 2 {
		if s, kd, r, v, valid := k.read(k.copyOf(i, j)); valid && s > best {
			best, kind, rec, version, c, ok = s, kd, r, v, j, true
		}
		if s := binary.LittleEndian.Uint64(k.copyOf(i, j)); s > k.stamp {
			k.stamp = s // stamps only grow, over torn copies too
		}
	}
	return kind, rec, version, c, ok
}

func (k *keeper) claimRing(r ringRec) bool {
	return r.size == 0 || k.buddy.claim(r.off, r.size)
}

func (k *keeper) ringFrom(r ringRec, data []byte, limit int) ring {
	rg := ring{limit: limit, m: k.buddy, off: -1, head: r.head, n: r.n, lingering: r.lingering}
	if r.size > 0 {
		rg.buf, rg.off = data[r.off:r.off+r.size:r.off+r.size], r.off
	}
	return rg
}

// placeKept puts a restored connection back: into the Table (with its
// budget, port and timers) unless it is closed or in TIME-WAIT, into its
// listener's queue if it is in one. It reports false, resetting it, if it
// cannot be placed.
func (t *Table) placeKept(ke keptEndpoint, hasTW bool, now time.Time) bool {
	e := ke.e
	timers := e.timers
	e.timers = [numTimers]time.Time{}
	if e.state == Closed || e.state == TimeWait {
		return e.owned && !e.userClosed
	}
	if t.inUse(e.id) {
		return t.dropKept(e)
	}
	if ke.listenPort != 0 {
		l := t.listeners[ke.listenPort]
		if l == nil {
			return t.dropKept(e)
		}
		e.listener = l
		if e.state == SynReceived {
			l.synQ = append(l.synQ, e)
		} else {
			l.acceptQ = append(l.acceptQ, e)
		}
	}
	for _, r := range []*ring{&e.snd, &e.rcv} {
		r.b, r.paid = &t.budget, max(len(r.buf), ringFloor)
		t.budget.used += r.paid
	}
	t.add(e)
	for kind, at := range timers {
		if !at.IsZero() {
			e.setTimer(timerKind(kind), at)
		}
	}
	t.keep.resume = append(t.keep.resume, e)
	return true
}

// resume is a restored connection's first step: what the crash may have
// cut off goes again — the SYN, or the first unacknowledged segment, else
// an ACK with our window —, so that the peer's answer restarts the flow
// at once. Neither counts as a timeout: the network lost nothing.
func (e *Endpoint) resume(now time.Time) {
	switch {
	case e.state == SynSent || e.state == SynReceived:
		e.sendSYN(now)
	case e.sndUna != e.sndNxt && e.canSend():
		e.retransmit(now, seqRange{e.sndUna, e.sndNxt})
	case e.synchronized():
		e.sendAck(now)
	}
}

// dropKept resets a restored connection that cannot be placed.
func (t *Table) dropKept(e *Endpoint) bool {
	k := t.keep
	k.lost = append(k.lost, lostConn{id: e.id, seq: e.sndNxt, rst: true})
	k.freeSlot(&e.slot)
	e.snd.drop()
	e.rcv.drop()
	return false
}

// HookPoison is the test hook that breaks the records of the connection a
// socket took most recently, as a fault scribbling over them would: after
// a crash it must be reset, and only it.
const HookPoison = "poison"

// Poison asks the next commit to break the newest connection's records
// (HookPoison).
func (t *Table) Poison() {
	if t.keep != nil {
		t.keep.poison = true
	}
}
