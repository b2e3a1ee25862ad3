package tcp

import (
	"net/netip"
	"strings"
	"testing"

	"keepnet/servers/header"
	"keepnet/servers/transport"
)

// offloadRecorder is an Output that records the MSS each segment is to be
// cut at (-1: sent without offload).
type offloadRecorder struct {
	recorder
	tso []int
}

func (r *offloadRecorder) Send(seg []byte, src, dst netip.Addr, o transport.Offload) error {
	tso := -1
	if o.Checksum {
		tso = o.MSS
	}
	r.tso = append(r.tso, tso)
	return r.recorder.Send(seg, src, dst, o)
}

// With segmentation offload the initial window (4 MSS) leaves as one
// segment the device cuts at the MSS, its checksum left to the device; the
// next window after the ACK the same way; retransmissions stay one MSS.
func TestSegmentationOffload(t *testing.T) {
	out := &offloadRecorder{}
	h := newHarness(t, func(c *Config) { c.Output = out })
	h.out = &out.recorder
	e := h.accept(noOpts)
	h.drain()
	out.tso = nil
	h.tb.SetOffload(true, true)

	data := strings.Repeat("0123456789", 5000) // 50,000 bytes
	if n, err := e.Write([]byte(data)); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	h.tb.Tick(h.clock.now)
	iw := initialWindow(1000, DefaultInitialWindow)
	if len(out.segs) != 1 || out.tso[0] != 1000 {
		t.Fatalf("sent %d segments (tso %v), want one of %d bytes to be cut at 1000", len(out.segs), out.tso, iw)
	}
	th := header.TCP(out.segs[0].b)
	if len(th.Payload()) != iw || th.Seq() != ourISS+1 {
		t.Errorf("segment seq %d with %d bytes, want %d with %d", th.Seq(), len(th.Payload()), ourISS+1, iw)
	}
	if th.Checksum() != 0 {
		t.Errorf("checksum field %#x, want it left to the device (0)", th.Checksum())
	}
	if c := h.tb.Counters(); c.OutOffloaded != 1 {
		t.Errorf("OutOffloaded = %d, want 1", c.OutOffloaded)
	}

	// The peer acknowledges all of it: slow start opens the window (by
	// one MSS for the one ACK, RFC 5681 §3.1), all of which goes out as
	// whole-MSS multiples.
	h.drain()
	out.tso = nil
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1 + uint32(iw)})
	h.tb.Tick(h.clock.now)
	total := 0
	for i, s := range out.segs {
		n := len(header.TCP(s.b).Payload())
		total += n
		if n > 1000 && (out.tso[i] != 1000 || n%1000 != 0 && i != len(out.segs)-1) {
			t.Errorf("segment %d: %d bytes cut at %d", i, n, out.tso[i])
		}
	}
	if total != e.cwnd || total <= iw {
		t.Errorf("sent %d bytes after the ACK, want the grown window, %d", total, e.cwnd)
	}

	// A loss: three duplicate ACKs. The retransmission is one MSS.
	h.drain()
	out.tso = nil
	for i := 0; i < 3; i++ {
		h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1 + uint32(iw)})
	}
	h.tb.Tick(h.clock.now)
	if len(out.segs) == 0 {
		t.Fatal("no retransmission after three duplicate ACKs")
	}
	if th := header.TCP(out.segs[0].b); th.Seq() != ourISS+1+uint32(iw) || len(th.Payload()) != 1000 || out.tso[0] != 0 {
		t.Errorf("retransmission seq %d, %d bytes, tso %d; want seq %d, 1000 bytes, not cut",
			th.Seq(), len(th.Payload()), out.tso[0], ourISS+1+uint32(iw))
	}

	// Offload off again: segments of one MSS with their checksum.
	h.tb.SetOffload(false, false)
	h.drain()
	out.tso = nil
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1 + uint32(3*iw)})
	h.tb.Tick(h.clock.now)
	for i, s := range out.segs {
		if out.tso[i] != -1 || len(header.TCP(s.b).Payload()) > 1000 {
			t.Errorf("segment %d after SetOffload(false, false): %d bytes, tso %d", i, len(header.TCP(s.b).Payload()), out.tso[i])
		}
		if err := header.ValidateTCP(s.b, s.src, s.dst); err != nil {
			t.Errorf("segment %d: %v", i, err)
		}
	}
}

// SACK blocks lengthen the header (RFC 2018 §3: 8 bytes a block). With a
// hole in what we received, a full-MSS segment carries none (they would
// push it past the MSS, and IP would refuse it), while an offloaded one
// carries them and is cut at an MSS smaller by their size, so that every
// wire segment still fits.
func TestSACKBlocksNeverOverfillTheMSS(t *testing.T) {
	for _, tso := range []bool{false, true} {
		out := &offloadRecorder{}
		h := newHarness(t, func(c *Config) { c.Output = out })
		h.out = &out.recorder
		e := h.accept(sackPeer) // MSS 1000, no timestamps
		h.tb.SetOffload(true, tso)
		h.send(seg{flags: ACK, seq: 601, ack: ourISS + 1, data: strings.Repeat("x", 100)}) // a hole at 101..601
		h.drain()
		out.tso = nil

		e.Write([]byte(strings.Repeat("0123456789", 400)))
		h.tb.Tick(h.clock.now)
		if len(out.segs) == 0 {
			t.Fatalf("tso %v: nothing sent", tso)
		}
		for i, s := range out.segs {
			th := header.TCP(s.b)
			opts, n := len(th.Options()), len(th.Payload())
			switch {
			case out.tso[i] > 0:
				if opts == 0 || out.tso[i]+opts != 1000 {
					t.Errorf("tso %v: offloaded segment %d with %d option bytes cut at %d; want SACK blocks and a cut at 1000 less them", tso, i, opts, out.tso[i])
				}
			case n+opts > 1000:
				t.Errorf("tso %v: segment %d carries %d data and %d option bytes, over the MSS of 1000", tso, i, n, opts)
			}
		}
	}
}
