package tcp

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"keepnet/servers/header"
)

// The socket options of Go's net.TCPConn, per connection (issue 19), and
// the initial window, as dialogues on the wire.

// TestKeepAliveProbesAtIdleAndInterval: keep-alive with a 2 s idle time, a
// 1 s interval and 3 probes, the configuration of the QEMU test: the first
// probe 2 s after the peer's last segment, then one a second; the peer
// answering a probe starts the idle time again; three probes unanswered
// end the connection with ErrTimedOut, which a Read returns, 5 s after the
// peer went silent.
func TestKeepAliveProbesAtIdleAndInterval(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	woken := 0
	e.SetNotify(func() { woken++ })
	e.SetKeepAlive(true, 2*time.Second, time.Second, 3)
	if on, idle, interval, count := e.KeepAlive(); !on || idle != 2*time.Second || interval != time.Second || count != 3 {
		t.Fatalf("KeepAlive() = %v, %v, %v, %d", on, idle, interval, count)
	}
	probe := seg{flags: ACK, seq: ourISS, ack: 101} // SND.NXT-1, no data (RFC 9293 §3.8.4)

	h.advance(2*time.Second - time.Millisecond)
	h.expectNone()
	h.advance(time.Millisecond)
	h.expect(probe)
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1}) // the peer is there
	h.advance(time.Second)
	h.expectNone() // idle again from its answer
	h.advance(time.Second)
	h.expect(probe)

	// The peer vanishes.
	h.advance(time.Second)
	h.expect(probe)
	h.advance(time.Second)
	h.expect(probe)
	if e.Err() != nil {
		t.Fatalf("Err() = %v after two probes, want nil", e.Err())
	}
	h.advance(time.Second)
	h.expectNone() // giving up sends nothing, as in Linux
	if !errors.Is(e.Err(), ErrTimedOut) || e.State() != Closed {
		t.Fatalf("after 3 probes: %v, %v; want CLOSED, ErrTimedOut", e.State(), e.Err())
	}
	if _, err := e.Read(make([]byte, 10)); !errors.Is(err, ErrTimedOut) {
		t.Errorf("Read() = %v, want ErrTimedOut", err)
	}
	if woken == 0 {
		t.Error("the socket layer was not told")
	}
	if c := h.tb.Counters(); c.KeepAliveProbes != 4 || c.KeepAliveTimeouts != 1 {
		t.Errorf("KeepAliveProbes %d, KeepAliveTimeouts %d; want 4, 1", c.KeepAliveProbes, c.KeepAliveTimeouts)
	}
}

// TestKeepAliveOffByDefault: a connection sends no probe however long it
// idles, and turning keep-alive off stops the probes.
func TestKeepAliveOffByDefault(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	h.advance(3 * time.Hour)
	h.expectNone()
	e.SetKeepAlive(true, time.Second, time.Second, 1)
	h.advance(time.Second)
	h.expect(seg{flags: ACK, seq: ourISS, ack: 101})
	e.SetKeepAlive(false, 0, 0, 0)
	h.advance(time.Hour)
	h.expectNone()
	if e.Err() != nil {
		t.Fatalf("Err() = %v", e.Err())
	}
}

// TestKeepAliveWaitsForOutstandingData: with data unacknowledged the
// retransmission timer watches the peer, not keep-alive (as in Linux): no
// probe goes out, and keep-alive does not end the connection.
func TestKeepAliveWaitsForOutstandingData(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.SetKeepAlive(true, time.Second, time.Second, 1)
	e.Write([]byte("data"))
	for range 30 {
		h.advance(100 * time.Millisecond)
		for {
			s, ok := h.next()
			if !ok {
				break
			}
			if s.data != "data" {
				t.Fatalf("sent %v with data in flight, want only retransmissions", s)
			}
		}
	}
	if e.Err() != nil || h.tb.Counters().KeepAliveProbes != 0 {
		t.Fatalf("Err() = %v, %d probes: keep-alive acted with data in flight", e.Err(), h.tb.Counters().KeepAliveProbes)
	}
}

// TestLingerZeroClosesWithRST: SetLinger(0) makes Close abortive: an RST at
// SND.NXT, the data still queued discarded, the connection gone.
func TestLingerZeroClosesWithRST(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.Write([]byte("sent"))
	h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: "sent"})
	e.Write([]byte("held by Nagle"))
	h.expectNone()
	e.SetLinger(0)
	e.Close()
	h.expect(seg{flags: RST, seq: ourISS + 5})
	h.expectNone()
	if h.tb.Conns() != 0 || e.State() != Closed {
		t.Fatalf("after Close: %v, %d connections", e.State(), h.tb.Conns())
	}
}

// TestLingerGracefulDrains: with the default linger, and with a positive
// one, Close sends the data and then the FIN; Drained says when the peer
// has acknowledged both (what a lingering close waits for).
func TestLingerGracefulDrains(t *testing.T) {
	for _, linger := range []int{NoLinger, 5} {
		h := newHarness(t, nil)
		e := h.accept(noOpts)
		e.SetLinger(linger)
		if e.Linger() != linger {
			t.Fatalf("Linger() = %d, want %d", e.Linger(), linger)
		}
		e.Write([]byte("bye"))
		h.expect(seg{flags: ACK, seq: ourISS + 1, ack: 101, data: "bye"})
		e.Close()
		h.expect(seg{flags: FIN | ACK, seq: ourISS + 4, ack: 101})
		if e.Drained() {
			t.Fatalf("linger %d: Drained() before the peer acknowledged", linger)
		}
		h.send(seg{flags: ACK, seq: 101, ack: ourISS + 4})
		if e.Drained() {
			t.Fatalf("linger %d: Drained() before the FIN was acknowledged", linger)
		}
		h.send(seg{flags: ACK, seq: 101, ack: ourISS + 5})
		if !e.Drained() {
			t.Fatalf("linger %d: not Drained() after everything was acknowledged (%v)", linger, e.State())
		}
	}
}

// TestBufferSizes: SetSendBuffer bounds what Write takes; SetRecvBuffer
// what the window offers; both within MinBuffer and the Table's buffer
// sizes (Config.SendBuffer, RecvBuffer).
func TestBufferSizes(t *testing.T) {
	h := newHarness(t, nil)
	e := h.accept(noOpts)
	e.SetSendBuffer(1) // MinBuffer
	e.SetRecvBuffer(64 << 30)
	if s, r := e.Buffers(); s != MinBuffer || r != h.tb.cfg.RecvBuffer {
		t.Fatalf("Buffers() = %d, %d; want %d, %d", s, r, MinBuffer, h.tb.cfg.RecvBuffer)
	}
	if n, _ := e.Write(make([]byte, 3*MinBuffer)); n != MinBuffer {
		t.Fatalf("Write took %d bytes, want the send buffer's %d", n, MinBuffer)
	}
	h.drain()
	// A receive buffer smaller than the window already offered keeps
	// the window: it never shrinks.
	e.SetRecvBuffer(MinBuffer)
	if _, r := e.Buffers(); r < 65535 {
		t.Errorf("receive buffer %d, below the 65535 advertised", r)
	}
}

// TestInitialWindowRoundTrips counts the round trips a 10 KiB response
// takes on the wire, the peer acknowledging each segment (issue 19): with
// the default initial window of ten segments it all leaves in the first
// flight; with three (keepnet.tcp.iw=3, RFC 5681's window) it needs a
// second round trip. NoDelay, as the server sets it (Go's default): with
// Nagle's algorithm the short last segment would wait for an ACK.
func TestInitialWindowRoundTrips(t *testing.T) {
	const size = 10 << 10
	for _, tc := range []struct {
		iw      int // Config.InitialWindow; 0: the default
		flights int
	}{{0, 1}, {10, 1}, {3, 2}} {
		h := newHarness(t, func(c *Config) { c.InitialWindow, c.NoDelay = tc.iw, true })
		e := h.accept(header.TCPOptions{MSS: 1460, HasMSS: true}) // an Ethernet peer
		h.send(seg{flags: ACK | PSH, seq: 101, ack: ourISS + 1, data: "GET / HTTP/1.1\r\n\r\n"})
		rcvNxt := uint32(101 + 18)
		response := strings.Repeat("x", size)
		if n, err := e.Write([]byte(response)); n != size || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		got, flights := "", 0
		for len(got) < size {
			flights++
			if flights > 5 {
				t.Fatalf("iw %d: %d bytes after %d flights", tc.iw, len(got), flights-1)
			}
			var sizes, acks []int
			for {
				s, ok := h.next()
				if !ok {
					break
				}
				sizes = append(sizes, len(s.data))
				got += s.data
				acks = append(acks, len(got))
			}
			t.Logf("iw %d: flight %d: segments of %v bytes", tc.iw, flights, sizes)
			// One RTT later, an ACK for each segment, as Linux's
			// quick ACKs at the start of a connection.
			for _, a := range acks {
				h.send(seg{flags: ACK, seq: rcvNxt, ack: ourISS + 1 + uint32(a)})
			}
		}
		if got != response {
			t.Fatalf("iw %d: the response arrived wrong", tc.iw)
		}
		if flights != tc.flights {
			t.Errorf("iw %d: %d round trips for %d bytes, want %d", tc.iw, flights, size, tc.flights)
		}
	}
	if got := initialWindow(1460, 3); got != 3*1460 {
		t.Errorf("initialWindow(1460, 3) = %d, want %d", got, 3*1460)
	}
}

// keptHarness is a harness whose Table keeps its connections in mem.
func keptHarness(t *testing.T) (*harness, []byte) {
	k := keptConfig()
	h := newHarness(t, func(c *Config) {
		c.MaxConns, c.MaxTimeWait, c.SendBuffer, c.RecvBuffer, c.BufferBudget = k.MaxConns, k.MaxTimeWait, k.SendBuffer, k.RecvBuffer, k.BufferBudget
	})
	geo, _ := geometryFor(h.tb.cfg, 0)
	mem := make([]byte, geo.dataOff+16*(64<<10))
	if _, err := h.tb.Keep(mem); err != nil {
		t.Fatal(err)
	}
	return h, mem
}

// restart makes the harness's Table again from mem, as a restarted tcp
// does, and returns the connection socket sock held.
func (h *harness) restart(mem []byte, sock uint64) *Endpoint {
	h.t.Helper()
	cfg := h.tb.cfg
	tb := NewTable(cfg)
	owned, err := tb.Keep(mem)
	if err != nil {
		h.t.Fatal(err)
	}
	h.tb = tb
	h.drain()
	for _, e := range owned {
		if e.owner.sock == sock {
			return e
		}
	}
	h.t.Fatalf("socket %d's connection did not come back (%+v)", sock, tb.Counters())
	return nil
}

// TestKeptOptionsSurviveRestart: every socket option is in the connection's
// record, so a restarted tcp adopts the connection with them; keep-alive
// goes on probing at the configured times.
func TestKeptOptionsSurviveRestart(t *testing.T) {
	h, mem := keptHarness(t)
	e := h.accept(noOpts)
	e.own(owner{sock: 7})
	e.SetNoDelay(true)
	e.SetKeepAlive(true, 2*time.Second, time.Second, 3)
	e.SetLinger(4)
	e.SetSendBuffer(48 << 10)  // keptConfig's buffers are 64 KiB
	e.SetRecvBuffer(MinBuffer) // no smaller than the 65535 advertised
	h.tb.Commit()

	e = h.restart(mem, 7)
	if !e.noDelay || e.Linger() != 4 {
		t.Errorf("after the restart: noDelay %v, linger %d", e.noDelay, e.Linger())
	}
	if on, idle, interval, count := e.KeepAlive(); !on || idle != 2*time.Second || interval != time.Second || count != 3 {
		t.Errorf("after the restart: KeepAlive() = %v, %v, %v, %d", on, idle, interval, count)
	}
	if s, r := e.Buffers(); s != 48<<10 || r != 65535 {
		t.Errorf("after the restart: Buffers() = %d, %d", s, r)
	}
	h.advance(2 * time.Second)
	h.expect(seg{flags: ACK, seq: ourISS, ack: 101}) // the probe, from the new Table
}

// TestKeptRecordVersion1Loads: a record of version 1, written before the
// options had a place in it, still loads, with the defaults for what it
// lacks.
func TestKeptRecordVersion1Loads(t *testing.T) {
	h, mem := keptHarness(t)
	e := h.accept(noOpts)
	e.own(owner{sock: 7})
	e.SetKeepAlive(true, 2*time.Second, time.Second, 3) // version 1 has keep-alive
	e.SetLinger(0)
	h.tb.Commit()

	// Rewrite its newest copy as version 1 wrote it: without the last
	// three fields (linger, the two buffer limits) and version 3's.
	k := h.tb.keep
	i := e.slot - 1
	_, rec, _, c, ok := k.newestCopy(i)
	if !ok {
		t.Fatal("no record")
	}
	cp := k.copyOf(i, c)
	n := len(rec) - 3*8 - ecnRecordSize
	binary.LittleEndian.PutUint16(cp[12:], uint16(n))
	cp[15] = 1
	binary.LittleEndian.PutUint32(cp[8:], k.sum(cp, n))

	e = h.restart(mem, 7)
	if e.Linger() != NoLinger {
		t.Errorf("linger %d from a version 1 record, want NoLinger", e.Linger())
	}
	if s, r := e.Buffers(); s != h.tb.cfg.SendBuffer || r != h.tb.cfg.RecvBuffer {
		t.Errorf("Buffers() = %d, %d from a version 1 record, want the defaults", s, r)
	}
	if on, idle, _, _ := e.KeepAlive(); !on || idle != 2*time.Second {
		t.Errorf("keep-alive %v, %v from a version 1 record", on, idle)
	}
	// A version this tcp does not know is not read.
	k = h.tb.keep
	i = e.slot - 1
	h.tb.touch(e)
	h.tb.Commit()
	_, _, _, c, _ = k.newestCopy(i)
	cp = k.copyOf(i, c)
	cp[15] = keptRecordVersion + 1
	binary.LittleEndian.PutUint32(cp[8:], k.sum(cp, int(binary.LittleEndian.Uint16(cp[12:]))))
	tb := NewTable(h.tb.cfg)
	if _, err := tb.Keep(mem); err != nil {
		t.Fatal(err)
	}
	// The older copy, the version 1 one, is adopted instead.
	if tb.Counters().KeptConns != 1 {
		t.Errorf("KeptConns %d, want the older copy adopted", tb.Counters().KeptConns)
	}
}
