package ip

import (
	"fmt"
	"time"

	"keepnet/servers/header"
)

// handleICMP processes an ICMP message in a validated, whole datagram.
func (s *Stack) handleICMP(ip header.IPv4) {
	s.c.ICMPIn++
	b := ip.Payload()
	if header.ValidateICMPv4(b) != nil {
		s.c.ICMPBad++
		return
	}
	m := header.ICMPv4(b)
	switch m.Type() {
	case header.ICMPv4DstUnreachable, header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
		s.handleICMPError(ip, m)
	}
	if m.Type() != header.ICMPv4Echo {
		if t := s.transports[header.ProtocolICMP]; t != nil {
			s.c.IPDelivered++
			t.Deliver(header.ProtocolICMP, ip.Src(), ip.Dst(), b)
		}
		return
	}
	s.c.ICMPEchoRequests++
	from := s.owner(ip.Dst()) // the interface pinged answers, from its address
	if from == nil {          // a broadcast: RFC 1122 §3.2.2.6 MAY silently discard
		s.c.ICMPEchoIgnored++
		return
	}
	// RFC 792: the reply is the request with type 0 and a new checksum;
	// identifier, sequence number and data are returned unchanged.
	reply := header.ICMPv4(s.icmpBuf[:len(b)])
	copy(reply, b)
	reply.SetType(header.ICMPv4EchoReply)
	reply.SetCode(0)
	reply.SetChecksum(reply.ComputeChecksum())
	if from.output(header.ProtocolICMP, from.addr, ip.Src(), reply, Offload{}) == nil {
		s.c.ICMPEchoReplies++
	}
}

// handleICMPError checks an ICMP error (RFC 1122 §3.2.2: it quotes the
// offending datagram's IP header and at least 8 bytes of its payload), learns
// the path MTU from a "fragmentation needed" (pmtu.go), and hands the error
// to the transport that sent the quoted datagram (RFC 1122 §3.2.2.1,
// §4.2.3.9), which decides what it means for its connection.
func (s *Stack) handleICMPError(ip header.IPv4, m header.ICMPv4) {
	s.c.ICMPErrorsIn++
	q := header.IPv4(m.Payload())
	if len(q) < header.IPv4MinimumSize || q.Version() != header.IPv4Version {
		s.c.ICMPErrorsIgnored++
		return
	}
	hl := q.HeaderLength()
	// Only a first fragment (or a whole datagram) quotes the transport
	// header; the quote must be about a datagram we sent.
	if hl < header.IPv4MinimumSize || len(q) < hl+header.ICMPv4ErrorDataSize ||
		q.FragmentOffset() != 0 || s.owner(q.Src()) == nil {
		s.c.ICMPErrorsIgnored++
		return
	}
	mtu := 0
	if m.Type() == header.ICMPv4DstUnreachable && m.Code() == header.ICMPv4FragNeeded {
		s.learnPathMTU(q.Dst(), int(m.MTU()), int(q.TotalLength()), s.clock.Now())
		mtu = s.PathMTU(q.Dst())
	}
	t, ok := s.transports[q.Protocol()].(ErrorTransport)
	if !ok {
		s.c.ICMPErrorsIgnored++
		return
	}
	s.c.ICMPErrorsDelivered++
	t.DeliverError(ip, mtu)
}

// SendUnreachable sends an ICMP destination unreachable message with code
// (header.ICMPv4PortUnreachable, ...) about offending, a datagram we
// received (its IPv4 header and at least the first 8 bytes of its payload),
// to its source. As RFC 1122 §3.2.2 requires, nothing is sent (and nil is
// returned) about an ICMP error, a datagram to a broadcast or multicast
// address, from an address that is not a unicast one, or a non-initial
// fragment. Errors: ErrBadPacket (offending is not a valid datagram),
// or those of Output.
func (s *Stack) SendUnreachable(code uint8, offending []byte) error {
	if header.ValidateIPv4(offending) != nil {
		return fmt.Errorf("ip: send unreachable: %w", ErrBadPacket)
	}
	return s.sendICMPError(header.ICMPv4DstUnreachable, code, 0, header.IPv4(offending))
}

// sendICMPError sends an ICMP error about ip, whose header must be valid
// and whole; it quotes the header and up to 8 bytes of payload. rest is the
// message's second word (the next-hop MTU of "fragmentation needed").
func (s *Stack) sendICMPError(typ header.ICMPv4Type, code uint8, rest uint32, ip header.IPv4) error {
	hl := ip.HeaderLength()
	quote := ip[:min(len(ip), int(ip.TotalLength()), hl+header.ICMPv4ErrorDataSize)]
	src, dst := ip.Src(), ip.Dst()
	// Any ICMP type but echo and echo reply is taken for an error,
	// conservatively (the queries of RFC 792 are not answered by keepnet).
	isError := ip.Protocol() == header.ProtocolICMP && ip.FragmentOffset() == 0 && len(quote) > hl &&
		quote[hl] != uint8(header.ICMPv4Echo) && quote[hl] != uint8(header.ICMPv4EchoReply)
	if isError || ip.FragmentOffset() != 0 || s.isBroadcast(dst) || dst.IsMulticast() ||
		s.isBroadcast(src) || src.IsMulticast() || src.IsUnspecified() || src.IsLoopback() {
		s.c.ICMPErrorsSuppressed++
		return nil
	}
	if !s.icmpTokens.take(s.clock.Now(), s.limits.ICMPErrorRate, s.limits.ICMPErrorBurst) {
		s.c.ICMPErrorsRateLimited++
		return nil
	}
	m := header.ICMPv4(s.icmpBuf[:header.ICMPv4MinimumSize+len(quote)])
	copy(m[header.ICMPv4MinimumSize:], quote)
	m.Encode(&header.ICMPv4Fields{Type: typ, Code: code, Rest: rest})
	if err := s.Output(header.ProtocolICMP, src, m); err != nil {
		return err
	}
	if typ == header.ICMPv4TimeExceeded {
		s.c.ICMPTimeExceededOut++
	} else {
		s.c.ICMPUnreachableOut++
	}
	return nil
}

// tokenBucket admits rate events a second, in bursts of up to burst: it
// starts full, and each event takes a token.
type tokenBucket struct {
	tokens  float64
	last    time.Time // when tokens was last filled
	started bool
}

// take reports whether an event at now is admitted, and takes its token.
func (b *tokenBucket) take(now time.Time, rate, burst int) bool {
	if !b.started {
		b.tokens, b.last, b.started = float64(burst), now, true
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(burst), b.tokens+d.Seconds()*float64(rate))
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
