package socket

import (
	"context"
	"net"
)

// Resolver returns a resolver that speaks DNS through this Stack: Go's own
// resolver (PreferGo) reads /etc/resolv.conf and /etc/hosts as usual, and
// every query goes over a keepnet UDP socket to the server it picked. Go
// treats a connection that is a net.PacketConn as UDP (one query, one
// datagram); *UDPConn is one. A truncated answer makes Go retry over TCP,
// which goes over a keepnet TCP connection.
func (s *Stack) Resolver() *net.Resolver { return s.ResolverVia("") }

// ResolverVia is Resolver with every query sent to server ("ip:port", e.g.
// the appliance's keepnet.dns) whatever resolv.conf says; "" means
// resolv.conf's servers.
func (s *Stack) ResolverVia(server string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if server != "" {
				address = server
			}
			return s.DialContext(ctx, network, address)
		},
	}
}
