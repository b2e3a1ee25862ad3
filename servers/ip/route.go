package ip

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Route is one entry of a routing table: datagrams to Dst leave by
// interface Iface for the next hop Via, or, with Via invalid (a connected
// network), for the destination itself.
type Route struct {
	Dst   netip.Prefix
	Via   netip.Addr
	Iface int
}

// String is the route as `ip route` shows one: "10.90.0.0/16 via 10.78.0.2 dev 1".
func (r Route) String() string {
	if r.Via.IsValid() {
		return fmt.Sprintf("%v via %v dev %d", r.Dst, r.Via, r.Iface)
	}
	return fmt.Sprintf("%v dev %d", r.Dst, r.Iface)
}

// nextHop is the address to resolve for a datagram to dst on r.
func (r Route) nextHop(dst netip.Addr) netip.Addr {
	if r.Via.IsValid() {
		return r.Via
	}
	return dst
}

// Table is a routing table looked up by longest prefix match. An appliance
// has a handful of routes, so it is a slice kept sorted by prefix length,
// longest first: the first route that contains a destination is its
// longest match. The zero Table is empty.
type Table struct {
	routes []Route
}

// Add adds r after any route of the same prefix length, so of two routes
// to the same network the first added wins. r.Dst is masked.
func (t *Table) Add(r Route) {
	r.Dst = r.Dst.Masked()
	i, _ := slices.BinarySearchFunc(t.routes, r.Dst.Bits(), func(e Route, bits int) int {
		if e.Dst.Bits() >= bits {
			return -1
		}
		return 1
	})
	t.routes = slices.Insert(t.routes, i, r)
}

// Lookup returns the route of the longest prefix containing dst.
func (t *Table) Lookup(dst netip.Addr) (Route, bool) {
	for _, r := range t.routes {
		if r.Dst.Contains(dst) {
			return r, true
		}
	}
	return Route{}, false
}

// Routes returns the table's routes, longest prefix first.
func (t *Table) Routes() []Route { return slices.Clone(t.routes) }

// String is the route as ParseRoute reads it: "10.90.0.0/16,via=10.78.0.2".
func (r StaticRoute) String() string { return fmt.Sprintf("%v,via=%v", r.Dst, r.Via) }

// ParseRoute reads a static route as the command lines give it,
// "PREFIX,via=GATEWAY", e.g. "10.90.0.0/16,via=10.78.0.2".
func ParseRoute(s string) (StaticRoute, error) {
	dst, via, ok := strings.Cut(s, ",via=")
	p, err := netip.ParsePrefix(dst)
	if err != nil || !ok || !p.Addr().Is4() {
		return StaticRoute{}, fmt.Errorf("%w: %q: want IPv4-PREFIX,via=ADDR, like 10.90.0.0/16,via=10.78.0.2", ErrBadRoute, s)
	}
	a, err := netip.ParseAddr(via)
	if err != nil || !a.Is4() {
		return StaticRoute{}, fmt.Errorf("%w: %q: the gateway %q is not an IPv4 address", ErrBadRoute, s, via)
	}
	return StaticRoute{Dst: p.Masked(), Via: a}, nil
}

// CheckRoutes reports the first of routes whose gateway is on none of the
// networks of ifaces.
func CheckRoutes(ifaces []netip.Prefix, routes []StaticRoute) error {
	for _, r := range routes {
		if connectedOn(ifaces, r.Via) < 0 {
			return fmt.Errorf("%w: %v via %v: the gateway is on no connected network", ErrBadRoute, r.Dst, r.Via)
		}
	}
	return nil
}

// connectedOn is the index of the first of nets that holds a, or -1.
func connectedOn(nets []netip.Prefix, a netip.Addr) int {
	for i, n := range nets {
		if n.Masked().Contains(a) {
			return i
		}
	}
	return -1
}
