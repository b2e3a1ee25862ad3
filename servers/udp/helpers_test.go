package udp

import (
	"keepnet/kernel/channel"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
)

var (
	ourNet  = netip.MustParsePrefix("10.0.2.15/24")
	ourIP   = ourNet.Addr()
	peerIP  = netip.MustParseAddr("10.0.2.2")
	otherIP = netip.MustParseAddr("10.0.2.3")
	bcastIP = netip.MustParseAddr("10.0.2.255")
)

func addr(ip netip.Addr, port uint16) ops.Addr { return ops.MakeAddr(ip, port) }

// fakeIP is the transport.Output of the logic tests: it keeps what it is
// given.
type fakeIP struct {
	sent  []sentSegment
	noBuf bool
	fail  error
}

type sentSegment struct {
	seg      []byte
	src, dst netip.Addr
	offload  transport.Offload
}

func (f *fakeIP) Buffer(n int) []byte {
	if f.noBuf {
		return nil
	}
	return make([]byte, n)
}

func (f *fakeIP) Send(seg []byte, src, dst netip.Addr, o transport.Offload) error {
	if f.fail != nil {
		return f.fail
	}
	f.sent = append(f.sent, sentSegment{slices.Clone(seg), src, dst, o})
	return nil
}

// memJournal is the Journal of the tests: the store's "udp" namespace.
type memJournal map[uint64]Record

func (j memJournal) Save(r Record)    { j[r.ID] = r }
func (j memJournal) Forget(id uint64) { delete(j, id) }

// testbed is a Table on fakes, with our address known.
type testbed struct {
	*Table
	ip      *fakeIP
	journal memJournal
	done    []Completion
}

func newTestbed(t *testing.T, l Limits) *testbed {
	t.Helper()
	tb := &testbed{ip: &fakeIP{}, journal: memJournal{}}
	tb.Table = New(tb.ip, func(c Completion) { tb.done = append(tb.done, c) },
		Options{Limits: l, Journal: tb.journal, Rand: rand.New(rand.NewPCG(1, 2))})
	tb.SetAddr(ourNet)
	return tb
}

// open opens socket id and binds it to local (if not zero).
func (tb *testbed) open(t *testing.T, id uint64, local ops.Addr) {
	t.Helper()
	if st := tb.Open(id, ops.UDP); st != ops.StatusOK {
		t.Fatalf("Open(%d) = %s, want ok", id, st.Text())
	}
	if !local.IsZero() {
		if _, st := tb.Bind(id, local); st != ops.StatusOK {
			t.Fatalf("Bind(%d, %v) = %s, want ok", id, local, st.Text())
		}
	}
}

// deliver plays IP handing the Table a whole IPv4 datagram: the
// segment, its addresses.
func (tb *testbed) deliver(pkt []byte) ops.Status {
	ip := header.IPv4(pkt)
	return tb.Deliver(ip.Payload(), ip.Src(), ip.Dst())
}

// takeDone returns and forgets the completions so far.
func (tb *testbed) takeDone() []Completion {
	d := tb.done
	tb.done = nil
	return d
}

// ipUDP builds an IPv4 datagram carrying a UDP datagram from src to
// dst, checksummed; mod, if not nil, patches the UDP part afterwards.
func ipUDP(src, dst ops.Addr, payload []byte, mod func(header.UDP)) []byte {
	n := header.UDPMinimumSize + len(payload)
	b := make([]byte, header.IPv4MinimumSize+n)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: header.ProtocolUDP, Src: src.IP(), Dst: dst.IP()})
	u := header.UDP(b[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(n)})
	copy(u[header.UDPMinimumSize:], payload)
	u.SetChecksum(u.ComputeChecksum(src.IP(), dst.IP()))
	if mod != nil {
		mod(u)
	}
	return b
}

// withAddr is socket request m with address a (ops.AtArg1).
func withAddr(m channel.Msg, a ops.Addr) channel.Msg {
	ops.PutAddr(&m, ops.AtArg1, a)
	return m
}

// replyAddr is the address a reply carries (ops.AtArg0).
func replyAddr(r channel.Msg) ops.Addr { return ops.GetAddr(r, ops.AtArg0) }
