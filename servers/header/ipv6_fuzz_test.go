package header

import (
	"encoding/hex"
	"errors"
	"testing"
)

func addScapy6(f *testing.F) {
	for _, s := range scapy6 {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
}

// On a datagram ValidateIPv6 accepts, the extension walk never panics and
// whatever it returns lies inside the payload.
func FuzzIPv6(f *testing.F) {
	addScapy6(f)
	f.Add([]byte(ext6(ProtocolIPv6HopByHop, opts(ProtocolIPv6Fragment, 0xc2, 4, 0, 1, 0, 0), frag(ProtocolUDP, 8, true, 1))))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateIPv6(b) != nil {
			return
		}
		h := IPv6(b)
		_, _, _, _ = h.TrafficClass(), h.FlowLabel(), h.Src(), h.Dst()
		end := IPv6MinimumSize + int(h.PayloadLength())
		x, err := ParseIPv6Extensions(h)
		var pp *IPv6ParamProblem
		switch {
		case err == nil:
			if x.UpperOffset < IPv6MinimumSize || x.UpperOffset > end || x.UpperField >= x.UpperOffset {
				t.Fatalf("upper layer at %d (named at %d), payload ends at %d", x.UpperOffset, x.UpperField, end)
			}
			if x.Fragment && (x.FragmentHeader+IPv6FragmentHeaderSize != x.UpperOffset || x.FragmentOffset+end-x.UpperOffset > 65535) {
				t.Fatalf("fragment %+v in a payload ending at %d", x, end)
			}
		case errors.As(err, &pp):
			if int(pp.Pointer) >= end {
				t.Fatalf("parameter problem points at %d, past the datagram's %d bytes", pp.Pointer, end)
			}
		case err != ErrTruncated && err != ErrBadLength && err != ErrIPv6Discard:
			t.Fatalf("ParseIPv6Extensions = %v, not one of the package's errors", err)
		}
	})
}

// On an ND message ValidateNDP accepts, every accessor and option parser
// is safe.
func FuzzNDP(f *testing.F) {
	for _, name := range []string{"ns", "na", "ra"} {
		b, _ := hex.DecodeString(scapy6[name])
		f.Add(b[IPv6MinimumSize:], b[8:24], b[24:40])
	}
	f.Fuzz(func(t *testing.T, b, src, dst []byte) {
		if len(src) != 16 || len(dst) != 16 || len(b) < 1 || !ICMPv6Type(b[0]).IsNDP() {
			return
		}
		s, d := IPv6(make([]byte, IPv6MinimumSize)), IPv6(make([]byte, IPv6MinimumSize))
		copy(s[ip6Src:], src)
		copy(d[ip6Src:], dst)
		m := ICMPv6(b)
		if ValidateNDP(m, NDPHopLimit, s.Src(), d.Src()) != nil {
			return
		}
		switch m.Type() {
		case ICMPv6NeighborSolic, ICMPv6NeighborAdvert, ICMPv6Redirect:
			_ = m.Target()
		case ICMPv6RouterAdvert:
			_, _, _, _ = m.RAFlags(), m.RALifetime(), m.RAReachable(), m.RARetransmit()
		}
		for typ, body := range m.Options().All() {
			switch typ {
			case NDPSourceLinkAddr, NDPTargetLinkAddr:
				LinkAddr(body)
			case NDPPrefixInfo:
				if pi, ok := ParsePrefixInfo(body); ok && !pi.Prefix.IsValid() {
					t.Fatalf("prefix information %+v with an invalid prefix", pi)
				}
			case NDPMTU:
				ParseMTUOption(body)
			}
		}
	})
}
