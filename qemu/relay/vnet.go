package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"keepnet/servers/header"
)

// With IFF_VNET_HDR a tap puts a virtio_net_hdr in front of every frame, and
// with TUNSETOFFLOAD the namespace's kernel may leave work to the reader
// that a NIC would do: a TCP segment of up to 64 KiB for the "NIC" to cut
// into MSS-sized segments (TSO), and a checksum for it to finish. OpenTap
// asks for both, so a bulk transfer into the guest costs the relay one tap
// read per 64 KiB rather than per 1.5 KiB, and the kernel skips its own
// software segmentation. The relay then does the NIC's part: the guest's
// e1000 sees ordinary wire frames, each impaired on its own.
//
// The header (the legacy 10-byte form, little-endian like the x86 host):
//
//	flags u8 | gso_type u8 | hdr_len u16 | gso_size u16 | csum_start u16 | csum_offset u16
const vnetHdrLen = 10

type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

const (
	vnetNeedsCsum = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSONone   = 0    // VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4  = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOECN    = 0x80 // VIRTIO_NET_HDR_GSO_ECN: the segment carries CWR
)

func parseVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		gsoSize:    binary.LittleEndian.Uint16(b[4:]),
		csumStart:  binary.LittleEndian.Uint16(b[6:]),
		csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// errOffload says a frame's offload request cannot be carried out (a
// malformed header, a GSO type that was not offered); the frame is counted
// in Errors and dropped, as a NIC would.
var errOffload = errors.New("offload request not understood")

// wireFrames calls emit with the wire frame or frames for frame f, which the
// tap gave with header h. emit's argument is valid only during the call. f
// itself may be changed (its checksum finished).
func wireFrames(h vnetHdr, f []byte, seg []byte, emit func([]byte)) error {
	switch h.gsoType &^ vnetGSOECN {
	case vnetGSONone:
		if h.flags&vnetNeedsCsum != 0 {
			if err := finishChecksum(f, int(h.csumStart), int(h.csumOffset)); err != nil {
				return err
			}
		}
		emit(f)
		return nil
	case vnetGSOTCPv4:
		return segmentTCPv4(f, int(h.gsoSize), seg, emit)
	}
	return fmt.Errorf("%w: GSO type %#x", errOffload, h.gsoType)
}

// finishChecksum completes a partial checksum: the field at start+offset
// holds the pseudo-header's sum, and the checksum covers everything from
// start to the end of the frame, the field included. A result of 0 is sent
// as 0xffff, which means the same (UDP reserves 0 for "none").
func finishChecksum(f []byte, start, offset int) error {
	if start+offset+2 > len(f) {
		return fmt.Errorf("%w: checksum at %d+%d beyond a %d-byte frame", errOffload, start, offset, len(f))
	}
	c := ^header.Checksum(f[start:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(f[start+offset:], c)
	return nil
}

// Ethernet, IPv4 and TCP field offsets segmentTCPv4 uses.
const (
	ethLen      = 14
	ethType     = 12
	ipTotalLen  = 2
	ipID        = 4
	ipProto     = 9
	ipChecksum  = 10
	ipSrc       = 12
	tcpSeqOff   = 4
	tcpFlagsOff = 13
	tcpCsumOff  = 16
	tcpFIN      = 0x01
	tcpPSH      = 0x08
	tcpCWR      = 0x80
)

// segmentTCPv4 cuts the TCP/IPv4 frame f into segments of at most mss
// payload bytes, as a NIC's TCP segmentation does: the headers repeated,
// the IPv4 total length, ID (counting up) and checksum and the TCP sequence
// number and checksum set per segment, CWR only on the first, FIN and PSH
// only on the last. Each segment is built in seg (grown if need be).
func segmentTCPv4(f []byte, mss int, seg []byte, emit func([]byte)) error {
	if len(f) < ethLen+20 || binary.BigEndian.Uint16(f[ethType:]) != 0x0800 || f[ethLen]>>4 != 4 {
		return fmt.Errorf("%w: TCPv4 segmentation of a frame that is not IPv4", errOffload)
	}
	ihl := int(f[ethLen]&0xf) * 4
	if ihl < 20 || len(f) < ethLen+ihl+20 || f[ethLen+ipProto] != 6 {
		return fmt.Errorf("%w: TCPv4 segmentation of a frame that is not TCP", errOffload)
	}
	tcp := ethLen + ihl
	doff := int(f[tcp+12]>>4) * 4
	hl := tcp + doff
	if doff < 20 || len(f) < hl || mss < 1 {
		return fmt.Errorf("%w: TCP header of %d bytes, MSS %d", errOffload, doff, mss)
	}
	ip := f[ethLen:tcp]
	src := netip.AddrFrom4([4]byte(ip[ipSrc:]))
	dst := netip.AddrFrom4([4]byte(ip[ipSrc+4:]))
	id := binary.BigEndian.Uint16(ip[ipID:])
	seq := binary.BigEndian.Uint32(f[tcp+tcpSeqOff:])
	flags := f[tcp+tcpFlagsOff]
	payload := f[hl:]
	for i, off := 0, 0; ; i, off = i+1, off+mss {
		end := min(off+mss, len(payload))
		seg = append(append(seg[:0], f[:hl]...), payload[off:end]...)
		sip, st := seg[ethLen:tcp], seg[tcp:]
		binary.BigEndian.PutUint16(sip[ipTotalLen:], uint16(len(seg)-ethLen))
		binary.BigEndian.PutUint16(sip[ipID:], id+uint16(i))
		binary.BigEndian.PutUint16(sip[ipChecksum:], 0)
		binary.BigEndian.PutUint16(sip[ipChecksum:], ^header.Checksum(sip, 0))
		binary.BigEndian.PutUint32(st[tcpSeqOff:], seq+uint32(off))
		fl := flags
		if off > 0 {
			fl &^= tcpCWR
		}
		if end < len(payload) {
			fl &^= tcpFIN | tcpPSH
		}
		st[tcpFlagsOff] = fl
		binary.BigEndian.PutUint16(st[tcpCsumOff:], 0)
		pseudo := header.PseudoHeaderChecksum(6, src, dst, uint16(len(st)))
		binary.BigEndian.PutUint16(st[tcpCsumOff:], ^header.Checksum(st, pseudo))
		emit(seg)
		if end == len(payload) {
			break
		}
	}
	return nil
}
