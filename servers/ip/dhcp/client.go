// Package dhcp is the DHCP client of keepnet's IP server (RFC 2131, the
// options of RFC 2132): the messages and the client's state machine,
// with no I/O and no clock of its own, so that every transition is tested
// with a fake one. The IP server (servers/ip/dhcpnic.go) moves its
// messages — broadcast from 0.0.0.0 before it has an address, through its
// Stack after — and keeps the lease in the store, so that a restarted IP
// server goes on with the same address and the same renewal times.
//
// The client follows RFC 2131 §4.4 (figure 5): INIT sends DISCOVER;
// SELECTING takes the first OFFER and REQUESTs it; REQUESTING waits for
// ACK (BOUND) or NAK (INIT again); BOUND renews at T1 by unicast to the
// server (RENEWING), rebinds at T2 by broadcast (REBINDING), and loses
// the address when the lease expires, or on a NAK. Retransmissions: 4, 8,
// 16, 32, 64 seconds, each ±1 s, while selecting and requesting (§4.1);
// half the time left to T2 or to expiry, at least a minute, while renewing
// and rebinding (§4.4.5). Not done: checking the offered address with ARP
// before using it (and DECLINE), INIT-REBOOT after a reboot (the lease is
// kept only across restarts of the IP server, in the store), RELEASE.
package dhcp

import (
	"fmt"
	"math/bits"
	"net/netip"
	"time"
)

// State is where the client is in RFC 2131's figure 5.
type State int

const (
	Init State = iota
	Selecting
	Requesting
	Bound
	Renewing
	Rebinding
)

func (s State) String() string {
	return [...]string{"init", "selecting", "requesting", "bound", "renewing", "rebinding"}[s]
}

// Lease is an address the client holds, with the times the server set.
// All times count from Start: when the REQUEST the ACK answered was sent
// (§4.4.1).
type Lease struct {
	Addr     netip.Prefix // the address and the subnet (option 1)
	Router   netip.Addr   // the default gateway (option 3); invalid if none
	DNS      []netip.Addr
	Server   netip.Addr // the server identifier (option 54)
	Start    time.Time
	Duration time.Duration // the lease time (option 51); Infinite: no end
	T1, T2   time.Duration
}

// Infinite is the lease time 0xffffffff: the address never expires.
const Infinite = time.Duration(0xffffffff) * time.Second

// Renew, Rebind and Expiry are when the lease's T1, T2 and end fall.
func (l Lease) Renew() time.Time  { return l.Start.Add(l.T1) }
func (l Lease) Rebind() time.Time { return l.Start.Add(l.T2) }
func (l Lease) Expiry() time.Time { return l.Start.Add(l.Duration) }

// Event is what a step of the client means for the IP server.
type Event int

const (
	None    Event = iota
	Got           // a lease for a new address (Result.Lease): use it
	Renewed       // the same address's lease extended (Result.Lease): keep the new times
	Lost          // the address may no longer be used (expired, or NAK while bound)
)

// Send is a message to transmit: its UDP payload, to To (invalid: the
// limited broadcast, from 0.0.0.0 unless the client has an address).
type Send struct {
	Payload []byte
	To      netip.Addr
}

// Result is what Tick or Handle asks of the IP server.
type Result struct {
	Send  []Send
	Event Event
	Lease Lease // with Got and Renewed
}

// Client is one interface's DHCP client. It is not safe for concurrent
// use.
type Client struct {
	mac      [6]byte
	hostname string
	rand     func() uint32

	state State
	xid   uint32
	lease Lease   // Bound, Renewing, Rebinding
	offer Message // the offer being requested (Requesting)
	tries int     // transmissions of the current message
	start time.Time
	next  time.Time // when Tick has something to do

	// Counters, for the IP server's stats.
	Sent, Received, Ignored uint64
}

// NewClient is a client for the interface with MAC mac, in INIT: its
// first Tick sends DISCOVER. rand gives the transaction ids and the
// retransmissions' jitter; hostname (option 12) may be empty.
func NewClient(mac [6]byte, hostname string, rand func() uint32) *Client {
	return &Client{mac: mac, hostname: hostname, rand: rand}
}

// Resume puts the client in the state a lease kept from an earlier
// generation of the IP server puts it in at now: bound, renewing or
// rebinding by its times, or INIT if it has expired (false).
func (c *Client) Resume(l Lease, now time.Time) bool {
	if l.Duration != Infinite && !now.Before(l.Expiry()) {
		c.state = Init
		return false
	}
	c.lease = l
	c.tries = 0
	c.xid = c.rand()
	switch {
	case l.Duration == Infinite || now.Before(l.Renew()):
		c.state, c.next = Bound, l.Renew()
	case now.Before(l.Rebind()):
		c.state, c.next = Renewing, now
	default:
		c.state, c.next = Rebinding, now
	}
	return true
}

// State is the client's state; Lease its lease (valid while bound,
// renewing or rebinding).
func (c *Client) State() State { return c.state }
func (c *Client) Lease() Lease { return c.lease }

// Next is when Tick must next be called; the zero time for at once (a
// new client). An infinite lease renews at half of 0xffffffff seconds.
func (c *Client) Next() time.Time { return c.next }

// Tick runs what is due at now: a first DISCOVER, a retransmission, T1,
// T2, the end of the lease.
func (c *Client) Tick(now time.Time) Result {
	if now.Before(c.next) {
		return Result{}
	}
	switch c.state {
	case Init:
		c.state, c.xid, c.tries, c.start = Selecting, c.rand(), 0, now
		return c.transmit(now, c.discover(now))
	case Selecting:
		return c.transmit(now, c.discover(now))
	case Requesting:
		if c.tries >= maxRequests {
			c.state, c.next = Init, now // §3.1.5: start again
			return c.Tick(now)
		}
		return c.transmit(now, c.request(now))
	case Bound, Renewing, Rebinding:
		if c.lease.Duration != Infinite && !now.Before(c.lease.Expiry()) {
			c.state, c.next, c.lease = Init, now, Lease{}
			return Result{Event: Lost}
		}
		if c.state == Bound {
			c.state, c.xid, c.tries, c.start = Renewing, c.rand(), 0, now
		}
		if c.state == Renewing && !now.Before(c.lease.Rebind()) {
			c.state, c.xid, c.tries, c.start = Rebinding, c.rand(), 0, now
		}
		return c.transmit(now, c.request(now))
	}
	return Result{}
}

// maxRequests is how many REQUESTs for an offer are sent before the
// client starts again with DISCOVER.
const maxRequests = 4

// transmit sends m (a message of the current exchange) and sets when it
// is sent again.
func (c *Client) transmit(now time.Time, m Message) Result {
	c.tries++
	c.Sent++
	c.next = now.Add(c.backoff(now))
	s := Send{Payload: m.Append(nil)}
	if c.state == Renewing {
		s.To = c.lease.Server
	}
	return Result{Send: []Send{s}}
}

// backoff is how long the client waits for an answer to its latest
// transmission.
func (c *Client) backoff(now time.Time) time.Duration {
	switch c.state {
	case Renewing, Rebinding:
		until := c.lease.Rebind()
		if c.state == Rebinding {
			until = c.lease.Expiry()
		}
		wait := max(until.Sub(now)/2, time.Minute)
		if end := until.Sub(now); end > 0 && wait > end {
			wait = end // T2 or the expiry comes first
		}
		return wait
	}
	// 4, 8, 16, 32, 64 s, ±1 s (§4.1).
	d := time.Duration(4<<min(c.tries-1, 4)) * time.Second
	jitter := time.Duration(c.rand()%2001) * time.Millisecond
	return d - time.Second + jitter
}

// discover is the DISCOVER of the current exchange.
func (c *Client) discover(now time.Time) Message {
	return Message{Op: opRequest, Type: Discover, Xid: c.xid, Secs: c.secs(now), Bcast: true, MAC: c.mac, Hostname: c.hostname}
}

// request is the REQUEST of the current state (§4.3.2's table): for an
// offer (server id and requested address, broadcast), or renewing and
// rebinding (ciaddr only; unicast to the server, or broadcast).
func (c *Client) request(now time.Time) Message {
	m := Message{Op: opRequest, Type: Request, Xid: c.xid, Secs: c.secs(now), MAC: c.mac, Hostname: c.hostname}
	if c.state == Requesting {
		m.Bcast = true
		m.ServerID, m.Requested = c.offer.ServerID, c.offer.Yiaddr
	} else {
		m.Ciaddr = c.lease.Addr.Addr()
	}
	return m
}

// secs is the seconds field: how long this exchange has gone on.
func (c *Client) secs(now time.Time) uint16 {
	return uint16(min(now.Sub(c.start)/time.Second, 0xffff))
}

// Handle takes a message that came to the client port at now.
func (c *Client) Handle(now time.Time, payload []byte) Result {
	m, err := Parse(payload)
	if err != nil || m.Op != opReply || m.Xid != c.xid || m.MAC != c.mac {
		c.Ignored++
		return Result{}
	}
	c.Received++
	switch {
	case c.state == Selecting && m.Type == Offer:
		if !usable(m.Yiaddr) || !m.ServerID.IsValid() {
			c.Ignored++
			return Result{}
		}
		c.offer, c.state, c.tries = m, Requesting, 0
		return c.transmit(now, c.request(now))
	case c.state >= Requesting && m.Type == Ack:
		l, err := c.leaseOf(m)
		if err != nil {
			c.Ignored++
			return Result{}
		}
		ev := Got
		if c.state != Requesting && l.Addr == c.lease.Addr {
			ev = Renewed
		}
		c.lease, c.state, c.tries, c.next = l, Bound, 0, l.Renew()
		return Result{Event: ev, Lease: l}
	case c.state >= Requesting && m.Type == Nak:
		lost := c.state != Requesting
		c.state, c.next, c.lease = Init, now, Lease{}
		if lost {
			return Result{Event: Lost}
		}
		return Result{}
	}
	c.Ignored++
	return Result{}
}

// leaseOf reads the lease an ACK gives, whose exchange began at c.start.
func (c *Client) leaseOf(m Message) (Lease, error) {
	if !usable(m.Yiaddr) {
		return Lease{}, fmt.Errorf("dhcp: ack for address %v", m.Yiaddr)
	}
	bitsLen := 24 // RFC 2131 leaves a missing mask to the client: the class C default
	if m.Mask.IsValid() {
		v := m.Mask.As4()
		n := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
		bitsLen = bits.LeadingZeros32(^n)
		if n<<bitsLen != 0 || bitsLen > 30 || bitsLen < 1 {
			return Lease{}, fmt.Errorf("dhcp: subnet mask %v", m.Mask)
		}
	}
	server := m.ServerID
	if !server.IsValid() {
		server = c.lease.Server // an ACK to a renewal may omit it
	}
	l := Lease{Addr: netip.PrefixFrom(m.Yiaddr, bitsLen), Router: m.Router, DNS: m.DNS, Server: server,
		Start: c.start, Duration: m.Lease, T1: m.T1, T2: m.T2}
	if l.Duration == 0 {
		return Lease{}, fmt.Errorf("dhcp: ack without a lease time")
	}
	if l.Router.IsValid() && (!l.Addr.Contains(l.Router) || l.Router == m.Yiaddr) {
		l.Router = netip.Addr{} // not a gateway we could reach
	}
	if l.T1 <= 0 || l.T1 >= l.Duration {
		l.T1 = l.Duration / 2
	}
	if l.T2 <= l.T1 || l.T2 >= l.Duration {
		l.T2 = l.Duration / 8 * 7
	}
	return l, nil
}

// usable reports whether a may be a host's unicast IPv4 address.
func usable(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
