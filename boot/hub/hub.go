// Package hub is init's side of the wiring (package kernel/wiring): it knows
// which component talks to which, creates the shared memory between them,
// hands it out over each component's wiring socket, and holds every pool, DMA
// region and kept memory for as long as any process or device may still
// touch it.
//
// Lifetimes, the rules that make crashes safe:
//
//   - A DMA region (a driver's descriptor rings) is created once and handed
//     to every generation of its component: the memory outlives any crash,
//     so a device still writing back descriptors never writes into memory
//     the kernel gave to someone else.
//   - Kept memory (kernel/keep: plain shared memory, such as tcp's
//     connection state) is created once, at the first hello of its
//     component, held by the hub for the hub's life, and handed to every
//     generation after its regions: what one generation left there, the
//     next finds.
//   - A pool belongs to one generation of its owner. When the owner
//     restarts, its pools are superseded: the new generation gets new ones,
//     and the old are closed only when every neighbour that mapped them has
//     released them — a driver once it has reset its device (its Release, or
//     the hello of its next generation, which comes after the reset).
//   - A channel belongs to one generation of each of its two ends. Every
//     hello creates fresh channels to the neighbours that are present, which
//     is how those neighbours learn of the restart.
//
// Grants: a pool may also be granted to components that are not its
// owner's neighbours (PoolSpec.Granted: tcp, reading and filling an
// application's buffers that syscall forwards by reference). They get
// each generation's granted pools in a grant message (wiring.TypeGrant)
// at the owner's hello, before its channels, and at their own hello; they
// hold them like neighbours, until they release them or restart.
//
// Who may write a pool: its owner, and the components its PoolSpec names
// as Writers (those that fill buffers for the owner). Every other neighbour
// gets a descriptor opened read-only, which it cannot map writable
// (kernel/pool's "Readers and writers"): a component that writes where it
// should only read faults itself instead of corrupting its neighbour.
//
// Readiness: a component that says up (wiring.TypeUp) on its wiring socket
// serves; the hub passes that on to the supervisor as the readiness of that
// one generation (the ready function of Spec.ExtraFiles, boot/supervisor's
// "Readiness"). An up from a superseded generation is ignored.
//
// Liveness: once a component has said hello, the hub pings it every
// PingEvery and passes each pong of that generation to the supervisor (the
// alive function of Spec.Liveness, boot/supervisor's hang detection); its
// loop answers, so a hung loop goes silent (kernel/wiring, "Hang
// detection").
//
// Test hooks and faults: Hook and Arm send a test hook or a fault site to
// arm (kernel/wiring's TypeHook, TypeArm) to a component's current
// generation; init decides whether they are allowed (boot/pid1).
//
// Concurrency: one goroutine per wiring socket reads what the component
// sends, and one pings it; Hub.mu guards all state and is held while sending, so announcements
// to one component are never interleaved.
package hub

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
)

// Node is one component's place in the wiring.
type Node struct {
	Name    string
	Peers   []string     // components it has a channel to
	Pools   []PoolSpec   // pools it owns (a new set every generation)
	Regions []RegionSpec // DMA regions kept across its restarts
	Kept    []KeptSpec   // memory kept across its restarts
}

// PoolSpec describes a pool a component owns.
type PoolSpec struct {
	Name    string
	Bufs    int
	BufSize int
	// Writers are the components that write into the pool's buffers
	// besides its owner (a driver filling receive buffers); the others
	// map it read-only.
	Writers []string
	// Granted are components that are not the owner's neighbours but map
	// the pool too (a transport reading and filling an application's
	// buffers, which syscall forwards by reference): each current
	// generation of the owner is announced to them (wiring.TypeGrant),
	// and a superseded pool is freed once they have released it too.
	Granted []string
}

// RegionSpec describes a DMA region: a pool created once and handed to
// every generation of its component (a driver's descriptor rings).
type RegionSpec struct {
	Name    string
	Bufs    int
	BufSize int
}

// KeptSpec describes kept memory (kernel/keep): created once and handed to
// every generation of its component, with what the last one left there.
type KeptSpec struct {
	Name string
	Size int // bytes, a multiple of the page size; pages are used as they are touched
}

// Pool is a pool as the hub holds it.
type Pool interface {
	Fd() *os.File
	Huge() bool
	Close() error
}

// Factory makes the shared memory; the real one is kernel/channel and
// kernel/pool, tests pass fakes.
type Factory struct {
	// Channel returns the three descriptors of a fresh channel: its
	// shared memory and the wake-up eventfds of side 0 and side 1.
	Channel func() ([]*os.File, error)
	// Pool creates a pool (also used for DMA regions).
	Pool func(name string, id uint32, bufs, bufSize int) (Pool, error)
	// Kept creates kept memory of size bytes (kernel/keep.Create).
	Kept func(name string, size int) (*os.File, error)
}

// Hub is the wiring of the whole appliance.
type Hub struct {
	f    Factory
	logf func(string, ...any)

	// mu guards everything below, and is held while sending.
	mu     sync.Mutex
	nodes  map[string]*node
	nextID uint32
	// old are superseded pools, by id, still mapped by some holder.
	old map[uint32]*heldPool
}

type node struct {
	spec    Node
	gen     int          // generation of the current process (starts counted by ExtraFiles)
	conn    *wiring.Conn // init's end of the current process's socket
	present bool         // said hello in this generation
	ready   func()       // the supervisor's readiness notification for this generation
	alive   func()       // the supervisor's liveness notification for this generation
	// answered is the last ping this generation answered.
	answered uint64
	pools    []*heldPool
	regions  []*heldPool // created once, never superseded
	kept     []heldKept  // created once, never superseded
}

// heldKept is kept memory as the hub holds it: its descriptor, open for the
// hub's life.
type heldKept struct {
	spec KeptSpec
	f    *os.File
}

type heldPool struct {
	info     wiring.PoolInfo
	pool     Pool
	readOnly *os.File        // the descriptor of the neighbours that only read it
	writers  []string        // the neighbours that get pool.Fd, writable
	granted  []string        // the components that are not neighbours but get it too (PoolSpec.Granted)
	holders  map[string]bool // neighbours that mapped it
}

// fdFor is the descriptor of the pool for the neighbour name.
func (p *heldPool) fdFor(name string) *os.File {
	if contains(p.writers, name) {
		return p.pool.Fd()
	}
	return p.readOnly
}

// New builds the hub. Every peer named must be a node, and links are
// symmetric: if a names b, b must name a.
func New(nodes []Node, f Factory, logf func(string, ...any)) (*Hub, error) {
	h := &Hub{f: f, logf: logf, nodes: map[string]*node{}, old: map[uint32]*heldPool{}, nextID: 1}
	for _, n := range nodes {
		if _, dup := h.nodes[n.Name]; dup {
			return nil, fmt.Errorf("hub: component %s listed twice", n.Name)
		}
		h.nodes[n.Name] = &node{spec: n}
	}
	for _, n := range nodes {
		for _, p := range n.Peers {
			peer, ok := h.nodes[p]
			if !ok {
				return nil, fmt.Errorf("hub: %s links to unknown component %s", n.Name, p)
			}
			if !contains(peer.spec.Peers, n.Name) {
				return nil, fmt.Errorf("hub: %s links to %s but not the other way", n.Name, p)
			}
		}
		for _, ps := range n.Pools {
			for _, g := range ps.Granted {
				if _, ok := h.nodes[g]; !ok || g == n.Name || contains(n.Peers, g) {
					return nil, fmt.Errorf("hub: %s's pool %s is granted to %s, which is not a component other than it and its neighbours", n.Name, ps.Name, g)
				}
			}
			for _, w := range ps.Writers {
				if !contains(n.Peers, w) && !contains(ps.Granted, w) {
					return nil, fmt.Errorf("hub: %s's pool %s names writer %s, which is neither its neighbour nor granted it", n.Name, ps.Name, w)
				}
			}
		}
	}
	return h, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Wired reports whether name has a place in the wiring.
func (h *Hub) Wired(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.nodes[name]
	return ok
}

// ExtraFiles is the supervisor's hook for name: called at every start, it
// begins a new generation and returns the component's end of a fresh wiring
// socket, which the child inherits as fd 3 (wiring.FD). ready is the
// supervisor's readiness notification for that start: the hub calls it
// when the generation says up (wiring.TypeUp).
func (h *Hub) ExtraFiles(name string) func(ready func()) ([]*os.File, error) {
	return func(ready func()) ([]*os.File, error) {
		initEnd, child, err := wiring.Pair()
		if err != nil {
			return nil, err
		}
		// A component that does not read its socket must not stall init.
		initEnd.SetSendTimeout(time.Second)

		h.mu.Lock()
		n := h.nodes[name]
		if n.conn != nil {
			n.conn.Close()
		}
		n.gen++
		n.conn = initEnd
		n.present, n.ready, n.answered = false, ready, 0
		h.supersedePoolsLocked(n)
		gen := n.gen
		h.mu.Unlock()

		go h.serve(name, gen, initEnd)
		go h.ping(name, gen, initEnd)
		return []*os.File{child}, nil
	}
}

// Liveness is the supervisor's Spec.Liveness hook for name: called at every
// start after ExtraFiles, it keeps that generation's alive function, which
// the hub calls at every pong.
func (h *Hub) Liveness(name string) func(alive func()) {
	return func(alive func()) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.nodes[name].alive = alive
	}
}

// PingEvery is how often the hub pings each component: a quarter of the
// default hang limit (boot/pid1), so a few lost rounds are no hang.
const PingEvery = 500 * time.Millisecond

// pingEpoch is the phase of every component's pings.
var pingEpoch = time.Now()

// ping pings one generation of a component every PingEvery from its hello
// until its socket closes or a later generation starts. Sends are outside
// mu: a component that does not read its socket delays only its own pings.
//
// A component shows life by answering, but also, as far as init can know,
// up to the moment init sends a ping after the last one was answered: so
// that ping counts as a sign of life too. That is what makes a pause of the
// whole machine harmless (a host that does not run the guest for seconds,
// init itself not scheduled): no ping goes out meanwhile, so none goes
// unanswered, and the first one after the pause starts the count afresh.
// Only pings that went out and got no answer make a component silent.
//
// Every component's pings go out at the same moments, multiples of
// PingEvery since pingEpoch: one wake-up of init sends them all, where
// tickers started at each hello woke init for each component apart (a
// process switch each, dear under TCG).
func (h *Hub) ping(name string, gen int, c *wiring.Conn) {
	time.Sleep(PingEvery - time.Since(pingEpoch)%PingEvery)
	t := time.NewTicker(PingEvery)
	defer t.Stop()
	for seq := uint64(1); ; {
		<-t.C
		h.mu.Lock()
		n := h.nodes[name]
		current, present := n.gen == gen, n.present
		answered, alive := n.answered == seq-1, n.alive
		h.mu.Unlock()
		if !current {
			return
		}
		if !present {
			continue // the wiring is not complete: it cannot answer yet
		}
		if answered && seq > 1 && alive != nil {
			alive()
		}
		if err := c.Send(wiring.Message{Type: wiring.TypePing, Seq: seq}); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // a full socket: it does not read, so it will not answer either
			}
			return // the socket is closed: the process is gone
		}
		seq++
	}
}

// pong records a generation's answer to ping seq and says it is alive.
func (h *Hub) pong(name string, gen int, seq uint64) {
	h.mu.Lock()
	n := h.nodes[name]
	if n.gen != gen {
		h.mu.Unlock()
		return // a superseded process's word counts for no one
	}
	n.answered = max(n.answered, seq)
	alive := n.alive
	h.mu.Unlock()
	if alive != nil {
		alive() // outside mu: the supervisor takes its own lock
	}
}

// Hook asks name's current generation to run a test hook
// (kernel/wiring.TypeHook); the component runs it only if test hooks are
// enabled in its environment.
func (h *Hub) Hook(name, hook string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[name]
	switch {
	case !ok:
		return fmt.Errorf("hub: %s is not wired", name)
	case !n.present:
		return fmt.Errorf("hub: %s is not up", name)
	}
	return n.conn.Send(wiring.Message{Type: wiring.TypeHook, Name: hook})
}

// Arm sends name's current generation an Arm (kernel/wiring.TypeArm): arm
// the fault site a names, or disarm (a.Site 0), and returns that
// generation. Only a component of a faulty image acts on it; the arming
// lasts as long as that process, so the next generation starts disarmed.
func (h *Hub) Arm(name string, a wiring.FaultArm) (generation int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[name]
	switch {
	case !ok:
		return 0, fmt.Errorf("hub: %s is not wired", name)
	case !n.present:
		return 0, fmt.Errorf("hub: %s is not up", name)
	}
	if err := n.conn.Send(wiring.Message{Type: wiring.TypeArm, Fault: &a}); err != nil {
		return 0, err
	}
	return n.gen, nil
}

// supersedePoolsLocked retires the pools of n's previous generation.
func (h *Hub) supersedePoolsLocked(n *node) {
	for _, p := range n.pools {
		h.old[p.info.ID] = p
		h.maybeFreeLocked(p)
	}
	n.pools = nil
}

func (h *Hub) maybeFreeLocked(p *heldPool) {
	if len(p.holders) > 0 {
		return
	}
	delete(h.old, p.info.ID)
	p.readOnly.Close()
	if err := p.pool.Close(); err != nil {
		h.logf("hub: closing pool %s (%d): %v", p.info.Name, p.info.ID, err)
	}
}

// serve reads what one generation of a component sends until its socket
// closes.
func (h *Hub) serve(name string, gen int, c *wiring.Conn) {
	for {
		m, files, err := c.Recv(-1)
		for _, f := range files {
			f.Close() // components send no descriptors
		}
		if err != nil {
			h.mu.Lock()
			if n := h.nodes[name]; n.gen == gen {
				n.present = false
			}
			h.mu.Unlock()
			if !errors.Is(err, wiring.ErrClosed) && !errors.Is(err, os.ErrClosed) {
				h.logf("hub: %s (generation %d): %v", name, gen, err)
			}
			return
		}
		switch m.Type {
		case wiring.TypeHello:
			if err := h.hello(name, gen); err != nil {
				h.logf("hub: wiring %s: %v", name, err)
			}
		case wiring.TypeRelease:
			if m.Pool != nil {
				h.release(name, m.Pool.ID)
			}
		case wiring.TypeUp:
			if ready := h.readyOf(name, gen); ready != nil {
				ready() // outside mu: the supervisor takes its own lock
			}
		case wiring.TypePong:
			h.pong(name, gen, m.Seq)
		default:
			h.logf("hub: %s sent unexpected %q", name, m.Type)
		}
	}
}

// readyOf is the readiness notification of name's generation gen, or nil
// if that generation is superseded: its word counts for no one.
func (h *Hub) readyOf(name string, gen int) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.nodes[name]; n.gen == gen {
		return n.ready
	}
	return nil
}

// hello wires a component that announced itself.
func (h *Hub) hello(name string, gen int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[name]
	if n.gen != gen {
		return nil // a hello from a process already superseded
	}
	// Its previous generation held peers' old pools; that process is
	// gone, and a driver says hello only after resetting its device.
	for _, p := range h.old {
		if p.holders[name] {
			delete(p.holders, name)
			h.maybeFreeLocked(p)
		}
	}
	if err := h.createLocked(n); err != nil {
		return err
	}
	n.present = true
	if err := n.conn.Send(wiring.Message{Type: wiring.TypeWelcome, Name: name, Generation: gen}); err != nil {
		return err
	}
	for _, p := range n.pools {
		info := p.info
		if err := n.conn.Send(wiring.Message{Type: wiring.TypePool, Pool: &info}, p.pool.Fd()); err != nil {
			return err
		}
	}
	for _, r := range n.regions {
		info := r.info
		if err := n.conn.Send(wiring.Message{Type: wiring.TypeRegion, Name: info.Name, Pool: &info}, r.pool.Fd()); err != nil {
			return err
		}
	}
	for _, k := range n.kept {
		if err := n.conn.Send(wiring.Message{Type: wiring.TypeKept, Name: k.spec.Name, Size: k.spec.Size}, k.f); err != nil {
			return err
		}
	}
	// Grants before channels: a transport knows an application's pools
	// before syscall, told of the application by its channel, forwards
	// a reference into them (mostly: the two hear on different sockets).
	if err := h.grantLocked(n); err != nil {
		return err
	}
	peers := append([]string(nil), n.spec.Peers...)
	sort.Strings(peers)
	for _, pn := range peers {
		peer := h.nodes[pn]
		if !peer.present {
			continue // it gets the channel when it says hello
		}
		if err := h.linkLocked(n, peer); err != nil {
			return fmt.Errorf("channel %s<->%s: %w", name, pn, err)
		}
	}
	return n.conn.Send(wiring.Message{Type: wiring.TypeReady})
}

// createLocked makes the pools of n's generation, and its regions and kept
// memory once.
func (h *Hub) createLocked(n *node) error {
	if n.pools == nil {
		for _, ps := range n.spec.Pools {
			p, err := h.newPoolLocked(n.spec.Name, ps.Name, ps.Bufs, ps.BufSize)
			if err != nil {
				return err
			}
			p.writers, p.granted = ps.Writers, ps.Granted
			if p.readOnly, err = pool.ReopenReadOnly(p.pool.Fd()); err != nil {
				p.pool.Close()
				return err
			}
			n.pools = append(n.pools, p)
		}
	}
	if n.regions == nil {
		for _, rs := range n.spec.Regions {
			p, err := h.newPoolLocked(n.spec.Name, rs.Name, rs.Bufs, rs.BufSize)
			if err != nil {
				return err
			}
			n.regions = append(n.regions, p)
		}
	}
	return h.createKeptLocked(n)
}

// createKeptLocked makes n's kept memory, once.
func (h *Hub) createKeptLocked(n *node) error {
	if n.kept == nil && len(n.spec.Kept) > 0 {
		// All or none: a later hello tries again only if none is held.
		var kept []heldKept
		for _, ks := range n.spec.Kept {
			f, err := h.f.Kept(ks.Name, ks.Size)
			if err != nil {
				for _, k := range kept {
					k.f.Close()
				}
				return fmt.Errorf("kept memory %s: %w", ks.Name, err)
			}
			kept = append(kept, heldKept{spec: ks, f: f})
		}
		n.kept = kept
	}
	return nil
}

// Kept is the kept memory name of component, made now if the component
// never said hello: init writes into it what the component is to find
// there (pf's rules). The descriptor stays the hub's.
func (h *Hub) Kept(component, name string) (*os.File, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[component]
	if n == nil {
		return nil, fmt.Errorf("hub: no component %s", component)
	}
	if err := h.createKeptLocked(n); err != nil {
		return nil, err
	}
	for _, k := range n.kept {
		if k.spec.Name == name {
			return k.f, nil
		}
	}
	return nil, fmt.Errorf("hub: %s has no kept memory %s", component, name)
}

func (h *Hub) newPoolLocked(owner, name string, bufs, bufSize int) (*heldPool, error) {
	id := h.nextID
	h.nextID++
	p, err := h.f.Pool(name, id, bufs, bufSize)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", name, err)
	}
	return &heldPool{
		info:    wiring.PoolInfo{Name: name, ID: id, Owner: owner, Bufs: bufs, BufSize: bufSize, Huge: p.Huge()},
		pool:    p,
		holders: map[string]bool{},
	}, nil
}

// grantLocked announces the pools granted across a hello of n: n's own
// current pools to every present grantee, and every present owner's pools
// granted to n.
func (h *Hub) grantLocked(n *node) error {
	grantees := map[string]bool{}
	for _, p := range n.pools {
		for _, g := range p.granted {
			grantees[g] = true
		}
	}
	names := make([]string, 0, len(grantees))
	for g := range grantees {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		if to := h.nodes[g]; to.present {
			if err := h.sendGrantLocked(to, n); err != nil {
				h.logf("hub: granting %s's pools to %s: %v", n.spec.Name, g, err)
			}
		}
	}
	owners := make([]string, 0, len(h.nodes))
	for name, o := range h.nodes {
		if o != n && o.present && slices.ContainsFunc(o.pools, func(p *heldPool) bool { return contains(p.granted, n.spec.Name) }) {
			owners = append(owners, name)
		}
	}
	sort.Strings(owners)
	for _, o := range owners {
		if err := h.sendGrantLocked(n, h.nodes[o]); err != nil {
			return fmt.Errorf("grant of %s's pools: %w", o, err)
		}
	}
	return nil
}

// sendGrantLocked sends to the pools of from's current generation granted
// to it, as a channel's pools are sent, without a channel.
func (h *Hub) sendGrantLocked(to, from *node) error {
	msg := wiring.Message{Type: wiring.TypeGrant, Peer: from.spec.Name, Generation: from.gen}
	var files []*os.File
	for _, p := range from.pools {
		if contains(p.granted, to.spec.Name) {
			msg.Pools = append(msg.Pools, p.info)
			files = append(files, p.fdFor(to.spec.Name))
			p.holders[to.spec.Name] = true
		}
	}
	return to.conn.Send(msg, files...)
}

// linkLocked creates a fresh channel between a (saying hello) and b (present)
// and sends each end with the other's pools.
func (h *Hub) linkLocked(a, b *node) error {
	fds, err := h.f.Channel()
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	send := func(to, from *node, side int) error {
		msg := wiring.Message{Type: wiring.TypeChannel, Peer: from.spec.Name, Generation: from.gen, Side: side}
		files := append([]*os.File(nil), fds...)
		for _, p := range from.pools {
			msg.Pools = append(msg.Pools, p.info)
			files = append(files, p.fdFor(to.spec.Name))
			p.holders[to.spec.Name] = true
		}
		return to.conn.Send(msg, files...)
	}
	if err := send(a, b, 0); err != nil {
		return err
	}
	if err := send(b, a, 1); err != nil {
		h.logf("hub: telling %s about %s generation %d: %v", b.spec.Name, a.spec.Name, a.gen, err)
	}
	return nil
}

// release records that name no longer maps pool id.
func (h *Hub) release(name string, id uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.old[id]; ok {
		delete(p.holders, name)
		h.maybeFreeLocked(p)
		return
	}
	// A release of a current pool (e.g. a driver resetting while its
	// peer lives): only the holder mark goes.
	for _, n := range h.nodes {
		for _, p := range n.pools {
			if p.info.ID == id {
				delete(p.holders, name)
			}
		}
	}
}

// OldPools reports how many superseded pools are still held, for status and
// tests.
func (h *Hub) OldPools() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.old)
}
