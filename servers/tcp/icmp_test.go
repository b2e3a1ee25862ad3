package tcp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/transport"
)

// icmpAbout is an ICMP error of typ and code (and next-hop mtu) about our
// segment from e with sequence number seq, as ip delivers it.
func icmpAbout(e *Endpoint, typ header.ICMPv4Type, code uint8, mtu int, seq uint32) ICMPError {
	q := make([]byte, 8)
	binary.BigEndian.PutUint16(q[0:], e.LocalAddr().Port())
	binary.BigEndian.PutUint16(q[2:], e.RemoteAddr().Port())
	binary.BigEndian.PutUint32(q[4:], seq)
	return ICMPError{Type: typ, Code: code, MTU: mtu, Local: e.LocalAddr(), Remote: e.RemoteAddr(), Quote: q}
}

func fragNeeded(e *Endpoint, mtu int, seq uint32) ICMPError {
	return icmpAbout(e, header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, mtu, seq)
}

// linkMSS is a peer with an Ethernet MSS and nothing else.
var linkMSS = header.TCPOptions{MSS: 1460, HasMSS: true}

// Two full segments go out; a router with a 1000-byte MTU drops them and
// says so. A "fragmentation needed" quoting a sequence number we have not
// sent, or one already acknowledged, is ignored (RFC 5927 §4.1); one
// quoting the first segment lowers the MSS to 960 and what was lost goes
// again at once, cut at the new size.
func TestFragNeededResendsAtPathMTU(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(linkMSS)
	data := strings.Repeat("a", 1460) + strings.Repeat("b", 1460)
	if n, err := e.Write([]byte(data)); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: data[:1460]})
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1 + 1460, ack: 101, data: data[1460:]})

	for _, seq := range []uint32{ourISS, ourISS + 1 + 2920, ourISS + 100000} {
		h.tb.HandleICMP(fragNeeded(e, 1000, seq))
		h.expectNone()
		if e.smss != 1460 {
			t.Fatalf("quoted seq %d outside [SND.UNA, SND.NXT): smss %d, want 1460", seq, e.smss)
		}
	}
	if c := h.tb.Counters(); c.ICMPOutOfWindow != 3 {
		t.Errorf("ICMPOutOfWindow = %d, want 3", c.ICMPOutOfWindow)
	}

	cwnd := e.cwnd
	h.tb.HandleICMP(fragNeeded(e, 1000, ourISS+1))
	if e.smss != 960 {
		t.Fatalf("smss = %d, want 960", e.smss)
	}
	for off := 0; off < len(data); off += 960 {
		end := min(off+960, len(data))
		h.expect(seg{flags: ACK, seq: ourISS + 1 + uint32(off), ack: 101, data: data[off:end]})
	}
	h.expectNone()
	if e.cwnd != cwnd {
		t.Errorf("cwnd = %d after fragmentation needed, want %d: no congestion signal", e.cwnd, cwnd)
	}
	// A second message about the same flight changes nothing more.
	h.tb.HandleICMP(fragNeeded(e, 1000, ourISS+1+1460))
	h.expectNone()
	// New data goes at the new size.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1 + 2920})
	h.drain()
	e.Write([]byte(strings.Repeat("c", 2000)))
	h.expect(seg{flags: ACK, seq: ourISS + 1 + 2920, ack: 101, data: strings.Repeat("c", 960)})
	if c := h.tb.Counters(); c.PathMTUReductions != 1 {
		t.Errorf("PathMTUReductions = %d, want 1", c.PathMTUReductions)
	}
}

// An MTU that would not lower the segment size, and an absurd one, change
// nothing below the floor: 552 bytes at least (RFC 5927 §7.1).
func TestFragNeededFloor(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(linkMSS)
	e.Write([]byte(strings.Repeat("a", 1460)))
	h.drain()
	h.tb.HandleICMP(fragNeeded(e, 1500, ourISS+1))
	h.expectNone()
	h.tb.HandleICMP(fragNeeded(e, 68, ourISS+1))
	if e.smss != 552-40 {
		t.Errorf("smss = %d after an MTU of 68, want %d", e.smss, 552-40)
	}
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: strings.Repeat("a", 512)})
}

// mssRecorder records each data segment's length and the MSS it asked
// the device to cut it at.
type mssRecorder struct{ n, mss []int }

func (r *mssRecorder) Buffer(int) []byte { return nil }
func (r *mssRecorder) Send(seg []byte, _, _ netip.Addr, o transport.Offload) error {
	if n := len(header.TCP(seg).Payload()); n > 0 {
		r.n, r.mss = append(r.n, n), append(r.mss, o.MSS)
	}
	return nil
}

// With segmentation offload: what is resent is cut at the new MSS, and so
// are the offloaded segments of new data after.
func TestFragNeededTSO(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(linkMSS)
	rec := &mssRecorder{}
	h.tb.out = rec
	h.tb.SetOffload(true, true)
	e.Write([]byte(strings.Repeat("a", 10*1460)))
	if len(rec.n) != 1 || rec.n[0] != 10*1460 || rec.mss[0] != 1460 {
		t.Fatalf("sent %v at MSS %v, want one offloaded segment of %d at 1460", rec.n, rec.mss, 10*1460)
	}
	*rec = mssRecorder{}
	h.tb.HandleICMP(fragNeeded(e, 1000, ourISS+1))
	sent := 0
	for i, n := range rec.n {
		if n > 960 && rec.mss[i] != 960 {
			t.Errorf("resent %d bytes at MSS %d, want at most 960", n, rec.mss[i])
		}
		sent += n
	}
	if sent != 10*1460 {
		t.Errorf("resent %d bytes, want %d", sent, 10*1460)
	}
	h.tb.Input(peerSeg(ourPort, seg{flags: ACK, seq: 101, ack: ourISS + 1 + 10*1460, wnd: 65535}), peer, us)
	*rec = mssRecorder{}
	e.Write([]byte(strings.Repeat("b", 5*960)))
	if len(rec.n) != 1 || rec.mss[0] != 960 {
		t.Errorf("new data sent as %v at MSS %v, want one segment at MSS 960", rec.n, rec.mss)
	}
}

// Port unreachable in SYN-SENT: the connection attempt is refused at
// once (RFC 1122 §4.2.3.9), if the quote is our SYN.
func TestPortUnreachableRefusesConnect(t *testing.T) {
	h := newHarness(t, nil)
	e, _ := h.tb.Connect(us, netip.AddrPortFrom(peer, peerPort))
	h.expect(seg{flags: SYN, seq: ourISS})
	h.tb.HandleICMP(icmpAbout(e, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, 0, ourISS+1))
	wantState(t, e, SynSent)
	h.tb.HandleICMP(icmpAbout(e, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, 0, ourISS))
	if !errors.Is(e.Err(), ErrRefused) || e.State() != Closed || h.tb.Conns() != 0 {
		t.Fatalf("Err, State, Conns = %v, %v, %d; want refused, CLOSED, 0", e.Err(), e.State(), h.tb.Conns())
	}
	if statusOf(e.Err()).Text() != "connection refused" {
		t.Errorf("status %v", statusOf(e.Err()))
	}
}

// Host unreachable is a soft error: the attempt goes on, and if it times
// out, that is the error reported (EHOSTUNREACH, not ETIMEDOUT).
func TestHostUnreachableIsSoft(t *testing.T) {
	h := newHarness(t, nil)
	e, _ := h.tb.Connect(us, netip.AddrPortFrom(peer, peerPort))
	h.expect(seg{flags: SYN, seq: ourISS})
	h.tb.HandleICMP(icmpAbout(e, header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable, 0, ourISS))
	wantState(t, e, SynSent)
	d := time.Second
	for range maxSynRetries {
		h.advance(d)
		h.expect(seg{flags: SYN, seq: ourISS})
		d *= 2
	}
	h.advance(d)
	if !errors.Is(e.Err(), ErrUnreachable) || statusOf(e.Err()).Text() != "no route to host" {
		t.Fatalf("Err() = %v, want ErrUnreachable", e.Err())
	}
}

// Once established, port unreachable is soft too (RFC 5461 §4.1), and an
// acknowledgment forgets it: a timeout then is a plain one.
func TestSoftErrorForgottenOnAck(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.Write([]byte("hello"))
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: "hello"})
	h.tb.HandleICMP(icmpAbout(e, header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, 0, ourISS+1))
	wantState(t, e, Established)
	if e.softErr == nil {
		t.Fatal("no soft error remembered")
	}
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 6})
	if e.softErr != nil {
		t.Errorf("soft error %v kept after an ACK of new data", e.softErr)
	}
}

// A black hole: full-size segments vanish and no ICMP comes. The first
// two timeouts resend at the full size; the third halves it, and the
// smaller segments get through.
func TestBlackHoleHalvesMSS(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(linkMSS)
	data := strings.Repeat("a", 1460)
	e.Write([]byte(data))
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: data})
	for range blackHoleRetries - 1 {
		h.advance(e.rto)
		h.expect(seg{flags: ACK | PSH, seq: ourISS + 1, ack: 101, data: data})
	}
	h.advance(e.rto)
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: data[:730]})
	if e.smss != 730 || h.tb.Counters().BlackHoleReductions != 1 {
		t.Fatalf("smss %d, BlackHoleReductions %d; want 730, 1", e.smss, h.tb.Counters().BlackHoleReductions)
	}
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1 + 730})
	h.expect(seg{flags: ACK | PSH, seq: ourISS + 1 + 730, ack: 101, data: data[730:]})
}
