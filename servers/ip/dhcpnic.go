package ip

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"keepnet/kernel/exitcode"
	"keepnet/servers/header"
	"keepnet/servers/ip/dhcp"
	"keepnet/servers/store"
)

// An interface configured by DHCP (Iface.DHCP; only a lone interface may
// be): its client (package dhcp) runs inside the IP server, because the
// address it obtains is IP's own state, like the ARP cache. A client in
// a process of its own would need IP to send and receive raw broadcasts
// for it on an interface with no address and to take addresses from it:
// two more operations at IP's boundary, for an exchange that is a few
// messages an hour. Here a fault in the client is a fault of IP, whose
// restart is transparent.
//
// Before the lease the interface has no Stack: IP answers the transports'
// OpAddr "not yet" (they ask again), does not say up (the appliance is not
// ready), and takes from its driver only the client's replies (UDP to
// port 68, to our MAC or broadcast); the client's messages go out as
// broadcast frames from 0.0.0.0. With the lease the Stack starts on the
// leased address, subnet and router, and the client's later messages go
// through it: renewals unicast to the server, rebinding broadcast, the
// replies taken from the UDP transport's traffic (dhcpTap) before it sees
// them. Messages before the lease do not pass the packet filter (there is
// no address to filter for); renewals and their replies do.
//
// The lease is kept in the store (namespace "ip", key "lease") whenever it
// is obtained or renewed, with its times: a restarted IP server takes it
// up where its predecessor left it — same address, same T1 and T2 — and
// answers its neighbours at once. A lease lost (expired, or refused by a
// NAK) or replaced by one for another address is deleted or rewritten,
// and the server exits: its next generation starts from the store, and
// every neighbour already survives IP restarting (the transports ask for
// the address again).

// leaseKey is the store key of the lease.
const leaseKey = "lease"

// dhcpNIC is the server's DHCP client and what it needs around it.
type dhcpNIC struct {
	client  *dhcp.Client // nil until the driver told the MAC
	kept    *dhcp.Lease  // the store's lease, until the client takes it up
	journal *store.Writer
	frame   []byte // the broadcast frame being built
	exit    func(code int)
}

// leaseRecord is the lease as kept in the store (JSON).
type leaseRecord struct {
	Addr     netip.Prefix
	Router   netip.Addr `json:",omitempty"`
	DNS      []netip.Addr
	Server   netip.Addr
	Start    time.Time
	Duration time.Duration
	T1, T2   time.Duration
}

func marshalLease(l dhcp.Lease) []byte {
	b, _ := json.Marshal(leaseRecord(l))
	return b
}

func unmarshalLease(b []byte) (dhcp.Lease, error) {
	var r leaseRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return dhcp.Lease{}, err
	}
	if !r.Addr.IsValid() || !r.Addr.Addr().Is4() || r.Duration <= 0 || r.T1 <= 0 || r.T2 < r.T1 {
		return dhcp.Lease{}, fmt.Errorf("lease %+v is not one", r)
	}
	return dhcp.Lease(r), nil
}

// leaseConfig is the interface configuration a lease gives.
func leaseConfig(l dhcp.Lease) Config { return Config{Addr: l.Addr, Gateway: l.Router} }

// loadLease reads the kept lease, if any and still valid at now.
func loadLease(ctx context.Context, st *store.Client, now time.Time) (*dhcp.Lease, error) {
	b, ok, err := st.Get(ctx, storeNS, leaseKey)
	if err != nil || !ok {
		return nil, err
	}
	l, err := unmarshalLease(b)
	if err != nil {
		return nil, err
	}
	if l.Duration != dhcp.Infinite && !now.Before(l.Expiry()) {
		return nil, nil
	}
	if err := leaseConfig(l).withMAC().Validate(); err != nil {
		return nil, err
	}
	return &l, nil
}

// withMAC is c with a placeholder unicast MAC, for Validate before the
// driver says the real one.
func (c Config) withMAC() Config {
	c.MAC = [6]byte{0x02}
	return c
}

// dhcpLoad sets up the client's state: the kept lease and the
// configuration it gives interface 0 (none if there is no lease).
func (s *server) dhcpLoad(ctx context.Context) (Config, error) {
	s.dhcp = &dhcpNIC{journal: store.NewWriter(s.o.Store, storeNS), exit: os.Exit}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := loadLease(ctx, s.o.Store, time.Now())
	if err != nil {
		log.Printf("dhcp: the kept lease: %v; asking for a new one", err)
		return Config{}, nil
	}
	if l == nil {
		return Config{}, nil
	}
	s.dhcp.kept = l
	return leaseConfig(*l), nil
}

// addressed reports whether the interfaces have their addresses: at once
// for static ones; by DHCP once the client holds a lease. It makes the
// client when the driver has told the MAC.
func (s *server) addressed() bool {
	if s.dhcp == nil {
		return true
	}
	if s.dhcp.client == nil {
		s.dhcpStart(s.nics[0], time.Now())
	}
	return s.dhcp.client.State() >= dhcp.Bound
}

// dhcpStart makes the client once the driver told the MAC, and takes up
// the kept lease.
func (s *server) dhcpStart(n *nic, now time.Time) {
	d := s.dhcp
	host, _ := os.Hostname()
	d.client = dhcp.NewClient(n.mac, host, rand.Uint32)
	if d.kept != nil {
		if d.client.Resume(*d.kept, now) {
			log.Printf("dhcp: lease of %v from %v kept (renewal at %v)", d.kept.Addr, d.kept.Server, d.kept.Renew().Format(time.TimeOnly))
		} else {
			n.cfg = Config{} // expired since it was read
		}
		d.kept = nil
	}
}

// dhcpTick runs the client's timers; it returns when they next fall.
func (s *server) dhcpTick(now time.Time) time.Time {
	c := s.dhcp.client
	if c == nil {
		return time.Time{}
	}
	if !now.Before(c.Next()) {
		s.dhcpDo(c.Tick(now))
	}
	return c.Next()
}

// dhcpFrame takes a frame that came to the interface before the lease:
// the client's if it is a UDP datagram to port 68.
func (s *server) dhcpFrame(n *nic, frame []byte) {
	c := s.dhcp.client
	if c == nil || header.ValidateEthernet(frame) != nil {
		return
	}
	eth := header.Ethernet(frame)
	if d := eth.Dst(); (d != n.mac && d != header.BroadcastMAC) || eth.Type() != header.EtherTypeIPv4 {
		return
	}
	b := eth.Payload()
	if header.ValidateIPv4(b) != nil {
		return
	}
	ip := header.IPv4(b)
	if ip.IsFragment() || ip.Protocol() != header.ProtocolUDP {
		return
	}
	if payload, ok := dhcpPayload(ip); ok {
		s.dhcpDo(c.Handle(time.Now(), payload))
	}
}

// dhcpPayload is the DHCP message in ip, if it is a valid UDP datagram
// from the server port to the client port.
func dhcpPayload(ip header.IPv4) ([]byte, bool) {
	seg := ip.Payload()
	if header.ValidateUDP(seg, ip.Src(), ip.Dst()) != nil {
		return nil, false
	}
	u := header.UDP(seg)
	if u.SrcPort() != dhcp.ServerPort || u.DstPort() != dhcp.ClientPort {
		return nil, false
	}
	return u.Payload(), true
}

// dhcpDo sends what the client asks and acts on its event.
func (s *server) dhcpDo(r dhcp.Result) {
	for _, m := range r.Send {
		if err := s.dhcpSend(m); err != nil {
			log.Printf("dhcp: sending: %v", err)
		}
	}
	d := s.dhcp
	switch r.Event {
	case dhcp.Got:
		d.journal.Put(leaseKey, marshalLease(r.Lease))
		n := s.nics[0]
		if n.stack == nil {
			log.Printf("dhcp: leased %v from %v, router %v, DNS %v, for %v", r.Lease.Addr, r.Lease.Server, r.Lease.Router, r.Lease.DNS, r.Lease.Duration)
			n.cfg = leaseConfig(r.Lease)
			s.start()
			return
		}
		// Another address than the Stack's: the next generation starts
		// on it.
		s.dhcpRestart(fmt.Sprintf("the server leased %v instead of %v", r.Lease.Addr, n.cfg.Addr))
	case dhcp.Renewed:
		d.journal.Put(leaseKey, marshalLease(r.Lease))
	case dhcp.Lost:
		d.journal.Delete(leaseKey)
		s.dhcpRestart(fmt.Sprintf("the lease of %v is lost", s.nics[0].cfg.Addr))
	}
}

// dhcpRestart ends the process once the store has the lease as it now
// is: its next generation starts from it.
func (s *server) dhcpRestart(why string) {
	log.Printf("dhcp: %s: restarting IP with it", why)
	s.dhcp.journal.Flush()
	s.dhcp.exit(exitcode.Failure)
}

// dhcpSend sends one of the client's messages: through the Stack when the
// interface has an address, else as a broadcast frame from 0.0.0.0.
func (s *server) dhcpSend(m dhcp.Send) error {
	n := s.nics[0]
	dst := m.To
	if !dst.IsValid() {
		dst = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	src := netip.IPv4Unspecified()
	if n.stack != nil {
		src = n.stack.addr
	}
	const uh = header.UDPMinimumSize
	seg := make([]byte, uh+len(m.Payload))
	u := header.UDP(seg)
	u.Encode(&header.UDPFields{SrcPort: dhcp.ClientPort, DstPort: dhcp.ServerPort, Length: uint16(len(seg))})
	copy(seg[uh:], m.Payload)
	u.SetChecksum(u.ComputeChecksum(src, dst))
	if n.stack != nil {
		return n.stack.Output(header.ProtocolUDP, dst, seg)
	}
	const eh, ih = header.EthernetMinimumSize, header.IPv4MinimumSize
	f := append(s.dhcp.frame[:0], make([]byte, eh+ih)...)
	f = append(f, seg...)
	s.dhcp.frame = f
	header.Ethernet(f).Encode(&header.EthernetFields{Dst: header.BroadcastMAC, Src: n.mac, Type: header.EtherTypeIPv4})
	header.IPv4(f[eh:]).Encode(&header.IPv4Fields{TotalLength: uint16(ih + len(seg)), TTL: defaultTTL,
		Protocol: header.ProtocolUDP, Src: src, Dst: dst})
	return s.sendFrame(n, f, 0)
}

// dhcpTap is the Stack's UDP transport on an interface configured by
// DHCP: the client's replies go to the client, the rest to UDP (dropped
// if the appliance has no UDP transport).
type dhcpTap struct {
	s     *server
	inner DatagramTransport // nil: none
}

func (t dhcpTap) Deliver(uint8, netip.Addr, netip.Addr, []byte) {
	panic("ip: dhcpTap gets whole datagrams") // the Stack prefers DeliverDatagram
}

func (t dhcpTap) DeliverDatagram(ip header.IPv4, verified bool) {
	if u := header.UDP(ip.Payload()); len(u) >= header.UDPMinimumSize && u.DstPort() == dhcp.ClientPort {
		if payload, ok := dhcpPayload(ip); ok && t.s.dhcp.client != nil {
			t.s.dhcpDo(t.s.dhcp.client.Handle(time.Now(), payload))
		}
		return
	}
	if t.inner == nil {
		t.s.drops++
		return
	}
	t.inner.DeliverDatagram(ip, verified)
}

// DeliverDatagram6 passes IPv6 datagrams to UDP: DHCP is IPv4's.
func (t dhcpTap) DeliverDatagram6(h header.IPv6, off int, verified bool) {
	if u, ok := t.inner.(Datagram6Transport); ok {
		u.DeliverDatagram6(h, off, verified)
		return
	}
	t.s.drops++
}

// DeliverError passes UDP's ICMP errors on to it.
func (t dhcpTap) DeliverError(ip header.IPv4, pathMTU int) {
	if et, ok := t.inner.(ErrorTransport); ok {
		et.DeliverError(ip, pathMTU)
	}
}

// DHCPStats are the client's, in Stats.
type DHCPStats struct {
	State                   string
	Lease                   string `json:",omitempty"` // address/prefix
	Server                  string `json:",omitempty"`
	Renew, Rebind, Expiry   string `json:",omitempty"` // RFC 3339
	Sent, Received, Ignored uint64
}

func (d *dhcpNIC) stats() *DHCPStats {
	if d == nil || d.client == nil {
		return nil
	}
	c := d.client
	st := &DHCPStats{State: c.State().String(), Sent: c.Sent, Received: c.Received, Ignored: c.Ignored}
	if c.State() >= dhcp.Bound {
		l := c.Lease()
		st.Lease, st.Server = l.Addr.String(), l.Server.String()
		st.Renew, st.Rebind = l.Renew().Format(time.RFC3339), l.Rebind().Format(time.RFC3339)
		if l.Duration != dhcp.Infinite {
			st.Expiry = l.Expiry().Format(time.RFC3339)
		}
	}
	return st
}
