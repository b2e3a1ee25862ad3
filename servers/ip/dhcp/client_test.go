package dhcp

import (
	"net/netip"
	"testing"
	"time"
)

var (
	mac    = [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	server = netip.MustParseAddr("10.77.0.1")
	leased = netip.MustParseAddr("10.77.0.50")
	t0     = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
)

// counter is a deterministic rand.
func counter() func() uint32 {
	var n uint32
	return func() uint32 { n += 7919; return n }
}

// reply is the server's answer of type typ to the client's message sent.
func reply(t *testing.T, sent Send, typ byte, lease time.Duration) []byte {
	t.Helper()
	q, err := Parse(sent.Payload)
	if err != nil {
		t.Fatalf("client sent an unreadable message: %v", err)
	}
	m := Message{Op: opReply, Xid: q.Xid, MAC: q.MAC, Type: typ, Yiaddr: leased,
		Mask: netip.MustParseAddr("255.255.255.0"), Router: server, DNS: []netip.Addr{server}, ServerID: server, Lease: lease}
	if typ == Nak {
		m.Yiaddr, m.Mask, m.Router, m.DNS, m.Lease = netip.Addr{}, netip.Addr{}, netip.Addr{}, nil, 0
	}
	b := m.Append(nil)
	b[0] = opReply // Append writes what the client would; the server's op
	return b
}

// sentOne checks r sends one message of type typ to to and returns it.
func sentOne(t *testing.T, r Result, typ byte, to netip.Addr) Send {
	t.Helper()
	if len(r.Send) != 1 {
		t.Fatalf("sent %d messages, want one %d", len(r.Send), typ)
	}
	m, err := Parse(r.Send[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != typ || r.Send[0].To != to || m.MAC != mac {
		t.Fatalf("sent type %d to %v, want %d to %v", m.Type, r.Send[0].To, typ, to)
	}
	return r.Send[0]
}

// bind takes a new client through DISCOVER, OFFER, REQUEST, ACK at t0.
func bind(t *testing.T, lease time.Duration) *Client {
	t.Helper()
	c := NewClient(mac, "keepnet", counter())
	d := sentOne(t, c.Tick(t0), Discover, netip.Addr{})
	if m, _ := Parse(d.Payload); !m.Bcast || m.Hostname != "keepnet" {
		t.Fatalf("discover %+v: want the broadcast flag and the hostname", m)
	}
	r := c.Handle(t0.Add(time.Millisecond), reply(t, d, Offer, lease))
	q := sentOne(t, r, Request, netip.Addr{})
	if m, _ := Parse(q.Payload); m.Requested != leased || m.ServerID != server || m.Ciaddr.IsValid() && !m.Ciaddr.IsUnspecified() {
		t.Fatalf("request for the offer %+v: want requested %v, server %v, no ciaddr", m, leased, server)
	}
	r = c.Handle(t0.Add(2*time.Millisecond), reply(t, q, Ack, lease))
	if r.Event != Got || r.Lease.Addr != netip.MustParsePrefix("10.77.0.50/24") || r.Lease.Router != server || c.State() != Bound {
		t.Fatalf("ack: event %v lease %+v state %v; want Got 10.77.0.50/24 via %v, bound", r.Event, r.Lease, c.State(), server)
	}
	return c
}

func TestClientBindsRenewsAndRebinds(t *testing.T) {
	c := bind(t, 120*time.Second)
	l := c.Lease()
	if l.Start != t0 || l.Renew() != t0.Add(60*time.Second) || l.Rebind() != t0.Add(105*time.Second) {
		t.Fatalf("lease times %v %v %v: want T1 at 60 s, T2 at 105 s from the first DISCOVER", l.Start, l.Renew(), l.Rebind())
	}
	if r := c.Tick(t0.Add(59 * time.Second)); len(r.Send) != 0 {
		t.Fatal("sent before T1")
	}
	// T1: a unicast REQUEST to the server, ciaddr ours.
	q := sentOne(t, c.Tick(t0.Add(60*time.Second)), Request, server)
	if m, _ := Parse(q.Payload); m.Ciaddr != leased || m.Requested.IsValid() || m.ServerID.IsValid() {
		t.Fatalf("renewal %+v: want ciaddr %v and neither requested address nor server id (RFC 2131 §4.3.2)", m, leased)
	}
	if c.State() != Renewing || c.Next() != t0.Add(105*time.Second) {
		t.Fatalf("renewing: state %v, next %v; want the retransmission at T2 (45 s left, under a minute)", c.State(), c.Next())
	}
	// No answer: at T2 the client broadcasts.
	q = sentOne(t, c.Tick(t0.Add(105*time.Second)), Request, netip.Addr{})
	if c.State() != Rebinding {
		t.Fatalf("state %v at T2, want rebinding", c.State())
	}
	r := c.Handle(t0.Add(106*time.Second), reply(t, q, Ack, 120*time.Second))
	if r.Event != Renewed || c.State() != Bound || r.Lease.Start != t0.Add(105*time.Second) {
		t.Fatalf("ack to the rebinding: %v, state %v, start %v; want Renewed, bound, times from the REQUEST", r.Event, c.State(), r.Lease.Start)
	}
}

func TestClientLosesAnExpiredLease(t *testing.T) {
	c := bind(t, 120*time.Second)
	c.Tick(t0.Add(60 * time.Second))  // renewing
	c.Tick(t0.Add(105 * time.Second)) // rebinding
	if r := c.Tick(t0.Add(119 * time.Second)); r.Event != None {
		t.Fatalf("event %v before the end of the lease", r.Event)
	}
	if r := c.Tick(t0.Add(120 * time.Second)); r.Event != Lost || c.State() != Init {
		t.Fatalf("at expiry: event %v, state %v; want Lost, init (RFC 2131 §4.4.5)", r.Event, c.State())
	}
	sentOne(t, c.Tick(t0.Add(120*time.Second)), Discover, netip.Addr{})
}

func TestClientNakWhileRenewingLosesTheAddress(t *testing.T) {
	c := bind(t, time.Hour)
	q := sentOne(t, c.Tick(t0.Add(30*time.Minute)), Request, server)
	if r := c.Handle(t0.Add(30*time.Minute), reply(t, q, Nak, 0)); r.Event != Lost || c.State() != Init {
		t.Fatalf("NAK while renewing: event %v, state %v; want Lost, init", r.Event, c.State())
	}
}

func TestClientRetransmitsAndStartsOver(t *testing.T) {
	c := NewClient(mac, "", counter())
	now := t0
	var gaps []time.Duration
	for i := 0; i < 6; i++ {
		sentOne(t, c.Tick(now), Discover, netip.Addr{})
		gaps = append(gaps, c.Next().Sub(now))
		now = c.Next()
	}
	for i, want := range []time.Duration{4, 8, 16, 32, 64, 64} {
		if d := gaps[i] - want*time.Second; d < -time.Second || d > time.Second {
			t.Fatalf("wait %d: %v, want %v s ± 1 s (RFC 2131 §4.1)", i, gaps[i], want)
		}
	}
	// An offer, then silence: four REQUESTs, then DISCOVER again.
	d := sentOne(t, c.Tick(now), Discover, netip.Addr{})
	sentOne(t, c.Handle(now, reply(t, d, Offer, time.Hour)), Request, netip.Addr{})
	for i := 0; i < 3; i++ {
		now = c.Next()
		sentOne(t, c.Tick(now), Request, netip.Addr{})
	}
	sentOne(t, c.Tick(c.Next()), Discover, netip.Addr{})
}

func TestClientIgnoresWhatIsNotItsAnswer(t *testing.T) {
	c := NewClient(mac, "", counter())
	d := sentOne(t, c.Tick(t0), Discover, netip.Addr{})
	for name, b := range map[string][]byte{
		"ack while selecting": reply(t, d, Ack, time.Hour),
		"other xid":           func() []byte { b := reply(t, d, Offer, time.Hour); b[offXid] ^= 1; return b }(),
		"other MAC":           func() []byte { b := reply(t, d, Offer, time.Hour); b[offChaddr] ^= 1; return b }(),
		"a request":           func() []byte { b := reply(t, d, Offer, time.Hour); b[offOp] = opRequest; return b }(),
		"truncated":           reply(t, d, Offer, time.Hour)[:fixedSize-1],
	} {
		if r := c.Handle(t0, b); len(r.Send) != 0 || r.Event != None || c.State() != Selecting {
			t.Errorf("%s: %+v, state %v; want it ignored", name, r, c.State())
		}
	}
	if c.Ignored != 5 {
		t.Errorf("Ignored %d, want 5", c.Ignored)
	}
}

func TestClientResumesAKeptLease(t *testing.T) {
	l := bind(t, 120*time.Second).Lease()
	for _, tt := range []struct {
		at    time.Duration
		want  State
		sends bool
	}{
		{30 * time.Second, Bound, false},
		{70 * time.Second, Renewing, true},
		{110 * time.Second, Rebinding, true},
		{121 * time.Second, Init, true},
	} {
		c := NewClient(mac, "", counter())
		ok := c.Resume(l, t0.Add(tt.at))
		if ok != (tt.want != Init) || c.State() != tt.want {
			t.Errorf("resumed at %v: %v (%v), want %v", tt.at, c.State(), ok, tt.want)
		}
		if r := c.Tick(t0.Add(tt.at)); (len(r.Send) > 0) != tt.sends {
			t.Errorf("resumed at %v: first tick sent %d", tt.at, len(r.Send))
		}
	}
}

func TestParseRejectsOverrunningOptions(t *testing.T) {
	b := Message{Op: opReply, Type: Ack, MAC: mac}.Append(nil)
	b[fixedSize+1] = 200 // option 53's length runs past the end
	if _, err := Parse(b); err == nil {
		t.Fatal("parsed an option longer than the message")
	}
	b = Message{Op: opReply, Type: Ack, MAC: mac}.Append(nil)
	b[fixedSize+1] = 2 // message type of 2 bytes
	if _, err := Parse(b); err == nil {
		t.Fatal("parsed a message type of two bytes")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Message{Op: opReply, Type: Offer, MAC: mac, Yiaddr: leased, ServerID: server, Lease: time.Hour,
		DNS: []netip.Addr{server, leased}, Mask: netip.MustParseAddr("255.255.255.0")}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		// What parses is re-encoded and parses the same in what the
		// client writes.
		m2, err := Parse(m.Append(nil))
		if err != nil || m2.Type != m.Type || m2.Xid != m.Xid || m2.MAC != m.MAC {
			t.Fatalf("round trip: %+v -> %+v, %v", m, m2, err)
		}
	})
}
