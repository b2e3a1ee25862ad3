package ip

import (
	"bytes"
	"net/netip"
	"time"

	"keepnet/servers/header"
)

// neighbor is an ARP cache entry. An entry is either resolved (mac is
// valid until updated+ARPReachable) or resolving (requests sent, packets
// queued).
type neighbor struct {
	resolved bool
	mac      header.MAC
	updated  time.Time // resolved: when the mapping was last learned or confirmed; resolving: when created
	sent     time.Time // resolving: when the last request went out
	tries    int       // resolving: requests sent
	queue    []pending // resolving: packets waiting, oldest first
}

// pending is a datagram waiting for its next hop's MAC: one of ours
// (payload, to be given its header from src to dst) or, with forwarded
// set, one we forward (payload is the whole datagram, header included).
type pending struct {
	proto     uint8
	src, dst  netip.Addr
	payload   []byte // a copy once queued
	offload   Offload
	forwarded bool
}

// handleARP processes an ARP packet (the Ethernet payload), following
// RFC 826's "Packet Reception" with two safety rules: we learn only
// unicast senders in our subnet, and never a mapping for our own address.
func (s *Stack) handleARP(b []byte) {
	if header.ValidateARP(b) != nil {
		s.c.ARPBad++
		return
	}
	a := header.ARP(b)
	op := a.Op()
	switch op {
	case header.ARPRequest:
		s.c.ARPRequestsIn++
	case header.ARPReply:
		s.c.ARPRepliesIn++
	default:
		s.c.ARPBad++
		return
	}
	sip, smac := a.SenderIP(), a.SenderMAC()
	if sip == s.addr {
		if smac != s.mac {
			s.c.ARPConflicts++
		}
		return
	}
	forUs := a.TargetIP() == s.addr
	if s.subnet.Contains(sip) && sip != s.subnet.Addr() && sip != s.bcast && !smac.IsMulticast() {
		// RFC 826: update an existing entry whoever the target; add one
		// only if the packet is for us.
		if n := s.neigh[sip]; n != nil {
			s.learn(sip, n, smac)
		} else if forUs {
			s.learn(sip, s.newNeighbor(sip), smac)
		}
	}
	if !forUs {
		s.c.ARPNotForUs++
		return
	}
	if op == header.ARPRequest {
		if s.sendARP(header.ARPReply, smac, smac, sip) == nil {
			s.c.ARPRepliesOut++
		}
	}
}

// learn records that ip is at mac and sends what was waiting for it.
func (s *Stack) learn(ip netip.Addr, n *neighbor, mac header.MAC) {
	n.resolved, n.mac, n.updated, n.tries = true, mac, s.clock.Now(), 0
	queue := n.queue
	n.queue = nil
	for _, p := range queue {
		s.queuedBytes -= len(p.payload)
		s.send(mac, p)
	}
}

// newNeighbor adds a resolving entry for ip, evicting the oldest entry if
// the cache is full.
func (s *Stack) newNeighbor(ip netip.Addr) *neighbor {
	if len(s.neigh) >= s.limits.MaxNeighbors {
		var oldest netip.Addr
		var at time.Time
		for a, n := range s.neigh {
			if !oldest.IsValid() || n.updated.Before(at) {
				oldest, at = a, n.updated
			}
		}
		s.dropNeighbor(oldest)
		s.c.ARPEvictions++
	}
	n := &neighbor{updated: s.clock.Now()}
	s.neigh[ip] = n
	return n
}

// dropNeighbor removes an entry and drops what it had queued.
func (s *Stack) dropNeighbor(ip netip.Addr) {
	n := s.neigh[ip]
	for _, p := range n.queue {
		s.queuedBytes -= len(p.payload)
		s.c.QueueDrops++
	}
	delete(s.neigh, ip)
}

// resolveAndSend sends a datagram to next hop ip, or queues it (a copy of
// p.payload) and starts (or continues) resolving ip.
func (s *Stack) resolveAndSend(next netip.Addr, p pending) error {
	now := s.clock.Now()
	n := s.neigh[next]
	if n != nil && n.resolved && now.Sub(n.updated) < s.limits.ARPReachable {
		if p.forwarded { // send, by hand: the path of every datagram, kept a branch
			return s.sendForwarded(n.mac, p.payload)
		}
		return s.transmit(n.mac, p.src, p.proto, p.dst, p.payload, p.offload)
	}
	if n == nil || n.resolved { // unknown, or known too long ago: resolve again
		if n != nil {
			s.dropNeighbor(next)
		}
		n = s.newNeighbor(next)
		s.requestMAC(next, n, now)
	}
	if len(n.queue) >= s.limits.ARPQueueLen {
		s.queuedBytes -= len(n.queue[0].payload)
		n.queue = append(n.queue[:0], n.queue[1:]...)
		s.c.QueueDrops++
	}
	if s.queuedBytes+len(p.payload) > s.limits.ARPQueueMemory {
		s.c.QueueDrops++
		return nil
	}
	p.payload = bytes.Clone(p.payload)
	n.queue = append(n.queue, p)
	s.queuedBytes += len(p.payload)
	return nil
}

// send sends p to the Ethernet address mac.
func (s *Stack) send(mac header.MAC, p pending) error {
	if p.forwarded {
		return s.sendForwarded(mac, header.IPv4(p.payload))
	}
	return s.transmit(mac, p.src, p.proto, p.dst, p.payload, p.offload)
}

// requestMAC broadcasts an ARP request for ip.
func (s *Stack) requestMAC(ip netip.Addr, n *neighbor, now time.Time) {
	n.tries++
	n.sent = now
	if s.sendARP(header.ARPRequest, header.BroadcastMAC, header.MAC{}, ip) == nil {
		s.c.ARPRequestsOut++
	}
}

// tickARP retries and gives up resolutions, and ages resolved entries.
func (s *Stack) tickARP(now time.Time) {
	for ip, n := range s.neigh {
		switch {
		case n.resolved:
			if now.Sub(n.updated) >= s.limits.ARPReachable {
				delete(s.neigh, ip) // resolved again on next use
			}
		case now.Sub(n.sent) < s.limits.ARPRetryInterval:
		case n.tries < s.limits.ARPRetries:
			s.requestMAC(ip, n, now)
		default:
			s.c.ARPResolveFailures++
			s.dropNeighbor(ip)
		}
	}
}

// AnnounceGratuitousARP broadcasts an ARP announcement of our address
// (RFC 5227 §2.3: a request with sender and target address ours), so
// neighbours update their caches; the server sends one at every start.
func (s *Stack) AnnounceGratuitousARP() error {
	err := s.sendARP(header.ARPRequest, header.BroadcastMAC, header.MAC{}, s.addr)
	if err == nil {
		s.c.ARPRequestsOut++
	}
	return err
}

// sendARP sends an ARP packet from us to Ethernet address to, with target
// hardware and protocol addresses tha and tpa.
func (s *Stack) sendARP(op header.ARPOp, to, tha header.MAC, tpa netip.Addr) error {
	header.Ethernet(s.tx).Encode(&header.EthernetFields{Dst: to, Src: s.mac, Type: header.EtherTypeARP})
	header.ARP(s.tx[header.EthernetMinimumSize:]).Encode(&header.ARPFields{
		Op: op, SenderMAC: s.mac, SenderIP: s.addr, TargetMAC: tha, TargetIP: tpa,
	})
	return s.sendFrame(header.EthernetMinimumSize + header.ARPSize)
}
