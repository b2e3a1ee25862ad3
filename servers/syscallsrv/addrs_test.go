package syscallsrv

import "net/netip"

var (
	ipAny  = netip.IPv4Unspecified()
	peerIP = netip.MustParseAddr("10.77.0.1")
)
