package nd

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"keepnet/servers/header"
)

// AddrState is where one of our addresses is in its life (RFC 4862 §2).
type AddrState uint8

const (
	Tentative  AddrState = iota // duplicate address detection under way: not ours to use yet
	Preferred                   // in use
	Deprecated                  // its preferred lifetime ended: kept for what uses it, not chosen for new
)

func (s AddrState) String() string { return [...]string{"tentative", "preferred", "deprecated"}[s] }

// Address is one of our IPv6 addresses.
type Address struct {
	Prefix         netip.Prefix // the address and its prefix length
	State          AddrState
	Static         bool      // given by the operator, not by a router
	ValidUntil     time.Time // zero: forever
	PreferredUntil time.Time // zero: forever
	dadSent        int       // DAD solicitations sent
	dadAt          time.Time // the next DAD step
}

// RFC 4861 §10's and RFC 4862's host constants.
const (
	MaxRtrSolicitationDelay = time.Second
	RtrSolicitationInterval = 4 * time.Second
	MaxRtrSolicitations     = 3
	DupAddrDetectTransmits  = 1
	// A flood of advertisements (random routers, random prefixes) must
	// not grow an interface's state without end: past these, new routers,
	// on-link prefixes and addresses are refused (Refused counts them).
	// Linux keeps 16 addresses an interface (max_addresses).
	MaxRouters   = 16
	MaxOnLink    = 64
	MaxAddresses = 16
	// twoHours guards a SLAAC address's valid lifetime against a forged
	// advertisement that would end it (RFC 4862 §5.5.3 e).
	twoHours = 2 * time.Hour
)

// AutoconfConfig says how an interface configures itself.
type AutoconfConfig struct {
	MAC          header.MAC
	LinkMTU      uint32         // the interface's MTU; a router's MTU option above it is ignored
	DADTransmits int            // solicitations per DAD (default 1; negative: no DAD)
	Static       []netip.Prefix // operator-given addresses (--ip6), with DAD too
	NoSLAAC      bool           // take no addresses from routers' prefixes
	Rand         *rand.Rand     // for the initial delays; nil: a fixed seed
}

// RA is what the IP server read from a valid Router Advertisement.
type RA struct {
	Lifetime  time.Duration // as a default router; 0: not one
	Reachable time.Duration // 0: unspecified
	Retrans   time.Duration // 0: unspecified
	HopLimit  uint8         // 0: unspecified
	MTU       uint32        // 0: no MTU option
	Prefixes  []header.PrefixInfo
}

// Autoconf is one interface's IPv6 configuration: its addresses, with DAD
// and SLAAC, its default routers and on-link prefixes, and router
// solicitation. It is not safe for concurrent use.
type Autoconf struct {
	cfg      AutoconfConfig
	addrs    []*Address
	routers  map[netip.Addr]time.Time   // default routers and when each expires
	onLink   map[netip.Prefix]time.Time // on-link prefixes and when each expires (zero: never)
	rsSent   int
	rsAt     time.Time // the next router solicitation; zero: no more
	mtu      uint32
	hopLimit uint8
	refused  uint64 // routers, prefixes and addresses over the Max* bounds
}

// Refused is how many routers, on-link prefixes and addresses were not
// taken, over MaxRouters, MaxOnLink and MaxAddresses.
func (a *Autoconf) Refused() uint64 { return a.refused }

// NewAutoconf starts an interface at now: its link-local address
// (fe80::/64 with the MAC's interface identifier) and the operator's
// addresses become tentative, their solicited-node groups are joined, and
// DAD and router solicitation start after a random delay of up to a
// second (RFC 4862 §5.4.2, RFC 4861 §6.3.7).
func NewAutoconf(cfg AutoconfConfig, now time.Time) (*Autoconf, []Action) {
	if cfg.DADTransmits == 0 {
		cfg.DADTransmits = DupAddrDetectTransmits
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(4862, 7))
	}
	a := &Autoconf{cfg: cfg, routers: map[netip.Addr]time.Time{}, onLink: map[netip.Prefix]time.Time{},
		mtu: cfg.LinkMTU, hopLimit: 64}
	start := now.Add(time.Duration(cfg.Rand.Int64N(int64(MaxRtrSolicitationDelay))))
	a.rsAt = start
	acts := a.add(netip.PrefixFrom(header.LinkLocal(cfg.MAC), 64), time.Time{}, time.Time{}, false, start)
	for _, p := range cfg.Static {
		acts = append(acts, a.add(p, time.Time{}, time.Time{}, true, start)...)
		a.onLink[p.Masked()] = time.Time{}
	}
	return a, acts
}

// add makes p one of our addresses, tentative until DAD at start says
// otherwise.
func (a *Autoconf) add(p netip.Prefix, valid, preferred time.Time, static bool, start time.Time) []Action {
	ad := &Address{Prefix: p, Static: static, ValidUntil: valid, PreferredUntil: preferred, dadAt: start}
	a.addrs = append(a.addrs, ad)
	acts := []Action{{Kind: Join, Target: p.Addr()}}
	if a.cfg.DADTransmits < 0 {
		ad.State = Preferred
		acts = append(acts, Action{Kind: AddrReady, Target: p.Addr()})
	}
	return acts
}

// find is our address a, or nil.
func (a *Autoconf) find(addr netip.Addr) *Address {
	for _, ad := range a.addrs {
		if ad.Prefix.Addr() == addr {
			return ad
		}
	}
	return nil
}

// IsOurs says whether addr is one of our addresses in use (not tentative).
func (a *Autoconf) IsOurs(addr netip.Addr) bool {
	ad := a.find(addr)
	return ad != nil && ad.State != Tentative
}

// IsTentative says whether addr is one of our addresses under DAD: a
// solicitation for it is not answered (RFC 4862 §5.4.3).
func (a *Autoconf) IsTentative(addr netip.Addr) bool {
	ad := a.find(addr)
	return ad != nil && ad.State == Tentative
}

// Addresses are our addresses, tentative ones included, oldest first.
func (a *Autoconf) Addresses() []Address {
	out := make([]Address, len(a.addrs))
	for i, ad := range a.addrs {
		out[i] = *ad
	}
	return out
}

// Conflict: another node uses or is trying addr — a solicitation for it
// from the unspecified address, or an advertisement of it (RFC 4862
// §5.4.3, §5.4.4). A tentative address is given up; one in use is kept
// (the node logs it: an operator must sort out a duplicate), and Conflict
// returns nothing for it.
func (a *Autoconf) Conflict(addr netip.Addr) []Action {
	i := slices.IndexFunc(a.addrs, func(ad *Address) bool { return ad.Prefix.Addr() == addr })
	if i < 0 || a.addrs[i].State != Tentative {
		return nil
	}
	a.addrs = slices.Delete(a.addrs, i, i+1)
	return []Action{{Kind: Leave, Target: addr}, {Kind: AddrGone, Target: addr, Duplicate: true}}
}

// RouterAdvert takes a valid Router Advertisement from src at now (RFC
// 4861 §6.3.4; its prefixes by RFC 4862 §5.5.3). Solicitation stops.
func (a *Autoconf) RouterAdvert(src netip.Addr, ra RA, now time.Time) []Action {
	a.rsAt = time.Time{}
	_, known := a.routers[src]
	switch {
	case ra.Lifetime == 0:
		delete(a.routers, src)
	case !known && len(a.routers) >= MaxRouters:
		a.refused++
	default:
		a.routers[src] = now.Add(ra.Lifetime)
	}
	if ra.HopLimit != 0 {
		a.hopLimit = ra.HopLimit
	}
	if ra.MTU >= header.IPv6MinimumMTU && (a.cfg.LinkMTU == 0 || ra.MTU <= a.cfg.LinkMTU) {
		a.mtu = ra.MTU
	}
	var acts []Action
	for _, pi := range ra.Prefixes {
		if pi.Prefix.Addr().IsLinkLocalUnicast() || pi.PreferredLifetime > pi.ValidLifetime {
			continue // §5.5.3 b, c
		}
		if pi.OnLink {
			_, known := a.onLink[pi.Prefix]
			switch {
			case pi.ValidLifetime == 0:
				delete(a.onLink, pi.Prefix)
			case !known && len(a.onLink) >= MaxOnLink:
				a.refused++
			default:
				a.onLink[pi.Prefix] = until(now, pi.ValidLifetime)
			}
		}
		if pi.Autonomous && !a.cfg.NoSLAAC {
			acts = append(acts, a.slaac(pi, now)...)
		}
	}
	return acts
}

// slaac forms or refreshes the address of an autonomous prefix (RFC 4862
// §5.5.3 d, e). The interface identifier is the MAC's modified EUI-64,
// so the prefix must be a /64.
func (a *Autoconf) slaac(pi header.PrefixInfo, now time.Time) []Action {
	if pi.Prefix.Bits() != 64 {
		return nil
	}
	addr := header.WithInterfaceID(pi.Prefix, header.InterfaceID(a.cfg.MAC))
	ad := a.find(addr)
	if ad == nil {
		if pi.ValidLifetime == 0 {
			return nil
		}
		if len(a.addrs) >= MaxAddresses {
			a.refused++
			return nil
		}
		return a.add(netip.PrefixFrom(addr, 64), until(now, pi.ValidLifetime), until(now, pi.PreferredLifetime), false, now)
	}
	if ad.Static {
		return nil
	}
	ad.PreferredUntil = until(now, pi.PreferredLifetime)
	if ad.State == Deprecated && pi.PreferredLifetime > 0 {
		ad.State = Preferred
	}
	received := until(now, pi.ValidLifetime)
	remaining := ad.ValidUntil.Sub(now)
	switch {
	case received.IsZero() || time.Duration(pi.ValidLifetime)*time.Second > twoHours || !ad.ValidUntil.IsZero() && received.After(ad.ValidUntil):
		ad.ValidUntil = received
	case ad.ValidUntil.IsZero() || remaining > twoHours:
		ad.ValidUntil = now.Add(twoHours)
	}
	return nil
}

// until is when a lifetime of secs seconds from now ends; zero for the
// infinite 0xffffffff.
func until(now time.Time, secs uint32) time.Time {
	if secs == 0xffffffff {
		return time.Time{}
	}
	return now.Add(time.Duration(secs) * time.Second)
}

// Next is when Tick has work to do; zero if never.
func (a *Autoconf) Next() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earlier(a.rsAt)
	for _, ad := range a.addrs {
		if ad.State == Tentative {
			earlier(ad.dadAt)
		}
		if ad.State == Preferred {
			earlier(ad.PreferredUntil)
		}
		earlier(ad.ValidUntil)
	}
	for _, t := range a.routers {
		earlier(t)
	}
	for _, t := range a.onLink {
		earlier(t)
	}
	return next
}

// Tick does what is due at now: DAD's solicitations and its end, router
// solicitations, and lifetimes that ended.
func (a *Autoconf) Tick(now time.Time) []Action {
	var acts []Action
	if !a.rsAt.IsZero() && !now.Before(a.rsAt) {
		a.rsSent++
		acts = append(acts, Action{Kind: SendRS})
		a.rsAt = time.Time{}
		if a.rsSent < MaxRtrSolicitations {
			a.rsAt = now.Add(RtrSolicitationInterval)
		}
	}
	kept := a.addrs[:0]
	for _, ad := range a.addrs {
		addr := ad.Prefix.Addr()
		if !ad.ValidUntil.IsZero() && !now.Before(ad.ValidUntil) {
			acts = append(acts, Action{Kind: Leave, Target: addr}, Action{Kind: AddrGone, Target: addr})
			continue
		}
		kept = append(kept, ad)
		switch {
		case ad.State == Tentative && !now.Before(ad.dadAt):
			if ad.dadSent < a.cfg.DADTransmits {
				ad.dadSent++
				ad.dadAt = now.Add(RetransTimer)
				acts = append(acts, Action{Kind: SendNS, Target: addr, DAD: true})
			} else {
				ad.State = Preferred
				acts = append(acts, Action{Kind: AddrReady, Target: addr})
			}
		case ad.State == Preferred && !ad.PreferredUntil.IsZero() && !now.Before(ad.PreferredUntil):
			ad.State = Deprecated
		}
	}
	clear(a.addrs[len(kept):])
	a.addrs = kept
	for r, t := range a.routers {
		if !now.Before(t) {
			delete(a.routers, r)
		}
	}
	for p, t := range a.onLink {
		if !t.IsZero() && !now.Before(t) {
			delete(a.onLink, p)
		}
	}
	return acts
}

// MTU and HopLimit are the link's, as routers advertise them.
func (a *Autoconf) MTU() uint32     { return a.mtu }
func (a *Autoconf) HopLimit() uint8 { return a.hopLimit }

// NextHop is where a datagram to dst goes on this link (RFC 4861 §5.2):
// dst itself if it is link-local or in an on-link prefix, else a default
// router — one the cache finds reachable if any (§6.3.6), else the
// lowest address, so that the choice is stable. ok false: no route (RFC
// 4943: with no router, a destination is not assumed on-link).
func (a *Autoconf) NextHop(dst netip.Addr, c *Cache) (netip.Addr, bool) {
	if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() || dst.IsInterfaceLocalMulticast() {
		return dst, true
	}
	for p := range a.onLink {
		if p.Contains(dst) {
			return dst, true
		}
	}
	routers := make([]netip.Addr, 0, len(a.routers))
	for r := range a.routers {
		routers = append(routers, r)
	}
	if len(routers) == 0 {
		return netip.Addr{}, false
	}
	slices.SortFunc(routers, netip.Addr.Compare)
	if c != nil {
		for _, r := range routers {
			if st, _, ok := c.State(r); ok && st != Incomplete && st != Probe {
				return r, true
			}
		}
	}
	return routers[0], true
}

// Source is the address to send to dst from (RFC 6724 §5, the rules a
// host with one interface needs): the same scope (a link-local
// destination gets the link-local address), preferred before deprecated,
// then the longest prefix shared with dst. ok false: no address usable.
func (a *Autoconf) Source(dst netip.Addr) (netip.Addr, bool) {
	linkLocal := dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast()
	var best *Address
	rank := func(ad *Address) (int, int, int) {
		scope := 0
		if ad.Prefix.Addr().IsLinkLocalUnicast() == linkLocal {
			scope = 1
		}
		pref := 0
		if ad.State == Preferred {
			pref = 1
		}
		return scope, pref, commonPrefix(ad.Prefix.Addr(), dst)
	}
	for _, ad := range a.addrs {
		if ad.State == Tentative {
			continue
		}
		if best == nil {
			best = ad
			continue
		}
		s1, p1, l1 := rank(ad)
		s2, p2, l2 := rank(best)
		if c := cmp.Or(cmp.Compare(s1, s2), cmp.Compare(p1, p2), cmp.Compare(l1, l2)); c > 0 {
			best = ad
		}
	}
	if best == nil {
		return netip.Addr{}, false
	}
	return best.Prefix.Addr(), true
}

// commonPrefix is how many leading bits a and b share.
func commonPrefix(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	for i := range x {
		if d := x[i] ^ y[i]; d != 0 {
			n := i * 8
			for d&0x80 == 0 {
				n++
				d <<= 1
			}
			return n
		}
	}
	return 128
}
