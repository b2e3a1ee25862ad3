package tcp

import (
	"strings"
	"testing"
)

// Between Hold and Flush the Table sends nothing; at Flush each connection
// sends once: four full segments in, one ACK for all of them out.
func TestHoldFlushOneACKPerBatch(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.drain()
	h.tb.Hold()
	for i := 0; i < 4; i++ {
		h.send(seg{flags: ACK, seq: 101 + uint32(i*1000), ack: ourISS + 1, data: strings.Repeat("x", 1000)})
	}
	h.expectNone()
	h.tb.Flush()
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101 + 4000})
	h.expectNone()
	if got := read(t, e); len(got) != 4000 {
		t.Errorf("read %d bytes, want 4000", len(got))
	}
	// Without Hold, the usual: an ACK for every second segment.
	for i := 4; i < 8; i++ {
		h.send(seg{flags: ACK, seq: 101 + uint32(i*1000), ack: ourISS + 1, data: strings.Repeat("x", 1000)})
	}
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101 + 6000})
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101 + 8000})
}
