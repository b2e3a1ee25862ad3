package ip

import (
	"bytes"
	"testing"

	"keepnet/drivers/link"
	"keepnet/kernel/pool"
	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// newLendbed is a holdbed whose driver checksums and segments, with a
// pool of big transmit buffers.
func newLendbed(t *testing.T) *holdbed {
	b := newHoldbed(t)
	bigPool := func(id uint32) *pool.Pool {
		p, err := pool.Create(id, 2, 64<<10+512)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	b.s.txBig = bigPool(4)
	b.segs = bigPool(11) // tcp's, for segments the device cuts
	b.tcp.peer.Pools = []*pool.Pool{b.segs}
	b.s.nics[0].features = link.FeatureChecksum | link.FeatureTSO
	b.s.features = b.s.nics[0].features
	b.s.sentCopied = 0 // the ARP reply of newHoldbed
	return b
}

// outputSeg has tcp ask IP to send seg with offload.
func (b *holdbed) outputSeg(seg []byte, offload uint64) {
	b.t.Helper()
	ref, ok := b.segs.Alloc()
	if !ok {
		b.t.Fatal("tcp's pool is empty")
	}
	buf, _ := b.segs.Bytes(ref)
	ref.Len = uint32(copy(buf, seg))
	b.s.handle(b.tcp, ops.Output(ref, ourIP, peerIP, header.ProtocolTCP, offload))
}

// sentFrame returns the frame of the one OpTx IP queued for the driver.
func (b *holdbed) sentFrame() (pool.Ref, []byte) {
	b.t.Helper()
	if n := b.pendingTx(); n != 1 {
		b.t.Fatalf("%d frames for the driver, want 1", n)
	}
	for _, m := range b.drv.queue {
		if link.OpOf(m) != link.OpTx {
			continue
		}
		p := b.s.txPool(int(m.Ref.Len))
		f, err := p.Bytes(m.Ref)
		if err != nil {
			b.t.Fatal(err)
		}
		return m.Ref, f
	}
	panic("unreachable")
}

// A transport's datagram with offloads is built in the transmit buffer the
// driver gets: its bytes are copied once, from the transport's buffer,
// not built apart and copied again (SentInPlace, not SentCopied). So is
// one the device is to segment, in a big buffer.
func TestSendInPlace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		offload uint64
		pool    func(b *holdbed) *pool.Pool
	}{
		{"checksum", 100, ops.OffloadChecksum, func(b *holdbed) *pool.Pool { return b.s.tx }},
		{"segmentation", 30000, ops.TSOArg(1448), func(b *holdbed) *pool.Pool { return b.s.txBig }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newLendbed(t)
			p := tc.pool(b)
			free := p.Available()
			seg := tcpSegment(tc.size)
			b.outputSeg(seg, tc.offload)
			if got := b.answers(); len(got) != 1 {
				t.Fatalf("tcp got %d answers, want 1", len(got))
			}
			ref, f := b.sentFrame()
			if ref.Pool != p.ID() || len(f) != 34+len(seg) || !bytes.Equal(f[54:], seg[20:]) {
				t.Fatalf("frame of %d bytes in pool %d, want %d in pool %d with the segment's payload", len(f), ref.Pool, 34+len(seg), p.ID())
			}
			if header.IPv4(f[14:]).TotalLength() != uint16(20+len(seg)) {
				t.Errorf("IPv4 total length %d, want %d", header.IPv4(f[14:]).TotalLength(), 20+len(seg))
			}
			if b.s.sentInPlace != uint64(len(f)) || b.s.sentCopied != 0 {
				t.Errorf("sent %d bytes in place, %d copied; want %d in place", b.s.sentInPlace, b.s.sentCopied, len(f))
			}
			if p.Available() != free-1 || !b.s.lent.IsZero() {
				t.Errorf("%d buffers free, one lent %v; want %d free (one with the driver), none lent", p.Available(), b.s.lent, free-1)
			}
			b.transmitted(1)
			if p.Available() != free {
				t.Errorf("%d buffers free after the driver's answer, want %d", p.Available(), free)
			}
		})
	}
}

// A datagram the Stack refuses after it was lent a buffer to build it in
// gives the buffer back: none is lost to a refused send.
func TestLentBufferReturned(t *testing.T) {
	b := newLendbed(t)
	delete(b.s.links, "e1000.0") // the driver is gone: sendFrame fails
	free := b.s.tx.Available()
	b.outputSeg(tcpSegment(100), ops.OffloadChecksum)
	if len(b.tcp.queue) != 1 || ops.StatusOf(b.tcp.queue[0]) == ops.StatusOK {
		t.Fatalf("tcp's answers %+v, want one refusal", b.tcp.queue)
	}
	if b.s.tx.Available() != free || !b.s.lent.IsZero() {
		t.Errorf("%d transmit buffers free, %v lent; want %d free, none lent", b.s.tx.Available(), b.s.lent, free)
	}
}
