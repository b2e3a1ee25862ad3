package udp

import (
	"net/netip"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// ICMP errors about our datagrams (ip hands them over, servers/ops
// OpDeliverError). As Linux does for a socket without IP_RECVERR, only a
// connected socket hears of them, and only of the hard ones (port and
// protocol unreachable: the peer has nothing there): the error is
// remembered and reported once, ECONNREFUSED in the socket library, by a
// receive waiting now, or else by the next receive or send. An
// unconnected socket cannot tell which of its peers the error is about
// from the application's view, and datagrams carry no sequence number
// to check against a blind attacker, which the peer match stands in for.

// HandleICMP takes an ICMP error of typ and code about a datagram sent from
// local to remote.
func (t *Table) HandleICMP(typ header.ICMPv4Type, code uint8, local, remote netip.AddrPort) {
	t.c.ICMPIn++
	hard := typ == header.ICMPv4DstUnreachable &&
		(code == header.ICMPv4PortUnreachable || code == header.ICMPv4ProtoUnreachable)
	s := t.ports[local.Port()]
	if !hard || s == nil || s.peer != ops.FromAddrPort(remote) {
		t.c.ICMPIgnored++
		return
	}
	if ip := s.local.IP(); !ip.IsUnspecified() && ip != local.Addr() {
		t.c.ICMPIgnored++
		return
	}
	t.c.ICMPRefused++
	if len(s.posted) > 0 {
		r := s.posted[0]
		s.posted[0] = receive{}
		s.posted = s.posted[1:]
		t.done(Completion{Tag: r.tag, Status: ops.StatusRefused})
		return
	}
	s.err = ops.StatusRefused
}

// takeErr returns and forgets the error s holds, StatusOK if none.
func (s *socket) takeErr() ops.Status {
	st := s.err
	s.err = ops.StatusOK
	return st
}
