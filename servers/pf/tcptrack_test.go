package pf

import (
	"testing"
	"time"
)

// clientAt is a segment from the client at offset from its next sequence
// number (negative: old data), acknowledging the server's next plus
// ackOff; it does not advance the connection.
func (c *conn) clientAt(offset int64, ackOff int64, flags uint8, n int) []byte {
	return seg{src: c.client, dst: c.server, sport: c.cport, dport: c.sport,
		seq: c.cseq + uint32(offset), ack: c.sseq + uint32(ackOff), flags: flags, data: n, win: c.cwin}.bytes()
}

func (c *conn) serverAt(offset int64, flags uint8, n int) []byte {
	return seg{src: c.server, dst: c.client, sport: c.sport, dport: c.cport,
		seq: c.sseq + uint32(offset), ack: c.cseq, flags: flags, data: n, win: c.swin}.bytes()
}

const tcpRules = "set default block\npass out proto tcp\n"

// TestTCPLifetime follows a connection from SYN to close and checks the
// timeout of each stage on the fake clock.
func TestTCPLifetime(t *testing.T) {
	tm := DefaultTimeouts()
	w := newWire(t, 0, tcpRules)
	c := w.conn(inside, 40000, outside, 80, Out)

	w.pass(Out, c.fromClient(syn, 0), ReasonRule, "SYN")
	w.advance(tm.TCPFirst - time.Second)
	w.pass(Out, c.clientAt(-1, 0, syn, 0), ReasonState, "SYN retransmitted within tcp.first")
	w.pass(In, c.fromServer(syn|ack, 0), ReasonState, "SYN-ACK")
	w.advance(tm.TCPOpening - time.Second)
	w.pass(Out, c.fromClient(ack, 0), ReasonState, "ACK within tcp.opening")

	w.advance(tm.TCPEstablished - time.Second)
	w.pass(Out, c.fromClient(ack, 100), ReasonState, "data after a day less a second idle")
	w.pass(In, c.fromServer(ack, 1000), ReasonState, "reply")

	w.pass(Out, c.fromClient(fin|ack, 0), ReasonState, "client FIN")
	w.advance(tm.TCPClosing - time.Second)
	w.pass(In, c.fromServer(ack, 10), ReasonState, "server data within tcp.closing")
	w.pass(In, c.fromServer(fin|ack, 0), ReasonState, "server FIN")
	w.advance(tm.TCPFinWait - time.Second)
	w.pass(Out, c.fromClient(ack, 0), ReasonState, "last ACK within tcp.finwait")
	w.advance(tm.TCPClosed - time.Second)
	w.pass(Out, c.clientAt(-1, 0, ack, 0), ReasonState, "ACK retransmitted within tcp.closed")
	w.advance(tm.TCPClosed)
	w.block(Out, c.clientAt(-1, 0, ack, 0), ReasonDefault, "ACK after tcp.closed")
}

// TestTCPIdleTimeouts: a connection idle past its stage's timeout is gone.
func TestTCPIdleTimeouts(t *testing.T) {
	tm := DefaultTimeouts()
	for _, tt := range []struct {
		what    string
		stage   func(c *conn)
		timeout time.Duration
	}{
		{"after SYN", func(c *conn) { c.w.pass(Out, c.fromClient(syn, 0), ReasonRule, "SYN") }, tm.TCPFirst},
		{"after SYN-ACK", func(c *conn) {
			c.w.pass(Out, c.fromClient(syn, 0), ReasonRule, "SYN")
			c.w.pass(In, c.fromServer(syn|ack, 0), ReasonState, "SYN-ACK")
		}, tm.TCPOpening},
		{"established", func(c *conn) { c.open() }, tm.TCPEstablished},
	} {
		w := newWire(t, 0, tcpRules)
		c := w.conn(inside, 40000, outside, 80, Out)
		tt.stage(c)
		w.advance(tt.timeout)
		w.block(In, c.serverAt(-1, ack, 0), ReasonDefault, tt.what+", idle for its timeout")
	}
}

func TestTCPWindow(t *testing.T) {
	w := newWire(t, 0, tcpRules)
	c := w.conn(inside, 40000, outside, 80, Out)
	c.swin = 1000 // the server lets the client send 1000 bytes
	c.open()

	w.pass(Out, c.clientAt(0, 0, ack, 1000), ReasonState, "the whole window")
	w.block(Out, c.clientAt(0, 0, ack, 1001), ReasonBadWindow, "a byte more than the window")
	w.block(Out, c.clientAt(500, 0, ack, 501), ReasonBadWindow, "ending past the window")
	w.pass(Out, c.clientAt(-1, 0, ack, 0), ReasonState, "keepalive (one before the next byte)")
	w.block(Out, c.clientAt(-200000, 0, ack, 10), ReasonBadWindow, "data from long before the window")
	w.block(Out, c.clientAt(0, 100000, ack, 0), ReasonBadWindow, "ACK of data the server never sent")
	w.pass(Out, c.clientAt(0, -1000, ack, 0), ReasonState, "an old ACK")
	w.block(Out, c.clientAt(0, -1<<20, ack, 0), ReasonBadWindow, "an ACK from a megabyte ago")

	// The server acknowledges the 1000 bytes and opens its window to
	// 5000: the client may now send 5000 more.
	c.cseq += 1000
	c.swin = 5000
	w.pass(In, c.fromServer(ack, 0), ReasonState, "server ACKs, window 5000")
	w.pass(Out, c.clientAt(0, 0, ack, 5000), ReasonState, "the new window")
	w.block(Out, c.clientAt(5000, 0, ack, 1), ReasonBadWindow, "past the new window")

	// A zero window still admits a one-byte probe.
	c.cseq += 5000
	c.swin = 0
	w.pass(In, c.serverAt(0, ack, 0), ReasonState, "server ACKs with a zero window")
	_ = c.fromServer(ack, 0)
	w.pass(Out, c.clientAt(0, 0, ack, 1), ReasonState, "a zero-window probe")

	if got := w.f.Counters().BadWindow; got != 6 {
		t.Errorf("BadWindow = %d, want 6", got)
	}
}

// TestTCPWindowScaling: the window scale applies only when both SYNs
// carry the option.
func TestTCPWindowScaling(t *testing.T) {
	ahead := func(scaled bool) Verdict {
		w := newWire(t, 0, tcpRules)
		c := w.conn(inside, 40000, outside, 80, Out)
		c.cws = 7 + 1
		if scaled {
			c.sws = 7 + 1
		}
		c.open()
		// The SYN-ACK's window is never scaled; the server's first ACK
		// after it advertises 65535<<7 (or just 65535).
		w.pass(In, c.fromServer(ack, 0), ReasonState, "server ACK")
		// 500,000 bytes ahead (a segment after a large loss): inside
		// 65535<<7, far outside 65535.
		return w.verdict(Out, "e1000.0", c.clientAt(500000, 0, ack, 1000))
	}
	if v := ahead(true); !v.Pass {
		t.Errorf("with both SYNs scaling by 7, a segment 500 kB ahead: %+v, want pass", v)
	}
	if v := ahead(false); v.Pass || v.Reason != ReasonBadWindow {
		t.Errorf("with only the client's SYN scaling, a segment 500 kB ahead: %+v, want bad window", v)
	}
}

// TestTCPReset: an RST in the window closes the state; one outside it is
// dropped and changes nothing.
func TestTCPReset(t *testing.T) {
	w := newWire(t, 0, tcpRules)
	c := w.conn(inside, 40000, outside, 80, Out)
	c.open()
	w.block(In, c.serverAt(1<<20, rst, 0), ReasonBadWindow, "forged RST a megabyte ahead")
	w.pass(Out, c.fromClient(ack, 10), ReasonState, "the connection goes on")
	w.advance(DefaultTimeouts().TCPClosed)
	w.pass(In, c.fromServer(ack, 10), ReasonState, "after tcp.closed idle, still established")

	w.pass(In, c.serverAt(0, rst, 0), ReasonState, "RST in window")
	w.advance(DefaultTimeouts().TCPClosed)
	w.block(Out, c.fromClient(ack, 10), ReasonDefault, "after tcp.closed the state is gone")
}

// TestTCPRefusedConnection: the server answers the SYN with RST-ACK.
func TestTCPRefusedConnection(t *testing.T) {
	w := newWire(t, 0, tcpRules)
	c := w.conn(inside, 40000, outside, 81, Out)
	w.pass(Out, c.fromClient(syn, 0), ReasonRule, "SYN")
	w.pass(In, c.fromServer(rst|ack, 0), ReasonState, "RST-ACK")
	// A new SYN on the same ports replaces the closed state at once.
	c.cseq += 5000
	w.pass(Out, c.fromClient(syn, 0), ReasonRule, "a new SYN, same ports")
	if got := w.f.Counters().StatesReused; got != 1 {
		t.Errorf("StatesReused = %d, want 1", got)
	}
}

// TestTCPSynToOpenState: a SYN on the ports of an established connection
// does not replace it; it is checked against the windows like any
// segment.
func TestTCPSynToOpenState(t *testing.T) {
	w := newWire(t, 0, tcpRules)
	c := w.conn(inside, 40000, outside, 80, Out)
	c.open()
	w.block(Out, c.clientAt(1<<24, 0, syn, 0), ReasonBadWindow, "SYN far from the window")
	w.pass(Out, c.fromClient(ack, 1), ReasonState, "the connection is untouched")
}
