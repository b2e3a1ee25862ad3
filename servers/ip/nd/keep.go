package nd

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// What a restarted IP server keeps of an interface's autoconfiguration:
// its addresses as they were (a process restart is no new link, so an
// address that had passed DAD is used at once, as the kernel's would be
// across a daemon restart), its default routers and on-link prefixes with
// their lifetimes, the link's MTU and hop limit. The neighbour cache is
// not kept: the next solicitation learns it again, as the ARP cache.
//
// Stored form, big-endian, times as Unix seconds (0: forever):
//
//	u8 version (1), u32 MTU, u8 hop limit,
//	u8 addresses, each: 16 address, u8 prefix length, u8 state, u8 static, u64 valid, u64 preferred
//	u8 routers, each: 16 address, u64 until
//	u8 on-link prefixes, each: 16 address, u8 length, u64 until

// ErrBadState: kept autoconfiguration bytes this version cannot read.
var ErrBadState = errors.New("nd: bad kept autoconfiguration")

const keepVersion = 1

// Marshal is a's state in its stored form.
func (a *Autoconf) Marshal() []byte {
	b := []byte{keepVersion}
	b = binary.BigEndian.AppendUint32(b, a.mtu)
	b = append(b, a.hopLimit, byte(len(a.addrs)))
	for _, ad := range a.addrs {
		v := ad.Prefix.Addr().As16()
		b = append(append(b, v[:]...), byte(ad.Prefix.Bits()), byte(ad.State), boolByte(ad.Static))
		b = appendTime(appendTime(b, ad.ValidUntil), ad.PreferredUntil)
	}
	b = append(b, byte(len(a.routers)))
	for r, t := range a.routers {
		v := r.As16()
		b = appendTime(append(b, v[:]...), t)
	}
	b = append(b, byte(len(a.onLink)))
	for p, t := range a.onLink {
		v := p.Addr().As16()
		b = appendTime(append(append(b, v[:]...), byte(p.Bits())), t)
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.BigEndian.AppendUint64(b, 0)
	}
	return binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
}

// reader takes fields off a stored form; a short one sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if len(r.b) < n {
		r.bad, r.b = true, nil
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) time() time.Time {
	if s := binary.BigEndian.Uint64(r.take(8)); s != 0 {
		return time.Unix(int64(s), 0)
	}
	return time.Time{}
}

// RestoreAutoconf starts an interface as NewAutoconf does, with what a
// predecessor kept (Marshal): its addresses in use are ours at once, no DAD
// (tentative ones start theirs again), its routers and prefixes until
// their lifetimes end, expired ones left out. The link-local and static
// addresses of cfg are there whatever was kept. A router solicitation
// still goes out: what routers say now wins.
func RestoreAutoconf(cfg AutoconfConfig, kept []byte, now time.Time) (*Autoconf, []Action, error) {
	a, acts := NewAutoconf(cfg, now)
	r := &reader{b: kept}
	if v := r.take(1)[0]; v != keepVersion {
		return a, acts, ErrBadState
	}
	mtu, hops := binary.BigEndian.Uint32(r.take(4)), r.take(1)[0]
	type kaddr struct {
		p              netip.Prefix
		state          AddrState
		static         bool
		valid, prefers time.Time
	}
	var addrs []kaddr
	for n := int(r.take(1)[0]); n > 0; n-- {
		ip := netip.AddrFrom16([16]byte(r.take(16)))
		bits, state, static := int(r.take(1)[0]), AddrState(r.take(1)[0]), r.take(1)[0] == 1
		valid, prefers := r.time(), r.time()
		if bits > 128 || state > Deprecated {
			r.bad = true
		}
		addrs = append(addrs, kaddr{netip.PrefixFrom(ip, bits), state, static, valid, prefers})
	}
	routers := map[netip.Addr]time.Time{}
	for n := int(r.take(1)[0]); n > 0; n-- {
		routers[netip.AddrFrom16([16]byte(r.take(16)))] = r.time()
	}
	onLink := map[netip.Prefix]time.Time{}
	for n := int(r.take(1)[0]); n > 0; n-- {
		ip := netip.AddrFrom16([16]byte(r.take(16)))
		p, err := ip.Prefix(int(r.take(1)[0]))
		if err != nil {
			r.bad = true
		}
		onLink[p] = r.time()
	}
	if r.bad || len(r.b) > 0 {
		return a, acts, ErrBadState
	}
	if mtu >= 1280 && (cfg.LinkMTU == 0 || mtu <= cfg.LinkMTU) {
		a.mtu = mtu
	}
	if hops != 0 {
		a.hopLimit = hops
	}
	for _, k := range addrs {
		if !k.valid.IsZero() && !now.Before(k.valid) {
			continue // ran out meanwhile
		}
		ad := a.find(k.p.Addr())
		if ad == nil {
			if k.static || len(a.addrs) >= MaxAddresses {
				continue // an operator's address no longer given; or too many
			}
			acts = append(acts, a.add(k.p, k.valid, k.prefers, false, now)...)
			ad = a.find(k.p.Addr())
		}
		if k.state != Tentative && ad.State == Tentative {
			ad.State = k.state
			acts = append(acts, Action{Kind: AddrReady, Target: ad.Prefix.Addr(), Restored: true})
		}
		if !ad.Static {
			ad.ValidUntil, ad.PreferredUntil = k.valid, k.prefers
		}
	}
	for rt, t := range routers {
		if now.Before(t) && len(a.routers) < MaxRouters {
			a.routers[rt] = t
		}
	}
	for p, t := range onLink {
		if (t.IsZero() || now.Before(t)) && len(a.onLink) < MaxOnLink {
			a.onLink[p] = t
		}
	}
	return a, acts, nil
}
