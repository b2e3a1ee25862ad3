package ip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"keepnet/drivers/link"
	"keepnet/servers/header"
)

// defaultTTL is the TTL of every datagram we send (RFC 1700's 64).
const defaultTTL = 64

// maxPayload is the largest IPv4 payload without options.
const maxPayload = header.IPv4MaximumSize - header.IPv4MinimumSize

// handleIPv4 processes an IPv4 packet, the payload of eth (which it may
// rewrite in place to forward it).
func (s *Stack) handleIPv4(eth header.Ethernet) {
	b := eth.Payload()
	s.c.IPIn++
	validate := header.ValidateIPv4
	if s.rxChecked&link.RxCheckedIPv4 != 0 {
		validate = header.ValidateIPv4Unsummed
		s.c.IPChecksumVerified++
	}
	if err := validate(b); err != nil {
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
		if s.router == nil || !s.router.isLocal(dst) {
			s.notForUs(eth, ip)
			return
		}
	}
	if src := ip.Src(); s.isBroadcast(src) || src.IsMulticast() { // RFC 1122 §3.2.1.3
		s.c.IPBadSource++
		return
	}
	verified := s.rxChecked&link.RxCheckedL4 != 0
	if ip.IsFragment() {
		if ip = s.reassemble(ip); ip == nil {
			return
		}
		verified = false
	}
	proto := ip.Protocol()
	if proto == header.ProtocolICMP {
		s.handleICMP(ip)
		return
	}
	t := s.transports[proto]
	if t == nil {
		s.c.IPUnknownProtocol++
		s.sendICMPError(header.ICMPv4DstUnreachable, header.ICMPv4ProtoUnreachable, 0, ip)
		return
	}
	s.c.IPDelivered++
	if dt, ok := t.(DatagramTransport); ok {
		if verified {
			s.c.L4ChecksumVerified++
		}
		dt.DeliverDatagram(ip, verified)
		return
	}
	t.Deliver(proto, ip.Src(), ip.Dst(), ip.Payload())
}

// notForUs forwards a datagram that is not for us, if we route, or
// drops it.
func (s *Stack) notForUs(eth header.Ethernet, ip header.IPv4) {
	if s.router == nil || !s.router.forwarding {
		s.c.IPNotForUs++
		return
	}
	s.router.forward(s, eth, ip)
}

// Output sends payload to dst as one IPv4 datagram of protocol proto from
// our address, fragmented to the MTU if needed. A datagram whose next hop is
// not resolved yet is queued (nil error); it is sent when ARP answers or
// dropped (and counted) when it does not. Errors: ErrNoRoute, ErrTooBig, or
// the Link's error, wrapped with dst. payload is not kept.
func (s *Stack) Output(proto uint8, dst netip.Addr, payload []byte) error {
	return s.OutputOffload(proto, dst, payload, Offload{})
}

// OutputOffload is Output of a datagram whose checksum (and, with o.MSS,
// segmentation) the device is to do. Without an OffloadLink, or for a
// broadcast, the Stack computes the checksum itself; a segmentation request
// it cannot pass on is refused with ErrTooBig if the datagram exceeds the
// MTU.
func (s *Stack) OutputOffload(proto uint8, dst netip.Addr, payload []byte, o Offload) error {
	return s.OutputFrom(proto, s.addr, dst, payload, o)
}

// OutputFrom is OutputOffload from src, which must be the address of one
// of the router's interfaces (or ours): what a transport asks for when it
// answers on the address it was reached at (its checksum covers that
// address). It goes out on the interface the route to dst says, like any
// datagram of ours. An invalid src is ours, or, for a datagram whose
// checksum is left to us (o.Checksum), the address of the interface it
// leaves by, as Linux chooses for a socket bound to none. Errors: those of
// Output, and ErrNotOurs.
func (s *Stack) OutputFrom(proto uint8, src, dst netip.Addr, payload []byte, o Offload) error {
	if !src.IsValid() && !o.Checksum {
		src = s.addr
	}
	if src.IsValid() && s.owner(src) == nil {
		s.c.NoRoute++
		return fmt.Errorf("ip: output from %v: %w", src, ErrNotOurs)
	}
	if err := s.output(proto, src, dst, payload, o); err != nil {
		return fmt.Errorf("ip: output to %v: %w", dst, err)
	}
	return nil
}

func (s *Stack) output(proto uint8, src, dst netip.Addr, payload []byte, o Offload) error {
	if len(payload) > maxPayload {
		return ErrTooBig
	}
	if o.MSS > 0 && (proto != header.ProtocolTCP || len(payload) < header.TCPMinimumSize) {
		return ErrTooBig
	}
	if !dst.Is4() || dst == s.addr || dst.IsUnspecified() {
		s.c.NoRoute++
		return ErrNoRoute
	}
	p := pending{proto: proto, src: src, dst: dst, payload: payload, offload: o}
	if s.router != nil && !s.isBroadcast(dst) {
		return s.router.route(s, p) // it chooses an invalid src
	}
	if !p.src.IsValid() {
		p.src = s.addr
	}
	if s.isBroadcast(dst) {
		s.c.IPOut++
		return s.transmit(header.BroadcastMAC, p.src, proto, dst, payload, o)
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
	return s.resolveAndSend(next, p)
}

// checksumOffset is where a transport's checksum field is in its header.
func checksumOffset(proto uint8) (int, bool) {
	switch proto {
	case header.ProtocolTCP:
		return 16, true
	case header.ProtocolUDP:
		return 6, true
	}
	return 0, false
}

// transmitOffload sends one datagram as one frame for the device to
// checksum, and with o.MSS to segment (e1000.Offload says how it wants the
// frame: the transport checksum field seeded with the pseudo-header sum —
// without the length when segmenting, the device adds each segment's —
// and, when segmenting, a zero IPv4 checksum, which the device computes
// per segment). Segments carry DF: they are cut to fit, never fragmented.
func (s *Stack) transmitOffload(l OffloadLink, mac header.MAC, src netip.Addr, proto uint8, dst netip.Addr, payload []byte, o Offload) error {
	off, ok := checksumOffset(proto)
	const eh, ih = header.EthernetMinimumSize, header.IPv4MinimumSize
	if !ok || len(payload) < off+2 || (o.MSS == 0 && ih+len(payload) > s.cfg.MTU) {
		return ErrTooBig
	}
	segment := o.MSS > 0 && ih+len(payload) > s.PathMTU(dst)
	hdr := 0
	if segment {
		hdr = header.TCP(payload).DataOffset()
		if hdr < header.TCPMinimumSize || hdr >= len(payload) || len(payload)-hdr > link.MaxTSO || o.MSS > s.cfg.MTU-ih-hdr {
			return ErrTooBig
		}
	}
	id := s.nextID
	s.nextID++
	lo := link.Offload{L3: eh, L4: eh + ih, TCP: proto == header.ProtocolTCP}
	frame := s.frameBuffer(l, eh+ih+len(payload))
	header.Ethernet(frame).Encode(&header.EthernetFields{Dst: mac, Src: s.mac, Type: header.EtherTypeIPv4})
	ip := header.IPv4(frame[eh:])
	ip.Encode(&header.IPv4Fields{TOS: o.ECN & 3, TotalLength: uint16(ih + len(payload)), ID: id, Flags: header.IPv4FlagDontFragment,
		TTL: defaultTTL, Protocol: proto, Src: src, Dst: dst})
	seg := frame[eh+ih:]
	copy(seg, payload)
	seed := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(payload)))
	if segment {
		// The path may be narrower than the transport knows yet (a new
		// connection, or one that did not send what a router refused):
		// the device cuts at the path MTU (pmtu.go).
		mss := s.tsoMSS(dst, hdr, o.MSS)
		if mss < o.MSS {
			s.c.PathMTUClamped++
		}
		lo.HdrLen, lo.MSS = uint8(eh+ih+hdr), uint16(mss)
		seed = header.PseudoHeaderChecksum(proto, src, dst, 0)
		ip.SetChecksum(0)
		s.c.SegmentationOut++
	}
	binary.BigEndian.PutUint16(seg[off:], seed)
	if err := l.SendFrameOffload(frame, lo); err != nil {
		s.c.LinkErrors++
		return err
	}
	s.c.FramesOut++
	return nil
}

// frameBuffer is where a frame of n bytes for l is built: the transmit
// buffer l lends (FrameLender), if it lends one, else s.tx.
func (s *Stack) frameBuffer(l OffloadLink, n int) []byte {
	if fl, ok := l.(FrameLender); ok {
		if b := fl.FrameBuffer(n); len(b) == n {
			return b
		}
	}
	return s.tx[:n]
}

// transmit sends one datagram from src to the Ethernet address mac, in fragments
// (RFC 791 §3.2, "An Example Fragmentation Procedure") if it does not fit
// the MTU. Every datagram gets a fresh identification.
func (s *Stack) transmit(mac header.MAC, src netip.Addr, proto uint8, dst netip.Addr, payload []byte, o Offload) error {
	if o.Checksum || o.MSS > 0 {
		// The device checksums what it sends in one frame; a datagram to
		// be fragmented (a large UDP one) is checksummed here.
		if ol, ok := s.link.(OffloadLink); ok && (o.MSS > 0 || header.IPv4MinimumSize+len(payload) <= s.cfg.MTU) {
			return s.transmitOffload(ol, mac, src, proto, dst, payload, o)
		}
		if o.MSS > 0 && header.IPv4MinimumSize+len(payload) > s.cfg.MTU {
			return ErrTooBig
		}
		if off, ok := checksumOffset(proto); ok && len(payload) >= off+2 {
			// The payload is the transport's buffer: checksum a copy (a
			// rare path: only a link without offloads takes it).
			payload = bytes.Clone(payload)
			binary.BigEndian.PutUint16(payload[off:], 0)
			sum := header.Checksum(payload, header.PseudoHeaderChecksum(proto, src, dst, uint16(len(payload))))
			binary.BigEndian.PutUint16(payload[off:], ^sum)
		}
	}
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
		switch {
		case !last:
			flags = header.IPv4FlagMoreFragments
		case off == 0 && proto == header.ProtocolTCP:
			flags = header.IPv4FlagDontFragment // path MTU discovery (pmtu.go)
		}
		header.IPv4(s.tx[eh:]).Encode(&header.IPv4Fields{
			TOS: o.ECN & 3, TotalLength: uint16(ih + len(data)), ID: id, Flags: flags, FragmentOffset: off,
			TTL: defaultTTL, Protocol: proto, Src: src, Dst: dst,
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
