// Package nd is IPv6 Neighbor Discovery for keepnet's IP server: the
// neighbour cache with neighbour unreachability detection (RFC 4861 §7),
// and stateless address autoconfiguration with duplicate address
// detection and router discovery (RFC 4862, RFC 4861 §6.3). Like
// servers/ip/dhcp it has no I/O and no clock of its own: the IP server
// hands it what arrives and the time, and carries out the Actions it
// returns (send a solicitation, send what waited for an address, join a
// multicast group); so every transition is tested on a fake clock.
//
// Recovery: what a restarted IP server must keep is its addresses (they
// are its identity on the link, like IPv4's); the neighbour cache is a
// cache, learned again by the next solicitation, as the ARP cache is.
package nd

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"keepnet/servers/header"
)

// State is a neighbour cache entry's reachability state (RFC 4861 §7.3.2).
type State uint8

const (
	Incomplete State = iota // resolving: multicast solicitations sent, no address yet
	Reachable               // confirmed within ReachableTime
	Stale                   // not confirmed lately; usable, probed when used
	Delay                   // used while stale: an upper layer may confirm it yet
	Probe                   // unicast solicitations sent
)

func (s State) String() string {
	return [...]string{"incomplete", "reachable", "stale", "delay", "probe"}[s]
}

// RFC 4861 §10's constants.
const (
	MaxMulticastSolicit = 3
	MaxUnicastSolicit   = 3
	DelayFirstProbe     = 5 * time.Second
	BaseReachableTime   = 30 * time.Second
	RetransTimer        = time.Second
)

// Kind says what an Action asks of the IP server.
type Kind uint8

const (
	// SendNS: a Neighbor Solicitation for Target, to its solicited-node
	// group, or to MAC when Unicast; from the unspecified address when
	// DAD (duplicate address detection), without a source link-layer
	// option.
	SendNS Kind = iota
	// SendRS: a Router Solicitation to all routers.
	SendRS
	// Resolved: Target is at MAC; what waited for it can go.
	Resolved
	// Unreachable: resolving Target failed; drop what waited for it and
	// answer each with an ICMPv6 address unreachable (RFC 4861 §7.2.2).
	Unreachable
	// Join, Leave: the solicited-node group of Target (program the NIC's
	// multicast filter for it).
	Join
	Leave
	// AddrReady: Target, one of our addresses, passed DAD and may be used.
	AddrReady
	// AddrGone: Target is no longer ours: its valid lifetime ended, or
	// DAD found it in use (Duplicate).
	AddrGone
)

// Action is one thing the IP server must do.
type Action struct {
	Kind      Kind
	Target    netip.Addr
	MAC       header.MAC
	Unicast   bool
	DAD       bool
	Duplicate bool
	Restored  bool // AddrReady: kept by a predecessor, not new (nothing to announce)
}

// CacheConfig sizes a Cache; zero values take RFC 4861's defaults.
type CacheConfig struct {
	MaxEntries        int           // entries at most (default 512)
	BaseReachableTime time.Duration // a router's advertisement may change it
	RetransTimer      time.Duration
	Rand              *rand.Rand // for ReachableTime's jitter; nil: a fixed seed
}

// entry is one neighbour.
type entry struct {
	state    State
	mac      header.MAC
	router   bool
	deadline time.Time // Incomplete, Delay, Probe: the next step; Reachable: when it goes stale
	probes   int       // solicitations sent in Incomplete or Probe
	used     time.Time // last looked up or learned, for eviction
}

// Cache is the neighbour cache. It is not safe for concurrent use: the IP
// server's loop owns it.
type Cache struct {
	cfg       CacheConfig
	reachable time.Duration // ReachableTime: BaseReachableTime × [0.5, 1.5)
	entries   map[netip.Addr]*entry
}

// NewCache returns an empty cache.
func NewCache(cfg CacheConfig) *Cache {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 512
	}
	if cfg.BaseReachableTime <= 0 {
		cfg.BaseReachableTime = BaseReachableTime
	}
	if cfg.RetransTimer <= 0 {
		cfg.RetransTimer = RetransTimer
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(4861, 7))
	}
	c := &Cache{cfg: cfg, entries: map[netip.Addr]*entry{}}
	c.rollReachable()
	return c
}

// rollReachable draws ReachableTime anew (RFC 4861 §6.3.2: uniformly
// between 0.5 and 1.5 times the base, so that neighbours do not probe in
// step).
func (c *Cache) rollReachable() {
	c.reachable = time.Duration((0.5 + c.cfg.Rand.Float64()) * float64(c.cfg.BaseReachableTime))
}

// SetRouterTimes takes a Router Advertisement's Reachable Time and Retrans
// Timer; zero leaves each as it was (RFC 4861 §6.3.4).
func (c *Cache) SetRouterTimes(reachable, retrans time.Duration) {
	if reachable > 0 && reachable != c.cfg.BaseReachableTime {
		c.cfg.BaseReachableTime = reachable
		c.rollReachable()
	}
	if retrans > 0 {
		c.cfg.RetransTimer = retrans
	}
}

// Len is how many entries the cache holds.
func (c *Cache) Len() int { return len(c.entries) }

// State is a's entry's state and link-layer address, if it has one.
func (c *Cache) State(a netip.Addr) (State, header.MAC, bool) {
	e := c.entries[a]
	if e == nil {
		return 0, header.MAC{}, false
	}
	return e.state, e.mac, true
}

// Lookup is the address to send to a at now (RFC 4861 §7.2.2, §7.3.3). ok
// false: the caller queues its datagram until a Resolved or Unreachable
// action names a; a new entry sends the first solicitation. Using a stale
// entry starts the delay before probing it.
func (c *Cache) Lookup(a netip.Addr, now time.Time) (mac header.MAC, ok bool, acts []Action) {
	e := c.entries[a]
	if e == nil {
		e, acts = c.add(a, now)
		e.state, e.probes, e.deadline = Incomplete, 1, now.Add(c.cfg.RetransTimer)
		return header.MAC{}, false, append(acts, Action{Kind: SendNS, Target: a})
	}
	e.used = now
	switch e.state {
	case Incomplete:
		return header.MAC{}, false, nil
	case Stale:
		e.state, e.deadline = Delay, now.Add(DelayFirstProbe)
	}
	return e.mac, true, nil
}

// Confirm: an upper layer saw a is reachable (new data acknowledged, RFC
// 4861 §7.3.1), which saves a probe.
func (c *Cache) Confirm(a netip.Addr, now time.Time) {
	if e := c.entries[a]; e != nil && e.state != Incomplete {
		e.state, e.deadline, e.probes = Reachable, now.Add(c.reachable), 0
	}
}

// Solicited records what a solicitation or a router's message from src
// said of its link-layer address (RFC 4861 §7.2.3, §6.3.4): a new or
// changed address makes the entry stale; an incomplete entry is resolved
// by it. router marks a router's advertisement.
func (c *Cache) Solicited(src netip.Addr, mac header.MAC, router bool, now time.Time) []Action {
	if !src.IsValid() || src.IsUnspecified() || src.IsMulticast() {
		return nil
	}
	e := c.entries[src]
	if e == nil {
		e, acts := c.add(src, now)
		e.state, e.mac, e.router = Stale, mac, router
		return acts
	}
	e.used = now
	e.router = e.router || router
	if e.state == Incomplete {
		e.state, e.mac = Stale, mac
		return []Action{{Kind: Resolved, Target: src, MAC: mac}}
	}
	if e.mac != mac {
		e.state, e.mac = Stale, mac
	}
	return nil
}

// Advertised processes a Neighbor Advertisement for target with flags
// (header.NARouter, NASolicited, NAOverride) and its target link-layer
// address, if it had one (RFC 4861 §7.2.5). An advertisement for a target
// with no entry is ignored: only solicitations create entries.
func (c *Cache) Advertised(target netip.Addr, flags uint8, mac *header.MAC, now time.Time) []Action {
	e := c.entries[target]
	if e == nil {
		return nil
	}
	solicited, override := flags&header.NASolicited != 0, flags&header.NAOverride != 0
	if e.state == Incomplete {
		if mac == nil {
			return nil
		}
		e.mac, e.router, e.used = *mac, flags&header.NARouter != 0, now
		e.state, e.probes = Stale, 0
		if solicited {
			e.state, e.deadline = Reachable, now.Add(c.reachable)
		}
		return []Action{{Kind: Resolved, Target: target, MAC: *mac}}
	}
	changed := mac != nil && *mac != e.mac
	if !override && changed {
		// Not to be believed over what we have; but what we have is
		// now in doubt.
		if e.state == Reachable {
			e.state = Stale
		}
		return nil
	}
	if changed {
		e.mac = *mac
	}
	switch {
	case solicited:
		e.state, e.deadline, e.probes = Reachable, now.Add(c.reachable), 0
	case changed:
		e.state = Stale
	}
	e.router = flags&header.NARouter != 0
	return nil
}

// Next is when Tick has work to do; zero if never.
func (c *Cache) Next() time.Time {
	var next time.Time
	for _, e := range c.entries {
		if e.state != Stale && (next.IsZero() || e.deadline.Before(next)) {
			next = e.deadline
		}
	}
	return next
}

// Tick does what is due at now: solicitations again, reachable entries
// going stale, probes after the delay, and entries given up (RFC 4861
// §7.3.3).
func (c *Cache) Tick(now time.Time) []Action {
	var acts []Action
	for a, e := range c.entries {
		if e.state == Stale || now.Before(e.deadline) {
			continue
		}
		switch e.state {
		case Reachable:
			e.state = Stale
		case Delay:
			e.state, e.probes, e.deadline = Probe, 1, now.Add(c.cfg.RetransTimer)
			acts = append(acts, Action{Kind: SendNS, Target: a, MAC: e.mac, Unicast: true})
		case Incomplete:
			if e.probes >= MaxMulticastSolicit {
				delete(c.entries, a)
				acts = append(acts, Action{Kind: Unreachable, Target: a})
				continue
			}
			e.probes++
			e.deadline = now.Add(c.cfg.RetransTimer)
			acts = append(acts, Action{Kind: SendNS, Target: a})
		case Probe:
			if e.probes >= MaxUnicastSolicit {
				delete(c.entries, a)
				continue
			}
			e.probes++
			e.deadline = now.Add(c.cfg.RetransTimer)
			acts = append(acts, Action{Kind: SendNS, Target: a, MAC: e.mac, Unicast: true})
		}
	}
	return acts
}

// add makes room and adds an entry for a. A full cache gives up its least
// recently used entry that is not resolving, or, if every one is, the
// least recently used of those, whose waiting datagrams the Unreachable
// action returned drops.
func (c *Cache) add(a netip.Addr, now time.Time) (*entry, []Action) {
	var acts []Action
	if len(c.entries) >= c.cfg.MaxEntries {
		var victim netip.Addr
		var ve *entry
		for k, e := range c.entries {
			better := ve == nil ||
				(ve.state == Incomplete && e.state != Incomplete) ||
				((ve.state == Incomplete) == (e.state == Incomplete) && e.used.Before(ve.used))
			if better {
				victim, ve = k, e
			}
		}
		delete(c.entries, victim)
		if ve.state == Incomplete {
			acts = append(acts, Action{Kind: Unreachable, Target: victim})
		}
	}
	e := &entry{used: now}
	c.entries[a] = e
	return e, acts
}
