// Package resolver is the appliance's resolver app: it resolves one name
// through a DNS server every period, over one UDP socket it keeps open all
// its life, and reports how many queries it sent and how many were answered.
// On keepnet's stack that socket lives through crashes of the udp server
// underneath it (the paper's test: "whether the name resolver was able to
// contact a remote DNS server without reopening the UDP socket").
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Counts are what the app reports.
type Counts struct {
	Sent, Answered, Failed uint64
	LastAnswer             string `json:",omitempty"` // the address in the last answer
	LastError              string `json:",omitempty"`
	LocalAddr              string // the socket's address: it never changes
}

// Config is one resolver's work.
type Config struct {
	Conn    net.PacketConn // kept open all the resolver's life
	Server  netip.AddrPort // the DNS server
	Name    string         // the name to resolve (A record)
	Every   time.Duration  // one query per period
	Timeout time.Duration  // how long to wait for an answer
	Report  func(Counts)   // called after every query
}

// maxSocketFailures is how many queries in a row may fail on the socket
// itself (not a timeout, not an answer) before Run gives up: a socket
// that fails that often is broken, and the process is better restarted
// with a new one (the supervisor does) than left asking forever.
const maxSocketFailures = 5

// socketError is a query's failure on the socket: its send or receive
// failed, other than by the read deadline.
type socketError struct{ err error }

func (e socketError) Error() string { return e.err.Error() }
func (e socketError) Unwrap() error { return e.err }

// Run queries until ctx ends, or until the socket fails maxSocketFailures
// queries in a row.
func Run(ctx context.Context, c Config) error {
	name, err := dnsmessage.NewName(dnsName(c.Name))
	if err != nil {
		return fmt.Errorf("resolver: %q: %w", c.Name, err)
	}
	counts := Counts{LocalAddr: c.Conn.LocalAddr().String()}
	tick := time.NewTicker(c.Every)
	defer tick.Stop()
	buf := make([]byte, 1500)
	id := uint16(time.Now().UnixNano())
	socketFailures := 0
	for {
		id++
		counts.Sent++
		addr, err := query(c, name, id, buf)
		if err != nil {
			counts.Failed++
			counts.LastError = err.Error()
		} else {
			counts.Answered++
			counts.LastAnswer = addr.String()
		}
		if se := (socketError{}); errors.As(err, &se) {
			socketFailures++
		} else {
			socketFailures = 0
		}
		if c.Report != nil {
			c.Report(counts)
		}
		if socketFailures == maxSocketFailures {
			return fmt.Errorf("resolver: %d queries in a row failed on the socket: %w", socketFailures, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func dnsName(n string) string {
	if len(n) > 0 && n[len(n)-1] == '.' {
		return n
	}
	return n + "."
}

// query sends one A query and waits for its answer.
func query(c Config, name dnsmessage.Name, id uint16, buf []byte) (netip.Addr, error) {
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	pkt, err := q.Pack()
	if err != nil {
		return netip.Addr{}, err
	}
	if _, err := c.Conn.WriteTo(pkt, net.UDPAddrFromAddrPort(c.Server)); err != nil {
		return netip.Addr{}, socketError{err}
	}
	c.Conn.SetReadDeadline(time.Now().Add(c.Timeout))
	for {
		n, from, err := c.Conn.ReadFrom(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return netip.Addr{}, err // no answer in time: the server's, or the network's
		}
		if err != nil {
			return netip.Addr{}, socketError{err}
		}
		if ua, ok := from.(*net.UDPAddr); !ok || ua.AddrPort().Port() != c.Server.Port() {
			continue
		}
		var m dnsmessage.Message
		if err := m.Unpack(buf[:n]); err != nil || m.Header.ID != id || !m.Header.Response {
			continue // not the answer to this query (a late one to an earlier query)
		}
		if m.Header.RCode != dnsmessage.RCodeSuccess {
			return netip.Addr{}, fmt.Errorf("DNS error %v", m.Header.RCode)
		}
		for _, a := range m.Answers {
			if r, ok := a.Body.(*dnsmessage.AResource); ok {
				return netip.AddrFrom4(r.A), nil
			}
		}
		return netip.Addr{}, errors.New("no A record in the answer")
	}
}
