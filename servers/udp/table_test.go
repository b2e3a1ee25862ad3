package udp

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

func TestOpen(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tests := []struct {
		id   uint64
		net  ops.Network
		want ops.Status
	}{
		{1, ops.UDP, ops.StatusOK},
		{1, ops.UDP, ops.StatusOK}, // open already: a reissue
		{2, ops.TCP, ops.StatusInvalid},
		{3, 0, ops.StatusInvalid},
		{4, ops.UDP, ops.StatusOK},
	}
	for _, tt := range tests {
		if got := tb.Open(tt.id, tt.net); got != tt.want {
			t.Errorf("Open(%d, %d) = %s, want %s", tt.id, tt.net, got.Text(), ops.Status(tt.want))
		}
	}
	if got := tb.Sockets(); got != 2 {
		t.Errorf("Sockets() = %d, want 2", got)
	}
}

func TestBind(t *testing.T) {
	tb := newTestbed(t, Limits{})
	for id := uint64(1); id <= 8; id++ {
		tb.open(t, id, ops.Addr{})
	}
	any7 := addr(netip.IPv4Unspecified(), 7)
	tests := []struct {
		name   string
		id     uint64
		local  ops.Addr
		want   ops.Addr // port 0: any ephemeral port
		status ops.Status
	}{
		{"explicit, any address", 1, any7, any7, ops.StatusOK},
		{"bound already", 1, addr(netip.IPv4Unspecified(), 8), any7, ops.StatusInvalid},
		{"port in use, any address", 2, any7, ops.Addr{}, ops.StatusInUse},
		{"port in use, our address", 2, addr(ourIP, 7), ops.Addr{}, ops.StatusInUse},
		{"our address", 3, addr(ourIP, 53), addr(ourIP, 53), ops.StatusOK},
		{"not our address", 4, addr(otherIP, 54), ops.Addr{}, ops.StatusInvalid},
		{"ephemeral", 5, ops.Addr{}, addr(netip.IPv4Unspecified(), 0), ops.StatusOK},
		{"ephemeral on our address", 6, addr(ourIP, 0), addr(ourIP, 0), ops.StatusOK},
		{"no such socket", 99, any7, ops.Addr{}, ops.StatusNoSocket},
	}
	for _, tt := range tests {
		got, st := tb.Bind(tt.id, tt.local)
		if st != tt.status {
			t.Errorf("%s: Bind(%d, %v) status = %s, want %s", tt.name, tt.id, tt.local, st.Text(), ops.Status(tt.status))
			continue
		}
		if st != ops.StatusOK && st != ops.StatusInvalid {
			continue
		}
		if tt.want.Port() == 0 && st == ops.StatusOK {
			if p := got.Port(); p < EphemeralFirst || got.IP() != tt.want.IP() {
				t.Errorf("%s: Bind(%d, %v) = %v, want %v:[%d-%d]", tt.name, tt.id, tt.local, got, tt.want.IP(), EphemeralFirst, EphemeralLast)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("%s: Bind(%d, %v) = %v, want %v", tt.name, tt.id, tt.local, got, tt.want)
		}
	}
	// Closing frees the port.
	if st := tb.Close(1); st != ops.StatusOK {
		t.Fatalf("Close(1) = %s, want ok", st.Text())
	}
	if got, st := tb.Bind(2, any7); st != ops.StatusOK || got != any7 {
		t.Errorf("Bind(2, %v) after Close(1) = %v, %s; want %v, ok", any7, got, st.Text(), any7)
	}
}

func TestEphemeralPortsRunOut(t *testing.T) {
	tb := newTestbed(t, Limits{Sockets: 1 << 17, QueueDatagrams: 1, QueueBytes: 1, TotalBytes: 1, PostedReceives: 1})
	seen := map[uint16]bool{}
	const n = EphemeralLast - EphemeralFirst + 1
	for id := uint64(1); id <= n; id++ {
		tb.open(t, id, ops.Addr{})
		a, st := tb.Bind(id, ops.Addr{})
		if st != ops.StatusOK || seen[a.Port()] || a.Port() < EphemeralFirst {
			t.Fatalf("Bind(%d, 0) = %v, %s; want a fresh ephemeral port", id, a, st.Text())
		}
		seen[a.Port()] = true
	}
	tb.open(t, n+1, ops.Addr{})
	if _, st := tb.Bind(n+1, ops.Addr{}); st != ops.StatusInUse {
		t.Errorf("Bind(0) with every ephemeral port taken = %s, want %s", st.Text(), ops.StatusInUse)
	}
	// An explicit port below the range still works.
	if _, st := tb.Bind(n+1, addr(netip.IPv4Unspecified(), 5353)); st != ops.StatusOK {
		t.Errorf("Bind(:5353) = %s, want ok", st.Text())
	}
}

func TestConnect(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, ops.Addr{})
	if _, st := tb.Connect(1, addr(peerIP, 0)); st != ops.StatusInvalid {
		t.Errorf("Connect(port 0) = %s, want invalid", st.Text())
	}
	if _, st := tb.Connect(1, addr(netip.IPv4Unspecified(), 53)); st != ops.StatusInvalid {
		t.Errorf("Connect(0.0.0.0:53) = %s, want invalid", st.Text())
	}
	local, st := tb.Connect(1, addr(peerIP, 53))
	if st != ops.StatusOK || local.IP() != ourIP || local.Port() < EphemeralFirst {
		t.Fatalf("Connect(unbound, %v) = %v, %s; want %v:ephemeral, ok", addr(peerIP, 53), local, st.Text(), ourIP)
	}
	if got, want := tb.journal[1], (Record{ID: 1, Local: addr(netip.IPv4Unspecified(), local.Port()), Peer: addr(peerIP, 53)}); got != want {
		t.Errorf("journal after Connect = %+v, want %+v", got, want)
	}
	// A connected socket takes datagrams from its peer only.
	tests := []struct {
		name string
		src  ops.Addr
		want ops.Status
		in   int
	}{
		{"from the peer", addr(peerIP, 53), ops.StatusOK, 1},
		{"from another port", addr(peerIP, 54), ops.StatusNoPort, 0},
		{"from another host", addr(otherIP, 53), ops.StatusNoPort, 0},
	}
	for _, tt := range tests {
		before := tb.Counters().InDatagrams
		if got := tb.deliver(ipUDP(tt.src, local, []byte("x"), nil)); got != tt.want {
			t.Errorf("%s: Deliver(%v -> %v) = %s, want %s", tt.name, tt.src, local, got.Text(), ops.Status(tt.want))
		}
		if got := tb.Counters().InDatagrams - before; got != uint64(tt.in) {
			t.Errorf("%s: InDatagrams grew by %d, want %d", tt.name, got, tt.in)
		}
	}
	// And sends to it by default.
	if _, st := tb.SendTo(1, ops.Addr{}, []byte("q")); st != ops.StatusOK {
		t.Fatalf("SendTo(connected, ops.Addr{}) = %s, want ok", st.Text())
	}
	if got := tb.ip.sent[0].dst; got != peerIP {
		t.Errorf("SendTo(connected, ops.Addr{}) went to %v, want %v", got, peerIP)
	}
}

func TestSendTo(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	tb.open(t, 2, ops.Addr{})
	big := make([]byte, header.UDPMaximumPayload+1)
	tests := []struct {
		name    string
		id      uint64
		dst     ops.Addr
		payload []byte
		want    ops.Status
	}{
		{"unicast", 1, addr(peerIP, 5000), []byte("hello"), ops.StatusOK},
		{"empty", 1, addr(peerIP, 5000), nil, ops.StatusOK},
		{"largest", 1, addr(peerIP, 5000), big[:header.UDPMaximumPayload], ops.StatusOK},
		{"too big", 1, addr(peerIP, 5000), big, ops.StatusTooBig},
		{"directed broadcast", 1, addr(bcastIP, 5000), []byte("all"), ops.StatusOK},
		{"limited broadcast", 1, addr(netip.AddrFrom4([4]byte{255, 255, 255, 255}), 5000), []byte("all"), ops.StatusOK},
		{"no destination, not connected", 1, ops.Addr{}, []byte("x"), ops.StatusInvalid},
		{"destination port 0", 1, addr(peerIP, 0), []byte("x"), ops.StatusInvalid},
		{"no such socket", 9, addr(peerIP, 5000), []byte("x"), ops.StatusNoSocket},
		{"unbound binds on first send", 2, addr(peerIP, 5000), []byte("hi"), ops.StatusOK},
	}
	for _, tt := range tests {
		n := len(tb.ip.sent)
		local, st := tb.SendTo(tt.id, tt.dst, tt.payload)
		if st != tt.want {
			t.Errorf("%s: SendTo(%d, %v, %d bytes) = %s, want %s", tt.name, tt.id, tt.dst, len(tt.payload), st.Text(), ops.Status(tt.want))
			continue
		}
		if st != ops.StatusOK {
			if len(tb.ip.sent) != n {
				t.Errorf("%s: a refused send reached IP", tt.name)
			}
			continue
		}
		if len(tb.ip.sent) != n+1 {
			t.Fatalf("%s: IP got %d segments, want 1", tt.name, len(tb.ip.sent)-n)
		}
		s := tb.ip.sent[n]
		if s.dst != tt.dst.IP() {
			t.Errorf("%s: segment to %v, want %v", tt.name, s.dst, tt.dst.IP())
		}
		// The segment is a correct UDP datagram from our address.
		if err := header.ValidateUDP(s.seg, ourIP, tt.dst.IP()); err != nil {
			t.Errorf("%s: ValidateUDP(sent segment) = %v, want nil", tt.name, err)
			continue
		}
		u := header.UDP(s.seg)
		if u.Checksum() == 0 {
			t.Errorf("%s: sent without a checksum", tt.name)
		}
		if u.SrcPort() != local.Port() || u.DstPort() != tt.dst.Port() || string(u.Payload()) != string(tt.payload) || len(s.seg) != 8+len(tt.payload) {
			t.Errorf("%s: segment %d -> %d, %d payload bytes; want %d -> %d, %d", tt.name, u.SrcPort(), u.DstPort(), len(u.Payload()), local.Port(), tt.dst.Port(), len(tt.payload))
		}
	}
	if r := tb.journal[2]; r.Local.Port() < EphemeralFirst {
		t.Errorf("journal[2] after the first send = %+v, want an ephemeral binding", r)
	}
	if c := tb.Counters(); c.OutDatagrams != 6 || c.OutBytes != uint64(5+header.UDPMaximumPayload+3+3+2) {
		t.Errorf("OutDatagrams, OutBytes = %d, %d; want 6, %d", c.OutDatagrams, c.OutBytes, 5+header.UDPMaximumPayload+3+3+2)
	}
}

// With IP checksumming for us, a socket bound to no address leaves its
// source and checksum to IP, which sends from the interface the route says
// (servers/ip OutputFrom); one bound to our address still sends from it,
// its checksum left to IP too (the device's, issue 14); when IP does not
// checksum every socket sends checksummed.
func TestSendToSourceByRoute(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	tb.open(t, 2, addr(ourIP, 8))
	to := addr(peerIP, 5000)
	send := func(id uint64) sentSegment {
		t.Helper()
		if _, st := tb.SendTo(id, to, []byte("reply")); st != ops.StatusOK {
			t.Fatalf("SendTo(%d) = %s", id, st.Text())
		}
		return tb.ip.sent[len(tb.ip.sent)-1]
	}
	tb.SetChecksumOffload(true)
	if s := send(1); s.src.IsValid() || !s.offload.Checksum || header.UDP(s.seg).Checksum() != 0 {
		t.Errorf("wildcard socket, IP checksums: from %v, offload %+v, checksum %#x; want no source, the checksum left to IP", s.src, s.offload, header.UDP(s.seg).Checksum())
	}
	if s := send(2); s.src != ourIP || !s.offload.Checksum {
		t.Errorf("socket bound to %v: from %v, offload %+v; want from it, the checksum left to IP", ourIP, s.src, s.offload)
	}
	tb.SetChecksumOffload(false)
	if s := send(1); s.src != ourIP || s.offload.Checksum || header.ValidateUDP(s.seg, ourIP, peerIP) != nil {
		t.Errorf("wildcard socket, IP does not checksum: from %v, offload %+v; want from %v, checksummed", s.src, s.offload, ourIP)
	}
}

func TestSendToFailures(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, ops.Addr{})
	dst := addr(peerIP, 53)
	tb.SetAddr(netip.Prefix{})
	if _, st := tb.SendTo(1, dst, []byte("x")); st != ops.StatusNoRoute {
		t.Errorf("SendTo before IP told our address = %s, want %s", st.Text(), ops.StatusNoRoute)
	}
	tb.SetAddr(ourNet)
	// Every buffer with IP: the datagram is built aside and handed to Send,
	// which holds it until one comes back; the send does not fail.
	tb.ip.noBuf = true
	if _, st := tb.SendTo(1, dst, []byte("held")); st != ops.StatusOK {
		t.Errorf("SendTo without a buffer = %s, want ok (held for one)", st.Text())
	}
	if n := len(tb.ip.sent); n != 1 || string(header.UDP(tb.ip.sent[0].seg).Payload()) != "held" {
		t.Errorf("handed to Send: %d datagrams; want the one with %q", n, "held")
	}
	tb.ip.noBuf, tb.ip.fail = false, errors.New("down")
	if _, st := tb.SendTo(1, dst, []byte("x")); st != ops.StatusError {
		t.Errorf("SendTo refused by IP = %s, want error", st.Text())
	}
	if c := tb.Counters(); c.OutErrors != 1 || c.OutDatagrams != 1 {
		t.Errorf("OutErrors, OutDatagrams = %d, %d; want 1, 1", c.OutErrors, c.OutDatagrams)
	}
}

func TestDeliver(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	tb.open(t, 2, addr(ourIP, 53))
	from := addr(peerIP, 5000)
	tests := []struct {
		name   string
		pkt    []byte
		want   ops.Status
		socket uint64 // whose queue grows; 0: none
	}{
		{"bound to any", ipUDP(from, addr(ourIP, 7), []byte("a"), nil), ops.StatusOK, 1},
		{"broadcast to a socket bound to any", ipUDP(from, addr(bcastIP, 7), []byte("b"), nil), ops.StatusOK, 1},
		{"bound to our address", ipUDP(from, addr(ourIP, 53), []byte("c"), nil), ops.StatusOK, 2},
		{"zero checksum means none", ipUDP(from, addr(ourIP, 7), []byte("d"), func(u header.UDP) { u.SetChecksum(0) }), ops.StatusOK, 1},
		{"no port", ipUDP(from, addr(ourIP, 9), []byte("e"), nil), ops.StatusNoPort, 0},
		// No ICMP about broadcasts, even when nobody listens.
		{"no port, broadcast", ipUDP(from, addr(bcastIP, 9), []byte("f"), nil), ops.StatusOK, 0},
		{"broadcast to a socket bound to our address", ipUDP(from, addr(bcastIP, 53), []byte("g"), nil), ops.StatusOK, 0},
	}
	for _, tt := range tests {
		before := map[uint64]int{1: len(tb.socks[1].queue), 2: len(tb.socks[2].queue)}
		if got := tb.deliver(tt.pkt); got != tt.want {
			t.Errorf("%s: Deliver() = %s, want %s", tt.name, got.Text(), ops.Status(tt.want))
		}
		for id, n := range before {
			grew := len(tb.socks[id].queue) - n
			if want := map[bool]int{true: 1}[id == tt.socket]; grew != want {
				t.Errorf("%s: socket %d queue grew by %d, want %d", tt.name, id, grew, want)
			}
		}
	}
	if c := tb.Counters(); c.InDatagrams != 4 || c.InBytes != 4 || c.InNoPort != 3 {
		t.Errorf("InDatagrams, InBytes, InNoPort = %d, %d, %d; want 4, 4, 3", c.InDatagrams, c.InBytes, c.InNoPort)
	}
}

func TestDeliverMalformed(t *testing.T) {
	to, from := addr(ourIP, 7), addr(peerIP, 5000)
	short := ipUDP(from, to, nil, nil)[:header.IPv4MinimumSize+6]
	header.IPv4(short).SetTotalLength(header.IPv4MinimumSize + 6)
	tests := []struct {
		name string
		pkt  []byte
		want Counters
	}{
		{"bad checksum", ipUDP(from, to, []byte("payload"), func(u header.UDP) { u.SetChecksum(u.Checksum() ^ 0x0100) }), Counters{InBadChecksum: 1}},
		{"corrupted payload", ipUDP(from, to, []byte("payload"), func(u header.UDP) { u[10] ^= 0x20 }), Counters{InBadChecksum: 1}},
		{"length past the IP payload", ipUDP(from, to, []byte("payload"), func(u header.UDP) { u.SetLength(100); u.SetChecksum(0) }), Counters{InTruncated: 1}},
		{"length below the header", ipUDP(from, to, []byte("payload"), func(u header.UDP) { u.SetLength(4); u.SetChecksum(0) }), Counters{InBadLength: 1}},
		{"short header", short, Counters{InTruncated: 1}},
		// Not IPv4, not UDP, a fragment: IP never delivers them
		// (servers/ip); a delivery outside its datagram is the
		// framework's to refuse (servers/transport).
	}
	for _, tt := range tests {
		tb := newTestbed(t, Limits{})
		tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
		if got := tb.deliver(tt.pkt); got != ops.StatusOK {
			t.Errorf("%s: Deliver() = %s, want ok (dropped, no ICMP)", tt.name, got.Text())
		}
		if got := tb.Counters(); got != tt.want {
			t.Errorf("%s: Counters() = %+v, want %+v", tt.name, got, tt.want)
		}
		if n := len(tb.socks[1].queue); n != 0 {
			t.Errorf("%s: %d datagrams queued, want 0", tt.name, n)
		}
	}
}

func TestDeliverTrimsToUDPLength(t *testing.T) {
	// IP payload longer than the UDP Length (padding): the datagram is
	// what Length says.
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	pkt := ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("abcd"), func(u header.UDP) {
		u.SetLength(10)
		u.SetChecksum(0)
		u.SetChecksum(u.ComputeChecksum(peerIP, ourIP))
	})
	tb.deliver(pkt)
	tb.RecvFrom(1, 1, make([]byte, 100))
	if d := tb.takeDone(); len(d) != 1 || d[0].Len != 2 {
		t.Errorf("RecvFrom after a padded datagram = %+v, want one of 2 bytes", d)
	}
}

func TestRecvFrom(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	from, to := addr(peerIP, 5000), addr(ourIP, 7)

	// Posted first, then the datagram: it goes straight into the buffer.
	buf := make([]byte, 16)
	tb.RecvFrom(1, 100, buf)
	if d := tb.takeDone(); len(d) != 0 {
		t.Fatalf("RecvFrom with nothing queued answered %+v, want nothing yet", d)
	}
	tb.deliver(ipUDP(from, to, []byte("first"), nil))
	if got, want := tb.takeDone(), []Completion{{Tag: 100, Len: 5, Src: from}}; !slices.Equal(got, want) || string(buf[:5]) != "first" {
		t.Errorf("after Deliver: completions %+v, buffer %q; want %+v, %q", got, buf[:5], want, "first")
	}

	// Queued first, then the receive: answered at once, in order.
	tb.deliver(ipUDP(from, to, []byte("second"), nil))
	tb.deliver(ipUDP(from, to, []byte("a third, longer than the buffer"), nil))
	tb.RecvFrom(1, 101, buf)
	small := make([]byte, 8)
	tb.RecvFrom(1, 102, small)
	want := []Completion{{Tag: 101, Len: 6, Src: from}, {Tag: 102, Len: 8, Src: from, Flags: ops.FlagTruncated}}
	if got := tb.takeDone(); !slices.Equal(got, want) || string(buf[:6]) != "second" || string(small) != "a third," {
		t.Errorf("RecvFrom on a queue: %+v, %q, %q; want %+v, %q, %q", got, buf[:6], small, want, "second", "a third,")
	}
	if c := tb.Counters(); c.InTruncations != 1 {
		t.Errorf("InTruncations = %d, want 1", c.InTruncations)
	}
	if got := tb.QueuedBytes(); got != 0 {
		t.Errorf("QueuedBytes() after reading everything = %d, want 0", got)
	}

	// No such socket: answered at once.
	tb.RecvFrom(9, 103, buf)
	if got, want := tb.takeDone(), []Completion{{Tag: 103, Status: ops.StatusNoSocket}}; !slices.Equal(got, want) {
		t.Errorf("RecvFrom(no socket) = %+v, want %+v", got, want)
	}
}

func TestCloseAnswersPostedReceives(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	tb.open(t, 2, addr(netip.IPv4Unspecified(), 8))
	tb.RecvFrom(1, 10, make([]byte, 8))
	tb.RecvFrom(1, 11, make([]byte, 8))
	tb.RecvFrom(2, 12, make([]byte, 8))
	tb.deliver(ipUDP(addr(peerIP, 1), addr(ourIP, 8), []byte("x"), nil)) // answers 12
	tb.takeDone()
	tb.deliver(ipUDP(addr(peerIP, 1), addr(ourIP, 8), []byte("queued"), nil))
	if st := tb.Close(1); st != ops.StatusOK {
		t.Fatalf("Close(1) = %s", st.Text())
	}
	want := []Completion{{Tag: 10, Status: ops.StatusClosed}, {Tag: 11, Status: ops.StatusClosed}}
	if got := tb.takeDone(); !slices.Equal(got, want) {
		t.Errorf("Close(1) answered %+v, want %+v", got, want)
	}
	if st := tb.Close(1); st != ops.StatusNoSocket {
		t.Errorf("Close(1) again = %s, want %s", st.Text(), ops.StatusNoSocket)
	}
	if got := tb.deliver(ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("x"), nil)); got != ops.StatusNoPort {
		t.Errorf("Deliver to a closed socket's port = %s, want %s", got.Text(), ops.StatusNoPort)
	}
	if _, ok := tb.journal[1]; ok {
		t.Errorf("journal still holds closed socket 1")
	}

	// Reset closes the rest, queue and all.
	tb.RecvFrom(3, 13, nil) // no such socket
	tb.Reset()
	if got := tb.takeDone(); !slices.Equal(got, []Completion{{Tag: 13, Status: ops.StatusNoSocket}}) {
		t.Errorf("completions = %+v, want only the failed RecvFrom", got)
	}
	if tb.Sockets() != 0 || tb.QueuedBytes() != 0 || len(tb.journal) != 0 || len(tb.ports) != 0 {
		t.Errorf("after Reset: %d sockets, %d queued bytes, %d records, %d ports; want none", tb.Sockets(), tb.QueuedBytes(), len(tb.journal), len(tb.ports))
	}
}

func TestDropReceives(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	tb.RecvFrom(1, 10, make([]byte, 8))
	if n := tb.DropReceives(); n != 1 {
		t.Errorf("DropReceives() = %d, want 1", n)
	}
	tb.deliver(ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("x"), nil))
	tb.Close(1)
	if got := tb.takeDone(); len(got) != 0 {
		t.Errorf("a dropped receive was answered: %+v", got)
	}
}

func TestPostedReceivesBounded(t *testing.T) {
	tb := newTestbed(t, Limits{QueueDatagrams: 1, QueueBytes: 1 << 10, TotalBytes: 1 << 10, PostedReceives: 2, Sockets: 4})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	for tag := uint64(1); tag <= 3; tag++ {
		tb.RecvFrom(1, tag, make([]byte, 8))
	}
	if got, want := tb.takeDone(), []Completion{{Tag: 3, Status: ops.StatusError}}; !slices.Equal(got, want) {
		t.Errorf("the third posted receive: %+v, want %+v", got, want)
	}
}

func TestQueueBounds(t *testing.T) {
	l := Limits{QueueDatagrams: 256, QueueBytes: 64 << 10, TotalBytes: 100 << 10, PostedReceives: 16, Sockets: 16}
	tb := newTestbed(t, l)
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	tb.open(t, 2, addr(netip.IPv4Unspecified(), 8))
	from := addr(peerIP, 5000)
	small := ipUDP(from, addr(ourIP, 7), []byte("x"), nil)
	// A flood nobody reads: 100,000 datagrams to socket 1.
	for range 100_000 {
		if got := tb.deliver(small); got != ops.StatusOK {
			t.Fatalf("Deliver() = %s, want ok", got.Text())
		}
	}
	c := tb.Counters()
	if c.InDatagrams != 256 || c.InQueueDrops != 100_000-256 {
		t.Errorf("after the flood: InDatagrams, InQueueDrops = %d, %d; want 256, %d", c.InDatagrams, c.InQueueDrops, 100_000-256)
	}
	if q := tb.QueuedBytes(); q != 256*(1+datagramOverhead) || q > l.QueueBytes {
		t.Errorf("QueuedBytes() = %d, want %d (≤ %d)", q, 256*(1+datagramOverhead), l.QueueBytes)
	}
	// Big datagrams hit the per-socket byte cap before the count, and the
	// global cap stops socket 2 once the two together reach it.
	big := make([]byte, 8000)
	for range 100 {
		tb.deliver(ipUDP(from, addr(ourIP, 8), big, nil))
	}
	s2 := tb.socks[2]
	if s2.qbytes > l.QueueBytes || tb.QueuedBytes() > l.TotalBytes {
		t.Errorf("socket 2 holds %d bytes (cap %d), all %d (cap %d)", s2.qbytes, l.QueueBytes, tb.QueuedBytes(), l.TotalBytes)
	}
	if want := l.QueueBytes / (8000 + datagramOverhead); len(s2.queue) != want {
		t.Errorf("socket 2 queued %d big datagrams, want %d", len(s2.queue), want)
	}
	// Reading makes room again.
	tb.RecvFrom(1, 1, make([]byte, 4))
	if got := tb.deliver(small); got != ops.StatusOK || len(tb.socks[1].queue) != 256 {
		t.Errorf("after one read: queue %d, want 256 again", len(tb.socks[1].queue))
	}
	tb.Close(1)
	tb.Close(2)
	if got := tb.QueuedBytes(); got != 0 {
		t.Errorf("QueuedBytes() after closing = %d, want 0", got)
	}
}

func TestGlobalQueueCap(t *testing.T) {
	l := Limits{QueueDatagrams: 256, QueueBytes: 1 << 20, TotalBytes: 16 << 10, PostedReceives: 16, Sockets: 64}
	tb := newTestbed(t, l)
	from := addr(peerIP, 5000)
	for id := uint64(1); id <= 32; id++ {
		tb.open(t, id, addr(netip.IPv4Unspecified(), uint16(1000+id)))
		for range 100 {
			tb.deliver(ipUDP(from, addr(ourIP, uint16(1000+id)), make([]byte, 100), nil))
		}
	}
	if q := tb.QueuedBytes(); q > l.TotalBytes || q < l.TotalBytes-(100+datagramOverhead) {
		t.Errorf("QueuedBytes() = %d, want just under %d", q, l.TotalBytes)
	}
}

// After a Reset (a SYSCALL restart), the freed ports stay quiet for a moment
// while applications re-create their sockets: no ICMP port unreachable, so
// a connected peer sees no "connection refused". Then they answer again.
func TestResetQuietPorts(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := &testbed{ip: &fakeIP{}, journal: memJournal{}}
	tb.Table = New(tb.ip, func(c Completion) { tb.done = append(tb.done, c) },
		Options{Journal: tb.journal, Now: func() time.Time { return now }})
	tb.SetAddr(ourNet)
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	tb.Reset()
	dgram := ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("x"), nil)
	if got := tb.deliver(dgram); got != ops.StatusOK || tb.Counters().InQuietDrops != 1 {
		t.Errorf("Deliver to a just-reset port = %s (quiet drops %d), want a silent drop", got.Text(), tb.Counters().InQuietDrops)
	}
	if got := tb.deliver(ipUDP(addr(peerIP, 1), addr(ourIP, 8), []byte("x"), nil)); got != ops.StatusNoPort {
		t.Errorf("Deliver to a port nobody had = %s, want %s", got.Text(), ops.StatusNoPort)
	}
	now = now.Add(QuietAfterReset)
	if got := tb.deliver(dgram); got != ops.StatusNoPort {
		t.Errorf("Deliver %v after the reset = %s, want %s", QuietAfterReset, got.Text(), ops.StatusNoPort)
	}
}

// A datagram whose checksum the device verified (DeliverVerified) is taken
// without computing it again: one with a checksum that would not verify
// here reaches its socket, which is how the test sees the check skipped;
// its length is checked as ever. Deliver drops the same datagram.
func TestDeliverVerified(t *testing.T) {
	to, from := addr(ourIP, 7), addr(peerIP, 5000)
	wrong := ipUDP(from, to, []byte("payload"), func(u header.UDP) { u.SetChecksum(u.Checksum() ^ 0x0100) })
	tb := newTestbed(t, Limits{})
	tb.open(t, 1, addr(netip.IPv4Unspecified(), 7))
	ip := header.IPv4(wrong)
	tb.Deliver(ip.Payload(), ip.Src(), ip.Dst())
	tb.DeliverVerified(ip.Payload(), ip.Src(), ip.Dst())
	short := ipUDP(from, to, []byte("payload"), func(u header.UDP) { u.SetLength(100) })
	tb.DeliverVerified(header.IPv4(short).Payload(), ip.Src(), ip.Dst())
	if n := len(tb.socks[1].queue); n != 1 {
		t.Errorf("%d datagrams queued, want the verified one", n)
	}
	if c := tb.Counters(); c.InBadChecksum != 1 || c.InVerified != 1 || c.InTruncated != 1 || c.InDatagrams != 1 {
		t.Errorf("Counters() = %+v, want InBadChecksum 1 (Deliver), InVerified 1, InTruncated 1, InDatagrams 1", c)
	}
}
