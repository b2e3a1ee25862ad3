package tcp

import (
	"time"

	"keepnet/servers/header"
)

// SYN cookies (RFC 4987 §3.6). When a listener's SYN queue is full, a SYN
// is answered with a SYN-ACK whose ISN is a cookie and nothing is kept;
// the ACK that completes the handshake brings the cookie back (as its
// acknowledgment number minus one) and the connection is made from it. A
// flood can then fill the queue but not crowd out a legitimate client.
//
// The cookie, 32 bits:
//
//	 31      27 26                                                  0
//	+----------+-----------------------------------------------------+
//	| t mod 32 | F(4-tuple, peer's ISN, t) + MSS index   (mod 2^27)  |
//	+----------+-----------------------------------------------------+
//
// t counts cookiePeriod periods of the Table's clock, and a cookie is good
// in the period it was made and the next; F is the Table's keyed hash (the
// RFC 6528 one, another domain), so only we can make one. The MSS index
// picks the largest of cookieMSS not above the peer's MSS. A forged ACK
// passes with probability len(cookieMSS)/2^27, and is only checked at all
// while the listener has recently sent cookies.
//
// The other options of the SYN ride in the low bits of our timestamp
// (TSval), which the peer echoes in every segment: its window scale (4
// bits, 15 for none) and SACK-permitted (1 bit), as Linux does. A peer
// without timestamps gets neither window scaling nor SACK: the cookie
// connection works, a little slower.

const (
	cookiePeriod = 64 * time.Second
	cookieBits   = 27
	cookieMask   = 1<<cookieBits - 1
	cookieTSBits = 5
	cookieTSMask = 1<<cookieTSBits - 1
	cookieNoWS   = 15 // window scale field: the SYN offered none
	cookieSACK   = 1 << 4
)

// cookieMSS are the peer MSS values a cookie can say (Linux's table for
// IPv4, extended): the common Ethernet, PPPoE, tunnel and minimum sizes.
var cookieMSS = [8]uint16{536, 1024, 1200, 1300, 1360, 1400, 1440, 1460}

// cookieTime is the cookie period of now.
func (t *Table) cookieTime(now time.Time) uint32 {
	return uint32(now.Sub(t.epoch) / cookiePeriod)
}

// cookieISN makes the cookie for a SYN with sequence number peerISS from
// id, its MSS given by index mss into cookieMSS.
func (t *Table) cookieISN(id tuple, peerISS uint32, mss int, now time.Time) uint32 {
	tc := t.cookieTime(now)
	return tc<<cookieBits | (t.hash(id, hashCookie, peerISS, tc)+uint32(mss))&cookieMask
}

// cookieCheck checks the cookie an ACK returned and gives its MSS index.
func (t *Table) cookieCheck(id tuple, peerISS, cookie uint32, now time.Time) (int, bool) {
	tnow := t.cookieTime(now)
	age := (tnow - cookie>>cookieBits) % (1 << (32 - cookieBits))
	if age > 1 {
		return 0, false
	}
	tc := tnow - age
	mss := (cookie - t.hash(id, hashCookie, peerISS, tc)) & cookieMask
	if mss >= uint32(len(cookieMSS)) {
		return 0, false
	}
	return int(mss), true
}

// sendCookie answers the SYN s from id with a cookie SYN-ACK.
func (t *Table) sendCookie(l *Listener, id tuple, s *segment, now time.Time) {
	peerMSS := uint16(536)
	if s.opts.HasMSS && s.opts.MSS > 0 {
		peerMSS = s.opts.MSS
	}
	mss := 0
	for i, m := range cookieMSS {
		if m <= peerMSS {
			mss = i
		}
	}
	o := header.TCPOptions{MSS: uint16(t.mssFor(id.remoteAddr)), HasMSS: true}
	if s.opts.HasTimestamps {
		// The SYN's other options, in the low bits of a TSval that is
		// never ahead of our clock (later TSvals must not be older).
		bits := uint32(cookieNoWS)
		if s.opts.HasWS {
			bits = uint32(min(s.opts.WindowScale, 14))
			o.HasWS, o.WindowScale = true, t.rcvShift()
		}
		if s.opts.SACKPermitted {
			bits |= cookieSACK
			o.SACKPermitted = true
		}
		ts := uint32(now.Sub(t.epoch)/time.Millisecond) + t.tsOffset(id)
		val := ts&^cookieTSMask | bits
		if seqGT(val, ts) {
			val -= cookieTSMask + 1
		}
		o.HasTimestamps, o.TSVal, o.TSEcr = true, val, s.opts.TSVal
	}
	l.cookieAt = now
	t.c.SynCookiesSent++
	win := min(t.cfg.RecvBuffer, 65535) // a SYN-ACK's window is never scaled
	t.sendRaw(id, t.cookieISN(id, s.seq, mss, now), s.seq+1, header.TCPFlagSYN|header.TCPFlagACK, uint16(win), &o)
}

// cookieAccept takes an ACK to listener l that may complete a cookie
// handshake. It reports whether the ACK was a valid cookie's, in which case
// the connection is made and the ACK processed by it; otherwise the caller
// answers as for any stray ACK.
func (t *Table) cookieAccept(l *Listener, id tuple, s *segment, now time.Time) bool {
	if l.cookieAt.IsZero() || now.Sub(l.cookieAt) > 2*cookiePeriod || s.has(header.TCPFlagSYN|header.TCPFlagRST) {
		return false // no cookie of ours can be out there
	}
	iss, peerISS := s.ack-1, s.seq-1
	mss, ok := t.cookieCheck(id, peerISS, iss, now)
	if !ok {
		t.c.SynCookiesRejected++
		return false
	}
	if len(l.acceptQ) >= l.backlog {
		t.c.InSynDrops++
		return true // as for a SYN: dropped, the peer will send again
	}
	if t.admit() != nil {
		return false // refused: an RST
	}
	t.c.SynCookiesAccepted++
	o := header.TCPOptions{MSS: cookieMSS[mss], HasMSS: true}
	if s.opts.HasTimestamps {
		o.HasTimestamps = true
		bits := s.opts.TSEcr & cookieTSMask
		if ws := uint8(bits & 0xf); ws != cookieNoWS {
			o.HasWS, o.WindowScale = true, ws
		}
		o.SACKPermitted = bits&cookieSACK != 0
	}
	e := t.newEndpoint(id)
	e.iss, e.sndUna, e.sndNxt, e.recover, e.highRxt = iss, iss, iss+1, iss, iss
	e.listener = l
	e.state = SynReceived
	e.irs, e.rcvNxt, e.lastAck = peerISS, s.seq, s.seq
	e.peerOptions(&o, true)
	if o.HasTimestamps {
		e.tsRecent, e.tsRecentAt = s.opts.TSVal, now
	}
	e.rcvAdv = e.rcvNxt + uint32(min(e.rcvWindow(), 65535)) // what the SYN-ACK offered
	t.add(e)
	// The echo holds the cookie's bits, not only a time: no RTT sample.
	s.opts.TSEcr = 0
	e.input(s, now)
	return true
}
