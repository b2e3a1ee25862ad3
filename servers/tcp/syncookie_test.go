package tcp

import (
	"net/netip"
	"testing"
	"time"

	"keepnet/servers/header"
)

// cookieListener listens on ourPort with a SYN queue of one, and fills it
// with a half-open connection from port 6000.
func cookieListener(t *testing.T) (*harness, *Listener) {
	t.Helper()
	h := newHarness(t, func(c *Config) { c.SynQueue = 1 })
	h.advance(time.Second) // timestamps away from 0
	l, err := h.tb.Listen(netip.Addr{}, ourPort, 8)
	if err != nil {
		t.Fatal(err)
	}
	h.send(seg{flags: SYN, seq: 100, from: 6000})
	h.expect(seg{flags: SYN | ACK, seq: ourISS, ack: 101})
	return h, l
}

func TestSYNCookieWhenQueueFull(t *testing.T) {
	h, l := cookieListener(t)
	// The queue is full: the SYN is answered with a cookie, nothing kept.
	h.send(seg{flags: SYN, seq: 500, from: 6001, opts: linuxSYN(7000)})
	synack := h.expect(seg{flags: SYN | ACK, anySeq: true, ack: 501, opts: header.TCPOptions{
		MSS: 1460, HasMSS: true, SACKPermitted: true, HasWS: true, WindowScale: 5, HasTimestamps: true, TSEcr: 7000}})
	cookie := synack.seq
	if cookie == ourISS {
		t.Fatalf("SYN-ACK ISN %d: the Table's ISN, not a cookie", cookie)
	}
	if c := h.tb.Counters(); c.SynCookiesSent != 1 || c.InSynEvictions != 0 || l.Pending() != 1 || h.tb.Conns() != 1 {
		t.Fatalf("cookies sent %d, evictions %d, Pending %d, Conns %d; want 1, 0, 1, 1",
			c.SynCookiesSent, c.InSynEvictions, l.Pending(), h.tb.Conns())
	}
	// The half-open connection it would have evicted still completes.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, from: 6000})
	if e, err := l.Accept(); err != nil || e.RemoteAddr().Port() != 6000 {
		t.Fatalf("Accept() = %v, %v; want the connection from 6000", e, err)
	}
	// The cookie's ACK, echoing our TSval, with data: the connection is
	// made from the cookie, established, with the SYN's options.
	h.advance(time.Millisecond)
	h.send(seg{flags: ACK | PSH, seq: 501, ack: cookie + 1, from: 6001, data: "GET /", wnd: 100,
		opts: tsOpt(7001, synack.opts.TSVal)})
	e, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept() = %v", err)
	}
	wantState(t, e, Established)
	if e.RemoteAddr().Port() != 6001 || e.smss != 1448 || e.sndShift != 7 || e.rcvShift != 5 || !e.sackOK || !e.tsOK || e.sndWnd != 100<<7 {
		t.Errorf("from %v: smss %d, shifts %d/%d, sack %v, ts %v, sndWnd %d; want 6001, 1448, 7/5, true, true, 12800",
			e.RemoteAddr(), e.smss, e.sndShift, e.rcvShift, e.sackOK, e.tsOK, e.sndWnd)
	}
	if got := read(t, e); got != "GET /" {
		t.Errorf("Read = %q, want %q", got, "GET /")
	}
	h.expect(seg{flags: ACK, seq: cookie + 1, ack: 506}) // the window opens past the SYN-ACK's 65535
	e.Write([]byte("200"))
	h.expect(seg{flags: ACK, seq: cookie + 1, ack: 506, data: "200", from: ourPort, opts: tsOpt(h.ts(), 7001)})
	if c := h.tb.Counters(); c.SynCookiesAccepted != 1 || c.SynCookiesRejected != 0 {
		t.Errorf("cookies accepted %d rejected %d; want 1, 0", c.SynCookiesAccepted, c.SynCookiesRejected)
	}
}

func TestSYNCookieWithoutTimestamps(t *testing.T) {
	// Without timestamps there is nowhere to keep window scale and SACK:
	// the connection goes without them, with the cookie's MSS.
	h, l := cookieListener(t)
	h.send(seg{flags: SYN, seq: 500, from: 6001, opts: header.TCPOptions{MSS: 1400, HasMSS: true, HasWS: true, WindowScale: 7, SACKPermitted: true}})
	synack := h.expect(seg{flags: SYN | ACK, anySeq: true, ack: 501})
	if o := synack.opts; o.HasWS || o.SACKPermitted || o.HasTimestamps {
		t.Errorf("cookie SYN-ACK offers WS %v SACK %v TS %v; want none", o.HasWS, o.SACKPermitted, o.HasTimestamps)
	}
	h.send(seg{flags: ACK, seq: 501, ack: synack.seq + 1, from: 6001})
	e, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept() = %v", err)
	}
	if e.smss != 1400 || e.sndShift != 0 || e.rcvShift != 0 || e.sackOK || e.tsOK {
		t.Errorf("smss %d shifts %d/%d sack %v ts %v; want 1400, 0/0, false, false", e.smss, e.sndShift, e.rcvShift, e.sackOK, e.tsOK)
	}
}

func TestSYNCookieForgedOrStaleACK(t *testing.T) {
	h, l := cookieListener(t)
	h.send(seg{flags: SYN, seq: 500, from: 6001})
	cookie := h.expect(seg{flags: SYN | ACK, anySeq: true, ack: 501}).seq
	for _, tc := range []struct {
		name string
		s    seg
	}{
		{"wrong cookie", seg{flags: ACK, seq: 501, ack: cookie + 1 + 1<<20, from: 6001}},
		{"another peer's cookie", seg{flags: ACK, seq: 501, ack: cookie + 1, from: 6002}},
		{"another ISN", seg{flags: ACK, seq: 601, ack: cookie + 1, from: 6001}},
	} {
		h.send(tc.s)
		h.expect(seg{flags: RST, seq: tc.s.ack, from: ourPort})
		if _, err := l.Accept(); err == nil {
			t.Fatalf("%s: Accept() made a connection", tc.name)
		}
	}
	if c := h.tb.Counters(); c.SynCookiesRejected != 3 || c.SynCookiesAccepted != 0 || h.tb.Conns() != 1 {
		t.Fatalf("cookies rejected %d accepted %d, Conns %d; want 3, 0, 1", c.SynCookiesRejected, c.SynCookiesAccepted, h.tb.Conns())
	}
	// A cookie is good for its period and the next, not after.
	h.send(seg{flags: ACK, seq: 101, ack: ourISS + 1, from: 6000}) // no SYN-ACKs again meanwhile
	h.advance(2 * cookiePeriod)
	h.send(seg{flags: ACK, seq: 501, ack: cookie + 1, from: 6001})
	h.expect(seg{flags: RST, seq: cookie + 1, from: ourPort})
	if c := h.tb.Counters(); c.SynCookiesRejected != 4 {
		t.Errorf("cookies rejected %d, want 4", c.SynCookiesRejected)
	}
}

func TestSYNCookieRoundTrip(t *testing.T) {
	// Every MSS index survives the cookie, for any peer ISN, in the
	// period it was made and the next.
	h := newHarness(t, nil)
	id := tuple{localAddr: us, localPort: 80, remoteAddr: peer, remotePort: 5555}
	made := h.clock.now
	for mss := range cookieMSS {
		for _, iss := range []uint32{0, 1, 0x7fffffff, 0xffffffff} {
			c := h.tb.cookieISN(id, iss, mss, made)
			for _, d := range []time.Duration{0, cookiePeriod, 2*cookiePeriod - time.Second} {
				if got, ok := h.tb.cookieCheck(id, iss, c, made.Add(d)); !ok || got != mss {
					t.Errorf("cookie(mss %d, iss %#x) checked %v later = %d, %v; want %d, true", mss, iss, d, got, ok, mss)
				}
			}
			if _, ok := h.tb.cookieCheck(id, iss, c, made.Add(2*cookiePeriod)); ok {
				t.Errorf("cookie(mss %d, iss %#x) still good after two periods", mss, iss)
			}
			if _, ok := h.tb.cookieCheck(id, iss+1, c, made); ok {
				t.Errorf("cookie(mss %d, iss %#x) good for ISN %#x", mss, iss, iss+1)
			}
		}
	}
}

func TestNoCookieCheckWithoutCookiesSent(t *testing.T) {
	// A listener that never sent a cookie answers any ACK with an RST,
	// checking nothing (RFC 9293 §3.10.7.2).
	h := newHarness(t, nil)
	h.tb.Listen(netip.Addr{}, ourPort, 8)
	h.send(seg{flags: ACK, seq: 501, ack: 12345})
	h.expect(seg{flags: RST, seq: 12345, from: ourPort})
	if c := h.tb.Counters(); c.SynCookiesRejected != 0 {
		t.Errorf("SynCookiesRejected = %d, want 0", c.SynCookiesRejected)
	}
}
