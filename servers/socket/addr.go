package socket

import (
	"net"
	"net/netip"

	"keepnet/servers/ops"
)

// netAddr is a destination as an ops.Addr (IPv4 only).
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
	return addr4(ap)
}

// parseAddr reads a "host:port" for network, which must name a network of
// kind ("udp", "udp4"; "tcp", "tcp4"). A local address may be empty or have
// an empty host (any); a remote one needs a host.
func parseAddr(kind ops.Network, network, address string, local bool) (ops.Addr, error) {
	switch {
	case kind == ops.UDP && (network == "udp" || network == "udp4"):
	case kind == ops.TCP && (network == "tcp" || network == "tcp4"):
	default:
		return ops.Addr{}, net.UnknownNetworkError(network)
	}
	if address == "" && local {
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
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return ops.Addr{}, &net.AddrError{Err: "keepnet dials numeric IPv4 addresses only", Addr: host}
		}
		ip = a
	} else if !local {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return addr4(netip.AddrPortFrom(ip, uint16(p)))
}

// addr4 is ap as an ops.Addr if it is IPv4 (or IPv4-mapped): the only
// family the stack carries. Any other is errNotIPv4 (EAFNOSUPPORT), never
// 0.0.0.0.
func addr4(ap netip.AddrPort) (ops.Addr, error) {
	a := ops.FromAddrPort(ap)
	if !a.Is4() {
		return ops.Addr{}, errNotIPv4
	}
	return a, nil
}
