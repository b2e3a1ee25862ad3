package socket

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"keepnet/servers/ops"
)

// Dialling a name: the host of a Dial's "host:port" may be a name, which
// the Stack's resolver (Resolver: Go's own, its queries through this
// stack to the servers /etc/resolv.conf names, the appliance's
// keepnet.dns) turns into its addresses, A and AAAA records both for
// "tcp" and "udp", one kind for the "4" and "6" networks. They are tried
// in the resolver's order (RFC 6724's, as Go sorts them), one after the
// other, each with its share of the time left, as Go's dialer does when
// it does not race the two families (Happy Eyeballs, RFC 8305): a name
// with an AAAA record only connects over IPv6, one whose first address
// does not answer falls back to the next.

// minShare is the least time an address is given when several share what
// is left (Go's dialer's "sane minimum").
const minShare = 2 * time.Second

// dialEach dials address on network with dial: its one numeric address,
// or each address its name resolves to until one connects. The error is
// the first address's, as Go's.
func dialEach[C any](ctx context.Context, s *Stack, kind ops.Network, network, address string, dial func(context.Context, string, ops.Addr) (C, error)) (C, error) {
	var zero C
	addrs, err := s.resolve(ctx, kind, network, address)
	if err != nil {
		return zero, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var first error
	for i, a := range addrs {
		actx, cancel := share(ctx, len(addrs)-i)
		c, err := dial(actx, network, a)
		cancel()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return zero, first
}

// resolve is the remote addresses address names on network: one if its
// host is numeric (parseAddr), else those of the name.
func (s *Stack) resolve(ctx context.Context, kind ops.Network, network, address string) ([]ops.Addr, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		a, err := parseAddr(kind, network, address, false)
		return []ops.Addr{a}, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		a, err := parseAddr(kind, network, address, false)
		return []ops.Addr{a}, err
	}
	if _, err := parseAddr(kind, network, ":0", true); err != nil {
		return nil, err // an unknown network
	}
	p, err := net.LookupPort(network, port)
	if err != nil {
		return nil, err
	}
	family := "ip"
	switch {
	case strings.HasSuffix(network, "4"):
		family = "ip4"
	case strings.HasSuffix(network, "6"):
		family = "ip6"
	}
	r := s.names
	if r == nil {
		r = s.Resolver()
	}
	ips, err := r.LookupNetIP(ctx, family, host)
	if err != nil {
		return nil, err
	}
	addrs := make([]ops.Addr, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, ops.FromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(p))))
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no suitable address found", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

// share is ctx for one of left addresses still to try: the time left
// split evenly, at least minShare (or all of it, if less is left).
func share(ctx context.Context, left int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || left <= 1 {
		return context.WithCancel(ctx)
	}
	rest := time.Until(deadline)
	return context.WithTimeout(ctx, min(rest, max(rest/time.Duration(left), minShare)))
}
