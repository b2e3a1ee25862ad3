package ip

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"keepnet/drivers/link"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/servers/header"
	"keepnet/servers/ip/dhcp"
	"keepnet/servers/store"
)

// memKV is the store as the lease's journal sees it.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *memKV) Put(_ context.Context, ns, key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[ns+"/"+key] = v
	return nil
}

func (k *memKV) Delete(_ context.Context, ns, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, ns+"/"+key)
	return nil
}

func (k *memKV) get(key string) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[storeNS+"/"+key]
}

// dhcpbed is an IP server whose lone interface is configured by DHCP, its
// driver a link whose messages pile up in its queue, and a fake server
// answering from 10.77.0.1.
type dhcpbed struct {
	t     *testing.T
	s     *server
	drv   *peerLink
	kv    *memKV
	exits []int
}

func newDHCPbed(t *testing.T) *dhcpbed {
	mk := func(id uint32, n int) *pool.Pool { return testPool(t, id, n) }
	b := &dhcpbed{t: t, kv: &memKV{m: map[string][]byte{}}}
	o := ServerOptions{Name: "ip", Ifaces: []Iface{{Driver: "e1000.0", DHCP: true}}, RxPosted: 2}
	b.s = &server{o: o, rx: mk(1, 8), tx: mk(2, 8), up: mk(3, 4), links: map[string]*peerLink{},
		in: make([]channel.Msg, 64), announce: func() {}}
	b.s.dhcp = &dhcpNIC{journal: store.NewWriter(b.kv, storeNS), exit: func(code int) { b.exits = append(b.exits, code) }}
	t.Cleanup(b.s.dhcp.journal.Close)
	b.s.addNICs([]Config{{}})
	fb := &fwdbed{t: t, s: b.s}
	b.drv = fb.attachDriver("e1000.0", ourMAC)
	return b
}

// sent takes the frames ip handed its driver, as IPv4 datagrams.
func (b *dhcpbed) sent() []header.IPv4 {
	var out []header.IPv4
	l := b.drv
	queue := l.queue
	l.queue = nil
	var kept []channel.Msg
	for _, m := range queue {
		if link.OpOf(m) != link.OpTx {
			kept = append(kept, m)
			continue
		}
		buf, _ := b.s.tx.Bytes(m.Ref)
		f := append([]byte(nil), buf[:m.Ref.Len]...)
		link.SetStatus(&m, link.StatusOK)
		b.s.handle(l, m) // transmitted: the buffer goes back
		if eth := header.Ethernet(f); eth.Type() == header.EtherTypeIPv4 {
			out = append(out, header.IPv4(eth.Payload()))
		}
	}
	l.queue = append(kept, l.queue...)
	return out
}

// dhcpSent is the one DHCP message ip sent, with its IP header.
func (b *dhcpbed) dhcpSent() (header.IPv4, dhcp.Message) {
	b.t.Helper()
	for _, ip := range b.sent() {
		if p, ok := dhcpFrom(ip, dhcp.ClientPort, dhcp.ServerPort); ok {
			m, err := dhcp.Parse(p)
			if err != nil {
				b.t.Fatal(err)
			}
			return ip, m
		}
	}
	b.t.Fatal("ip sent no DHCP message")
	return nil, dhcp.Message{}
}

// dhcpFrom is the UDP payload of ip if it goes from port sp to dp.
func dhcpFrom(ip header.IPv4, sp, dp uint16) ([]byte, bool) {
	if ip.Protocol() != header.ProtocolUDP {
		return nil, false
	}
	u := header.UDP(ip.Payload())
	if u.SrcPort() != sp || u.DstPort() != dp {
		return nil, false
	}
	return u.Payload(), true
}

var (
	dhcpServerIP = netip.MustParseAddr("10.77.0.1")
	dhcpLeased   = netip.MustParseAddr("10.77.0.50")
)

// answer has the fake server answer q with a message of type typ, as a
// broadcast frame through the driver.
func (b *dhcpbed) answer(q dhcp.Message, typ byte, yiaddr netip.Addr) {
	b.t.Helper()
	m := dhcp.Message{Xid: q.Xid, MAC: q.MAC, Type: typ, Yiaddr: yiaddr, ServerID: dhcpServerIP,
		Mask: netip.MustParseAddr("255.255.255.0"), Router: dhcpServerIP, Lease: time.Hour}
	p := m.Append(nil)
	p[0] = 2 // BOOTREPLY
	seg := make([]byte, header.UDPMinimumSize+len(p))
	u := header.UDP(seg)
	u.Encode(&header.UDPFields{SrcPort: dhcp.ServerPort, DstPort: dhcp.ClientPort, Length: uint16(len(seg))})
	copy(seg[header.UDPMinimumSize:], p)
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	u.SetChecksum(u.ComputeChecksum(dhcpServerIP, bcast))
	frame := ipFrame(peerMAC, header.BroadcastMAC, header.IPv4Fields{TTL: 64, Protocol: header.ProtocolUDP, Src: dhcpServerIP, Dst: bcast}, seg)
	(&fwdbed{t: b.t, s: b.s}).receive(b.drv, frame)
}

func TestServerTakesALeaseAndLosesIt(t *testing.T) {
	b := newDHCPbed(t)
	// What Poll does first (it would also move the queued messages into
	// the channel, where the test cannot see them).
	if b.s.addressed() {
		t.Fatal("addressed without a lease")
	}
	if next := b.s.dhcpTick(time.Now()); next.IsZero() {
		t.Fatal("the client set no retransmission")
	}
	ip, q := b.dhcpSent()
	if q.Type != dhcp.Discover || ip.Src() != netip.IPv4Unspecified() || ip.Dst() != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		t.Fatalf("first message: type %d from %v to %v; want DISCOVER from 0.0.0.0 to 255.255.255.255", q.Type, ip.Src(), ip.Dst())
	}
	b.answer(q, dhcp.Offer, dhcpLeased)
	_, q = b.dhcpSent()
	if q.Type != dhcp.Request || q.Requested != dhcpLeased {
		t.Fatalf("after the offer: type %d for %v; want REQUEST for %v", q.Type, q.Requested, dhcpLeased)
	}
	b.answer(q, dhcp.Ack, dhcpLeased)
	if b.s.stack == nil || b.s.stack.Config().Addr != netip.MustParsePrefix("10.77.0.50/24") || b.s.stack.Config().Gateway != dhcpServerIP {
		t.Fatalf("after the ack: stack %v; want one on 10.77.0.50/24 via %v", b.s.stack, dhcpServerIP)
	}
	b.s.dhcp.journal.Flush()
	kept, err := unmarshalLease(b.kv.get(leaseKey))
	if err != nil || kept.Addr.Addr() != dhcpLeased || kept.Server != dhcpServerIP {
		t.Fatalf("kept lease %+v, %v; want %v from %v", kept, err, dhcpLeased, dhcpServerIP)
	}
	if len(b.exits) != 0 {
		t.Fatalf("exited %v", b.exits)
	}

	// At T1 a unicast renewal goes through the Stack (ARP for the server
	// first); a NAK to it loses the address: the lease is deleted, then
	// the process ends for its next generation to start over.
	b.s.dhcp.client.Resume(kept, kept.Renew())
	b.s.dhcpTick(kept.Renew())
	for _, ip := range b.sent() {
		if _, ok := dhcpFrom(ip, dhcp.ClientPort, dhcp.ServerPort); ok {
			t.Fatal("renewal sent before the server's MAC was known")
		}
	}
	b.s.stack.HandleFrame(arpFrame(header.ARPReply, peerMAC, dhcpServerIP, ourMAC, ourMAC, dhcpLeased))
	ip, q = b.dhcpSent()
	if q.Type != dhcp.Request || ip.Dst() != dhcpServerIP || ip.Src() != dhcpLeased || q.Ciaddr != dhcpLeased {
		t.Fatalf("renewal: type %d from %v to %v, ciaddr %v; want REQUEST from %v to %v", q.Type, ip.Src(), ip.Dst(), q.Ciaddr, dhcpLeased, dhcpServerIP)
	}
	b.answer(q, dhcp.Nak, netip.Addr{})
	if len(b.exits) != 1 || b.kv.get(leaseKey) != nil {
		t.Fatalf("after a NAK: exits %v, kept lease %q; want one exit, no lease", b.exits, b.kv.get(leaseKey))
	}
}

func TestLeaseRecord(t *testing.T) {
	start := time.Now().Add(-10 * time.Minute).Round(0)
	l := dhcp.Lease{Addr: netip.MustParsePrefix("10.77.0.50/24"), Router: dhcpServerIP, Server: dhcpServerIP, Start: start,
		DNS: []netip.Addr{dhcpServerIP}, Duration: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute}
	got, err := unmarshalLease(marshalLease(l))
	if err != nil || got.Addr != l.Addr || !got.Start.Equal(start) || got.T2 != l.T2 || len(got.DNS) != 1 {
		t.Fatalf("lease record round trip: %+v, %v; want %+v", got, err, l)
	}
	for name, b := range map[string]string{
		"garbage":      "{",
		"no address":   `{"Duration":1,"T1":1,"T2":1}`,
		"IPv6":         `{"Addr":"fe80::1/64","Duration":1,"T1":1,"T2":1}`,
		"T2 before T1": `{"Addr":"10.77.0.50/24","Duration":10,"T1":5,"T2":1}`,
	} {
		if _, err := unmarshalLease([]byte(b)); err == nil {
			t.Errorf("%s: read as a lease", name)
		}
	}
}
