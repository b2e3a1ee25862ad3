package ip

import (
	"errors"
	"fmt"
	"net/netip"

	"keepnet/servers/header"
)

// defaultTTL is the TTL of every datagram we send (RFC 1700's 64).
const defaultTTL = 64

// maxPayload is the largest IPv4 payload without options.
const maxPayload = header.IPv4MaximumSize - header.IPv4MinimumSize

// handleIPv4 processes an IPv4 packet (the Ethernet payload).
func (s *Stack) handleIPv4(b []byte) {
	s.c.IPIn++
	if err := header.ValidateIPv4(b); err != nil {
		switch {
		case errors.Is(err, header.ErrBadVersion):
			s.c.IPBadVersion++
		case errors.Is(err, header.ErrBadIHL):
			s.c.IPBadIHL++
		case errors.Is(err, header.ErrBadLength):
			s.c.IPBadLength++
		case errors.Is(err, header.ErrBadChecksum):
			s.c.IPBadChecksum++
		default:
			s.c.IPTruncated++
		}
		return
	}
	ip := header.IPv4(b)
	if dst := ip.Dst(); dst != s.addr && !s.isBroadcast(dst) {
		s.c.IPNotForUs++
		return
	}
	if src := ip.Src(); s.isBroadcast(src) || src.IsMulticast() { // RFC 1122 §3.2.1.3
		s.c.IPBadSource++
		return
	}
	if ip.IsFragment() {
		if ip = s.reassemble(ip); ip == nil {
			return
		}
	}
	proto := ip.Protocol()
	if proto == header.ProtocolICMP {
		s.handleICMP(ip)
		return
	}
	t := s.transports[proto]
	if t == nil {
		s.c.IPUnknownProtocol++
		s.sendICMPError(header.ICMPv4DstUnreachable, header.ICMPv4ProtoUnreachable, ip)
		return
	}
	s.c.IPDelivered++
	if dt, ok := t.(DatagramTransport); ok {
		dt.DeliverDatagram(ip)
		return
	}
	t.Deliver(proto, ip.Src(), ip.Dst(), ip.Payload())
}

// Output sends payload to dst as one IPv4 datagram of protocol proto from
// our address, fragmented to the MTU if needed. A datagram whose next hop is
// not resolved yet is queued (nil error); it is sent when ARP answers or
// dropped (and counted) when it does not. Errors: ErrNoRoute, ErrTooBig, or
// the Link's error, wrapped with dst. payload is not kept.
func (s *Stack) Output(proto uint8, dst netip.Addr, payload []byte) error {
	if err := s.output(proto, dst, payload); err != nil {
		return fmt.Errorf("ip: output to %v: %w", dst, err)
	}
	return nil
}

func (s *Stack) output(proto uint8, dst netip.Addr, payload []byte) error {
	if len(payload) > maxPayload {
		return ErrTooBig
	}
	if !dst.Is4() || dst == s.addr || dst.IsUnspecified() {
		s.c.NoRoute++
		return ErrNoRoute
	}
	if s.isBroadcast(dst) {
		s.c.IPOut++
		return s.transmit(header.BroadcastMAC, proto, dst, payload)
	}
	next := dst // connected subnet: direct
	if !s.subnet.Contains(dst) {
		if !s.cfg.Gateway.IsValid() {
			s.c.NoRoute++
			return ErrNoRoute
		}
		next = s.cfg.Gateway // default route
	}
	s.c.IPOut++
	return s.resolveAndSend(next, proto, dst, payload)
}

// transmit sends one datagram to the Ethernet address mac, in fragments
// (RFC 791 §3.2, "An Example Fragmentation Procedure") if it does not fit
// the MTU. Every datagram gets a fresh identification.
func (s *Stack) transmit(mac header.MAC, proto uint8, dst netip.Addr, payload []byte) error {
	id := s.nextID
	s.nextID++
	const eh, ih = header.EthernetMinimumSize, header.IPv4MinimumSize
	chunk := len(payload)
	if ih+chunk > s.cfg.MTU {
		chunk = (s.cfg.MTU - ih) &^ 7 // every fragment but the last carries a multiple of 8
	}
	header.Ethernet(s.tx).Encode(&header.EthernetFields{Dst: mac, Src: s.mac, Type: header.EtherTypeIPv4})
	for off := 0; ; off += chunk {
		data := payload[off:min(off+chunk, len(payload))]
		last := off+len(data) == len(payload)
		var flags uint16
		if !last {
			flags = header.IPv4FlagMoreFragments
		}
		header.IPv4(s.tx[eh:]).Encode(&header.IPv4Fields{
			TotalLength: uint16(ih + len(data)), ID: id, Flags: flags, FragmentOffset: off,
			TTL: defaultTTL, Protocol: proto, Src: s.addr, Dst: dst,
		})
		copy(s.tx[eh+ih:], data)
		if err := s.sendFrame(eh + ih + len(data)); err != nil {
			return err
		}
		if chunk < len(payload) {
			s.c.FragmentsOut++
		}
		if last {
			return nil
		}
	}
}
