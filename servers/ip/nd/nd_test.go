package nd

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"keepnet/servers/header"
)

var (
	t0      = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	peer    = netip.MustParseAddr("fe80::1")
	peerMAC = header.MAC{2, 0, 0, 0, 0, 1}
	newMAC  = header.MAC{2, 0, 0, 0, 0, 2}
	ourMAC  = header.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}
)

func kinds(acts []Action) []Kind {
	var k []Kind
	for _, a := range acts {
		k = append(k, a.Kind)
	}
	return k
}

func wantState(t *testing.T, c *Cache, a netip.Addr, want State, wantMAC header.MAC) {
	t.Helper()
	st, mac, ok := c.State(a)
	if !ok || st != want || mac != wantMAC {
		t.Fatalf("entry %v: %v %v (present %v), want %v %v", a, st, mac, ok, want, wantMAC)
	}
}

// A lookup resolves by multicast solicitations, 3 a second apart, then
// gives up and says so (RFC 4861 §7.2.2).
func TestResolveFails(t *testing.T) {
	c := NewCache(CacheConfig{})
	_, ok, acts := c.Lookup(peer, t0)
	if ok || !slices.Equal(kinds(acts), []Kind{SendNS}) || acts[0].Unicast {
		t.Fatalf("first Lookup = %v, %+v; want a multicast NS", ok, acts)
	}
	if _, ok, acts := c.Lookup(peer, t0.Add(100*time.Millisecond)); ok || acts != nil {
		t.Fatalf("Lookup while resolving = %v, %+v; want nothing more sent", ok, acts)
	}
	now := t0
	for i := 2; i <= MaxMulticastSolicit; i++ {
		now = c.Next()
		if got := now.Sub(t0); got != time.Duration(i-1)*time.Second {
			t.Fatalf("solicitation %d due %v after the first, want %ds", i, got, i-1)
		}
		if acts := c.Tick(now); !slices.Equal(kinds(acts), []Kind{SendNS}) {
			t.Fatalf("Tick for solicitation %d = %+v", i, acts)
		}
	}
	if acts := c.Tick(c.Next()); !slices.Equal(kinds(acts), []Kind{Unreachable}) || acts[0].Target != peer {
		t.Fatalf("after %d solicitations Tick = %+v, want Unreachable", MaxMulticastSolicit, acts)
	}
	if c.Len() != 0 {
		t.Errorf("the cache keeps %d entries after giving up", c.Len())
	}
}

// The whole life of an entry: resolved by a solicited advertisement,
// reachable, stale, used (delay), probed by unicast, confirmed again.
func TestNeighborUnreachabilityDetection(t *testing.T) {
	c := NewCache(CacheConfig{BaseReachableTime: 30 * time.Second})
	c.Lookup(peer, t0)
	acts := c.Advertised(peer, header.NASolicited|header.NAOverride, &peerMAC, t0.Add(time.Millisecond))
	if !slices.Equal(kinds(acts), []Kind{Resolved}) || acts[0].MAC != peerMAC {
		t.Fatalf("solicited NA = %+v, want Resolved at %v", acts, peerMAC)
	}
	wantState(t, c, peer, Reachable, peerMAC)
	stale := c.Next()
	if d := stale.Sub(t0); d < 15*time.Second || d > 45*time.Second {
		t.Fatalf("reachable for %v, want ReachableTime within [15s, 45s]", d)
	}
	if acts := c.Tick(stale); len(acts) != 0 {
		t.Fatalf("going stale sent %+v", acts)
	}
	wantState(t, c, peer, Stale, peerMAC)
	if !c.Next().IsZero() {
		t.Fatalf("a stale entry has a timer: %v", c.Next())
	}
	used := stale.Add(time.Minute)
	if mac, ok, _ := c.Lookup(peer, used); !ok || mac != peerMAC {
		t.Fatalf("Lookup of a stale entry = %v, %v; want it used", mac, ok)
	}
	wantState(t, c, peer, Delay, peerMAC)
	if c.Next() != used.Add(DelayFirstProbe) {
		t.Fatalf("delay ends at %v, want %v", c.Next(), used.Add(DelayFirstProbe))
	}
	acts = c.Tick(used.Add(DelayFirstProbe))
	if len(acts) != 1 || acts[0].Kind != SendNS || !acts[0].Unicast || acts[0].MAC != peerMAC {
		t.Fatalf("after the delay Tick = %+v, want a unicast NS to %v", acts, peerMAC)
	}
	wantState(t, c, peer, Probe, peerMAC)
	c.Advertised(peer, header.NASolicited, nil, used.Add(DelayFirstProbe+time.Millisecond))
	wantState(t, c, peer, Reachable, peerMAC)

	// Probes unanswered: the entry goes, with no Unreachable (nothing waits).
	c.Tick(c.Next())
	c.Lookup(peer, c.Next())
	now := c.Next()
	for range MaxUnicastSolicit {
		c.Tick(now)
		now = c.Next()
	}
	if acts := c.Tick(now); len(acts) != 0 || c.Len() != 0 {
		t.Fatalf("after %d unanswered probes: %+v, %d entries; want the entry gone quietly", MaxUnicastSolicit, acts, c.Len())
	}
}

// RFC 4861 §7.2.5's table for an entry that exists.
func TestAdvertisementRules(t *testing.T) {
	for _, tt := range []struct {
		name    string
		flags   uint8
		mac     *header.MAC
		want    State
		wantMAC header.MAC
	}{
		{"no override, other address: reachable goes stale, address kept", header.NASolicited, &newMAC, Stale, peerMAC},
		{"override, other address, unsolicited: stale at the new address", header.NAOverride, &newMAC, Stale, newMAC},
		{"override, solicited: reachable at the new address", header.NAOverride | header.NASolicited, &newMAC, Reachable, newMAC},
		{"same address, unsolicited: unchanged", 0, &peerMAC, Reachable, peerMAC},
		{"no address, solicited: reachable", header.NASolicited, nil, Reachable, peerMAC},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(CacheConfig{})
			c.Lookup(peer, t0)
			c.Advertised(peer, header.NASolicited, &peerMAC, t0)
			c.Advertised(peer, tt.flags, tt.mac, t0.Add(time.Second))
			wantState(t, c, peer, tt.want, tt.wantMAC)
		})
	}
	c := NewCache(CacheConfig{})
	if acts := c.Advertised(peer, header.NASolicited|header.NAOverride, &peerMAC, t0); acts != nil || c.Len() != 0 {
		t.Errorf("an advertisement nobody asked for made an entry: %+v", acts)
	}
	c.Lookup(peer, t0)
	if acts := c.Advertised(peer, header.NASolicited, nil, t0); acts != nil {
		t.Errorf("an advertisement without an address resolved an incomplete entry: %+v", acts)
	}
}

// A solicitation's source address creates a stale entry, resolves an
// incomplete one, and makes a changed one stale (§7.2.3).
func TestSolicitationLearns(t *testing.T) {
	c := NewCache(CacheConfig{})
	c.Solicited(peer, peerMAC, false, t0)
	wantState(t, c, peer, Stale, peerMAC)
	c.Confirm(peer, t0)
	c.Solicited(peer, newMAC, false, t0)
	wantState(t, c, peer, Stale, newMAC)
	other := netip.MustParseAddr("fe80::2")
	c.Lookup(other, t0)
	if acts := c.Solicited(other, peerMAC, false, t0); !slices.Equal(kinds(acts), []Kind{Resolved}) {
		t.Errorf("a solicitation from an address being resolved = %+v, want Resolved", acts)
	}
	if c.Solicited(netip.IPv6Unspecified(), peerMAC, false, t0); c.Len() != 2 {
		t.Errorf("a DAD probe's unspecified source was learned")
	}
}

// A full cache gives up the least recently used resolved entry first, and
// says so when it must give up one being resolved.
func TestCacheBounded(t *testing.T) {
	c := NewCache(CacheConfig{MaxEntries: 2})
	a, b, d := netip.MustParseAddr("fe80::a"), netip.MustParseAddr("fe80::b"), netip.MustParseAddr("fe80::d")
	c.Solicited(a, peerMAC, false, t0)
	c.Solicited(b, peerMAC, false, t0.Add(time.Second))
	c.Lookup(d, t0.Add(2*time.Second))
	if _, _, ok := c.State(a); ok || c.Len() != 2 {
		t.Fatalf("the oldest entry was kept (%d entries)", c.Len())
	}
	e := netip.MustParseAddr("fe80::e")
	f := netip.MustParseAddr("fe80::f")
	c.Lookup(e, t0.Add(3*time.Second)) // evicts b, resolved
	_, _, acts := c.Lookup(f, t0.Add(4*time.Second))
	if !slices.Equal(kinds(acts), []Kind{Unreachable, SendNS}) || acts[0].Target != d {
		t.Errorf("evicting a resolving entry: %+v, want Unreachable for %v then the new NS", acts, d)
	}
}

func startAutoconf(t *testing.T, cfg AutoconfConfig) (*Autoconf, time.Time) {
	t.Helper()
	cfg.MAC = ourMAC
	a, acts := NewAutoconf(cfg, t0)
	ll := header.LinkLocal(ourMAC)
	if len(acts) < 1 || acts[0] != (Action{Kind: Join, Target: ll}) {
		t.Fatalf("NewAutoconf = %+v, want to join %v's group first", acts, ll)
	}
	if cfg.DADTransmits >= 0 && (a.IsOurs(ll) || !a.IsTentative(ll)) {
		t.Fatal("the link-local address is usable before DAD")
	}
	start := a.Next()
	if d := start.Sub(t0); d < 0 || d >= MaxRtrSolicitationDelay {
		t.Fatalf("DAD and RS start %v after the interface, want within a second", d)
	}
	return a, start
}

// The link-local address: DAD (one solicitation from ::), then ready a
// second later; router solicitation 3 times, 4 s apart.
func TestLinkLocalDADAndSolicitation(t *testing.T) {
	a, start := startAutoconf(t, AutoconfConfig{})
	ll := header.LinkLocal(ourMAC)
	acts := a.Tick(start)
	if !slices.Equal(kinds(acts), []Kind{SendRS, SendNS}) || !acts[1].DAD || acts[1].Target != ll {
		t.Fatalf("first Tick = %+v, want an RS and a DAD NS for %v", acts, ll)
	}
	acts = a.Tick(start.Add(RetransTimer))
	if !slices.Equal(kinds(acts), []Kind{AddrReady}) || !a.IsOurs(ll) {
		t.Fatalf("a second later Tick = %+v, want %v ready", acts, ll)
	}
	if src, ok := a.Source(peer); !ok || src != ll {
		t.Errorf("Source(%v) = %v, %v; want %v", peer, src, ok, ll)
	}
	var rs int
	now := start
	for now = a.Next(); !now.IsZero(); now = a.Next() {
		for _, x := range a.Tick(now) {
			if x.Kind == SendRS {
				rs++
			}
		}
	}
	if rs != MaxRtrSolicitations-1 {
		t.Errorf("%d more router solicitations, want %d", rs, MaxRtrSolicitations-1)
	}
}

// Another node answering for our tentative address: it is given up.
func TestDADConflict(t *testing.T) {
	a, start := startAutoconf(t, AutoconfConfig{})
	ll := header.LinkLocal(ourMAC)
	a.Tick(start)
	acts := a.Conflict(ll)
	if !slices.Equal(kinds(acts), []Kind{Leave, AddrGone}) || !acts[1].Duplicate {
		t.Fatalf("Conflict = %+v, want to leave the group and give the address up", acts)
	}
	if a.IsTentative(ll) || a.IsOurs(ll) || len(a.Addresses()) != 0 {
		t.Fatalf("the duplicate address stayed: %+v", a.Addresses())
	}
	if _, ok := a.Source(peer); ok {
		t.Error("a source address with none left")
	}
}

// A router advertisement: default router, on-link prefix, a SLAAC address
// from it after DAD, MTU and hop limit; its lifetimes end.
func TestRouterAdvertisement(t *testing.T) {
	a, start := startAutoconf(t, AutoconfConfig{LinkMTU: 1500})
	a.Tick(start)
	a.Tick(start.Add(RetransTimer))
	router := netip.MustParseAddr("fe80::1")
	now := start.Add(2 * time.Second)
	acts := a.RouterAdvert(router, RA{Lifetime: 30 * time.Minute, HopLimit: 60, MTU: 1400, Prefixes: []header.PrefixInfo{
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), OnLink: true, Autonomous: true, ValidLifetime: 3600, PreferredLifetime: 1800},
		{Prefix: netip.MustParsePrefix("2001:db8:2::/48"), Autonomous: true, ValidLifetime: 3600, PreferredLifetime: 1800},
		{Prefix: netip.MustParsePrefix("2001:db8:3::/64"), Autonomous: true, ValidLifetime: 60, PreferredLifetime: 120},
	}}, now)
	global := netip.MustParseAddr("2001:db8:1:0:5054:ff:fe12:3456")
	if !slices.Equal(kinds(acts), []Kind{Join}) || acts[0].Target != global {
		t.Fatalf("RouterAdvert = %+v, want to join %v's group (and nothing from the /48 or the prefix preferred past valid)", acts, global)
	}
	if a.MTU() != 1400 || a.HopLimit() != 60 {
		t.Errorf("MTU, hop limit = %d, %d; want 1400, 60", a.MTU(), a.HopLimit())
	}
	acts = a.Tick(a.Next())
	if !slices.Equal(kinds(acts), []Kind{SendNS}) || !acts[0].DAD {
		t.Fatalf("Tick = %+v, want the global address's DAD", acts)
	}
	acts = a.Tick(a.Next())
	if !slices.Equal(kinds(acts), []Kind{AddrReady}) || acts[0].Target != global {
		t.Fatalf("Tick = %+v, want %v ready", acts, global)
	}
	off := netip.MustParseAddr("2001:db8:9::1")
	if hop, ok := a.NextHop(off, nil); !ok || hop != router {
		t.Errorf("NextHop(%v) = %v, %v; want the router", off, hop, ok)
	}
	on := netip.MustParseAddr("2001:db8:1::9")
	if hop, ok := a.NextHop(on, nil); !ok || hop != on {
		t.Errorf("NextHop(%v) = %v, %v; want on-link", on, hop, ok)
	}
	if src, _ := a.Source(off); src != global {
		t.Errorf("Source(%v) = %v, want %v", off, src, global)
	}
	// Preferred for 30 minutes, then deprecated; gone after the hour,
	// and the router after its 30 minutes.
	a.Tick(now.Add(30*time.Minute + time.Second))
	if addrs := a.Addresses(); addrs[1].State != Deprecated {
		t.Errorf("after its preferred lifetime %v is %v", global, addrs[1].State)
	}
	if _, ok := a.NextHop(off, nil); ok {
		t.Error("a router past its lifetime is still used")
	}
	acts = a.Tick(now.Add(time.Hour + time.Second))
	if !slices.Equal(kinds(acts), []Kind{Leave, AddrGone}) || a.IsOurs(global) {
		t.Errorf("after its valid lifetime: %+v, ours %v", acts, a.IsOurs(global))
	}
}

// RFC 4862 §5.5.3 e: an advertisement cannot cut a SLAAC address's valid
// lifetime below two hours.
func TestTwoHourRule(t *testing.T) {
	a, start := startAutoconf(t, AutoconfConfig{DADTransmits: -1})
	p := netip.MustParsePrefix("2001:db8:1::/64")
	ra := func(valid uint32) RA {
		return RA{Prefixes: []header.PrefixInfo{{Prefix: p, Autonomous: true, ValidLifetime: valid, PreferredLifetime: 0}}}
	}
	a.RouterAdvert(peer, ra(86400), start)
	a.RouterAdvert(peer, ra(10), start)
	if got := a.Addresses()[1].ValidUntil.Sub(start); got != 2*time.Hour {
		t.Errorf("a day cut to 10 s: valid for %v, want 2h", got)
	}
	a.RouterAdvert(peer, ra(10), start.Add(time.Hour))
	if got := a.Addresses()[1].ValidUntil.Sub(start); got != 2*time.Hour {
		t.Errorf("with 1 h left, cut to 10 s: valid until %v after start, want 2h (ignored)", got)
	}
	a.RouterAdvert(peer, ra(3*3600), start.Add(time.Hour))
	if got := a.Addresses()[1].ValidUntil.Sub(start); got != 4*time.Hour {
		t.Errorf("raised to 3 h an hour in: valid until %v after start, want 4h", got)
	}
}

// Operator-given addresses go through DAD too and make their prefix
// on-link.
func TestStaticAddress(t *testing.T) {
	p := netip.MustParsePrefix("2001:db8:5::7/64")
	a, start := startAutoconf(t, AutoconfConfig{Static: []netip.Prefix{p}})
	if a.IsOurs(p.Addr()) {
		t.Fatal("a static address usable before DAD")
	}
	a.Tick(start)
	a.Tick(start.Add(RetransTimer))
	if !a.IsOurs(p.Addr()) {
		t.Fatal("the static address is not ours after DAD")
	}
	if hop, ok := a.NextHop(netip.MustParseAddr("2001:db8:5::1"), nil); !ok || !hop.IsValid() {
		t.Error("the static prefix is not on-link")
	}
}

// An advertisement flood — a new router and a new /64 in each — leaves an
// interface with MaxRouters routers, MaxOnLink prefixes and MaxAddresses
// addresses at most, the rest refused and counted; what was there stays.
func TestRouterAdvertisementFlood(t *testing.T) {
	a, start := startAutoconf(t, AutoconfConfig{LinkMTU: 1500})
	now := start.Add(2 * time.Second)
	a.Tick(start)
	a.Tick(now)
	joins := 0
	for i := range 10000 {
		router := netip.AddrFrom16([16]byte{0xfe, 0x80, 14: byte(i >> 8), 15: byte(i)})
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 8), 5: byte(i)}), 64)
		acts := a.RouterAdvert(router, RA{Lifetime: time.Hour, Prefixes: []header.PrefixInfo{
			{Prefix: p, OnLink: true, Autonomous: true, ValidLifetime: 3600, PreferredLifetime: 1800}}}, now)
		for _, act := range acts {
			if act.Kind == Join {
				joins++
			}
		}
	}
	if n := len(a.Addresses()); n > MaxAddresses || joins != MaxAddresses-1 {
		t.Errorf("%d addresses, %d groups joined after 10,000 prefixes; want at most %d, and %d joins (the link-local was there)", n, joins, MaxAddresses, MaxAddresses-1)
	}
	if len(a.routers) != MaxRouters || len(a.onLink) != MaxOnLink {
		t.Errorf("%d routers, %d on-link prefixes; want %d and %d", len(a.routers), len(a.onLink), MaxRouters, MaxOnLink)
	}
	if want := uint64(3*10000 - MaxRouters - MaxOnLink - (MaxAddresses - 1)); a.Refused() != want {
		t.Errorf("Refused() = %d, want %d", a.Refused(), want)
	}
	if !a.IsOurs(header.LinkLocal(a.cfg.MAC)) {
		t.Error("the link-local address was lost in the flood")
	}
}

// What an interface kept comes back in a new one at once: addresses in use
// without DAD, routers, prefixes; what ran out meanwhile does not; bytes
// that are not a kept state are refused and the interface starts anew.
func TestKeepAndRestore(t *testing.T) {
	a, start := startAutoconf(t, AutoconfConfig{LinkMTU: 1500})
	a.Tick(start)
	a.Tick(start.Add(RetransTimer))
	router := netip.MustParseAddr("fe80::1")
	now := start.Add(2 * time.Second)
	a.RouterAdvert(router, RA{Lifetime: 30 * time.Minute, MTU: 1400, Prefixes: []header.PrefixInfo{
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), OnLink: true, Autonomous: true, ValidLifetime: 3600, PreferredLifetime: 1800},
		{Prefix: netip.MustParsePrefix("2001:db8:2::/64"), Autonomous: true, ValidLifetime: 60, PreferredLifetime: 60},
	}}, now)
	a.Tick(a.Next())
	a.Tick(a.Next())
	global := netip.MustParseAddr("2001:db8:1:0:5054:ff:fe12:3456")
	short := netip.MustParseAddr("2001:db8:2:0:5054:ff:fe12:3456")
	if !a.IsOurs(global) || !a.IsOurs(short) {
		t.Fatalf("SLAAC addresses not in use: %+v", a.Addresses())
	}
	kept := a.Marshal()

	later := now.Add(2 * time.Minute) // the /60 s one ran out meanwhile
	b, acts, err := RestoreAutoconf(AutoconfConfig{MAC: a.cfg.MAC, LinkMTU: 1500}, kept, later)
	if err != nil {
		t.Fatal(err)
	}
	if !b.IsOurs(global) || !b.IsOurs(header.LinkLocal(a.cfg.MAC)) || b.IsOurs(short) || b.IsTentative(short) {
		t.Errorf("restored addresses %+v: want %v and the link-local in use, %v gone", b.Addresses(), global, short)
	}
	ready := 0
	for _, act := range acts {
		if act.Kind == AddrReady && act.Restored {
			ready++
		}
	}
	if ready != 2 {
		t.Errorf("restore actions %+v, want 2 restored AddrReady", acts)
	}
	if hop, ok := b.NextHop(netip.MustParseAddr("2001:db8:9::1"), nil); !ok || hop != router || b.MTU() != 1400 {
		t.Errorf("restored router %v, %v, MTU %d; want %v and 1400", hop, ok, b.MTU(), router)
	}
	for _, bad := range [][]byte{nil, {2}, kept[:len(kept)-3], append(append([]byte(nil), kept...), 0)} {
		c, _, err := RestoreAutoconf(AutoconfConfig{MAC: a.cfg.MAC}, bad, later)
		if !errors.Is(err, ErrBadState) || c == nil || c.IsOurs(global) {
			t.Errorf("RestoreAutoconf(% x...) = %v, want ErrBadState and a fresh start", bad[:min(len(bad), 4)], err)
		}
	}
}
