package socket

import (
	"net"
	"net/netip"
	"strings"

	"keepnet/servers/ops"
)

// netAddr is a destination as an ops.Addr.
func netAddr(a net.Addr) (ops.Addr, error) {
	var ap netip.AddrPort
	if ua, ok := a.(*net.UDPAddr); ok {
		ap = ua.AddrPort()
	} else {
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return ops.Addr{}, &net.AddrError{Err: "not a numeric ip:port", Addr: a.String()}
		}
	}
	return ops.FromAddrPort(ap), nil
}

// parseAddr reads a "host:port" for network, which must name a network of
// kind ("udp", "udp4", "udp6"; "tcp", "tcp4", "tcp6"). A local address may
// be empty or have an empty host (any: 0.0.0.0, or [::] for the "6"
// networks; a socket bound to either takes both families, as Go's ":80"
// does); a remote one needs a host. A host of the other family than a "4"
// or "6" network names is errFamily.
func parseAddr(kind ops.Network, network, address string, local bool) (ops.Addr, error) {
	switch {
	case kind == ops.UDP && (network == "udp" || network == "udp4" || network == "udp6"):
	case kind == ops.TCP && (network == "tcp" || network == "tcp4" || network == "tcp6"):
	default:
		return ops.Addr{}, net.UnknownNetworkError(network)
	}
	six := strings.HasSuffix(network, "6")
	if address == "" && local {
		if six {
			return ops.MakeAddr(netip.IPv6Unspecified(), 0), nil
		}
		return ops.Addr{}, nil
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return ops.Addr{}, err
	}
	p, err := net.LookupPort(network, port)
	if err != nil {
		return ops.Addr{}, err
	}
	ip := netip.IPv4Unspecified()
	switch {
	case host != "":
		a, err := netip.ParseAddr(host)
		if err != nil {
			return ops.Addr{}, &net.AddrError{Err: "keepnet dials numeric IP addresses only", Addr: host}
		}
		ip = a.Unmap()
	case six && local:
		ip = netip.IPv6Unspecified()
	case six:
		ip = netip.IPv6Loopback()
	case !local:
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if strings.HasSuffix(network, "4") && !ip.Is4() || six && ip.Is4() {
		return ops.Addr{}, errFamily
	}
	return ops.FromAddrPort(netip.AddrPortFrom(ip, uint16(p))), nil
}
