package header

import "testing"

// The fuzzers assert the package's one promise: Validate never panics, and
// on anything it accepts every accessor is safe and consistent.

func FuzzEthernet(f *testing.F) {
	f.Add(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 6}, arpPacket(nil)...))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateEthernet(b) != nil {
			return
		}
		e := Ethernet(b)
		_, _, _ = e.Dst(), e.Src(), e.Type()
		if len(e.Payload()) != len(b)-EthernetMinimumSize {
			t.Fatalf("len(Payload()) = %d, want %d", len(e.Payload()), len(b)-EthernetMinimumSize)
		}
	})
}

func FuzzARP(f *testing.F) {
	f.Add(arpPacket(nil))
	f.Add(arpPacket(func(a ARP) { a.SetOp(ARPReply) }))
	f.Add(arpPacket(nil)[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateARP(b) != nil {
			return
		}
		a := ARP(b)
		_, _, _, _, _ = a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP()
		if !a.SenderIP().Is4() || !a.TargetIP().Is4() {
			t.Fatalf("SenderIP, TargetIP = %v, %v, want IPv4", a.SenderIP(), a.TargetIP())
		}
	})
}

func FuzzIPv4(f *testing.F) {
	for _, c := range pingCapture {
		f.Add(unhex(f, c.hex))
	}
	f.Add(ipv4([]byte("hello"), []byte{1, 1, 1, 0}, nil))
	f.Add(ipv4(make([]byte, 8), nil, fix(func(h IPv4) { h.SetFlagsFragmentOffset(IPv4FlagMoreFragments, 1480) })))
	f.Add(ipv4(nil, nil, fix(func(h IPv4) { h[0] = 0x4f })))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateIPv4(b) != nil {
			return
		}
		h := IPv4(b)
		_, _, _, _, _, _ = h.TOS(), h.ID(), h.Flags(), h.TTL(), h.Protocol(), h.Checksum()
		_, _, _ = h.Src(), h.Dst(), h.IsFragment()
		hl, tl := h.HeaderLength(), int(h.TotalLength())
		if len(h.Options()) != hl-IPv4MinimumSize || len(h.Payload()) != tl-hl {
			t.Fatalf("len(Options()), len(Payload()) = %d, %d, want %d, %d", len(h.Options()), len(h.Payload()), hl-IPv4MinimumSize, tl-hl)
		}
		if end := h.FragmentOffset() + tl - hl; end > IPv4MaximumSize-IPv4MinimumSize {
			t.Fatalf("fragment ends at %d, past the largest datagram", end)
		}
		if got := h.HeaderChecksum(); !sameChecksum(got, h.Checksum()) {
			t.Fatalf("HeaderChecksum() = %#04x, want field %#04x", got, h.Checksum())
		}
		if h.Protocol() == ProtocolICMP && ValidateICMPv4(h.Payload()) == nil {
			m := ICMPv4(h.Payload())
			_, _, _, _, _, _ = m.Type(), m.Code(), m.Ident(), m.Sequence(), m.MTU(), m.Payload()
		}
	})
}

func FuzzICMP(f *testing.F) {
	for _, c := range pingCapture {
		f.Add(unhex(f, c.hex)[20:])
	}
	f.Add([]byte{3, 3, 0xfc, 0xfc, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateICMPv4(b) != nil {
			return
		}
		m := ICMPv4(b)
		_, _, _, _, _ = m.Type(), m.Code(), m.Ident(), m.Sequence(), m.MTU()
		if len(m.Payload()) != len(b)-ICMPv4MinimumSize {
			t.Fatalf("len(Payload()) = %d, want %d", len(m.Payload()), len(b)-ICMPv4MinimumSize)
		}
		if got := m.ComputeChecksum(); !sameChecksum(got, m.Checksum()) {
			t.Fatalf("ComputeChecksum() = %#04x, want field %#04x", got, m.Checksum())
		}
	})
}

// sameChecksum compares checksum fields in one's complement arithmetic,
// where 0x0000 and 0xffff are both zero and both verify.
func sameChecksum(a, b uint16) bool {
	return a == b || a == 0 && b == 0xffff || a == 0xffff && b == 0
}
