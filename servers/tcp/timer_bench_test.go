package tcp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"keepnet/servers/header"
	"keepnet/servers/transport"
)

// What one event costs beside many other connections (issue 21): the
// numbers should not grow with the connections the Table holds, idle
// (ESTABLISHED, no timer), with keepalive on (ESTABLISHED, a timer each,
// hours away) or in TIME-WAIT.

type discard struct{}

func (discard) Buffer(int) []byte                                            { return nil }
func (discard) Send([]byte, netip.Addr, netip.Addr, transport.Offload) error { return nil }

// benchTable is a Table with n other connections in the given state and
// one active connection, established, from the peer at addr:port.
type benchTable struct {
	clock  *fakeClock
	tb     *Table
	active *Endpoint
	from   netip.Addr
	seq    uint32 // the active peer's next sequence number
	ack    uint32 // what it acknowledges
	seg    []byte
	buf    []byte
}

// benchPeer is the address of the peer of connection i: distinct tuples
// for any number of connections.
func benchPeer(i int) (netip.Addr, uint16) {
	return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(1024 + i>>16)
}

// segment builds a segment from the peer at from:port to ourPort.
func benchSeg(b []byte, from netip.Addr, port uint16, seq, ack uint32, flags uint8, data []byte) []byte {
	b = b[:header.TCPMinimumSize+len(data)]
	h := header.TCP(b)
	h.Encode(&header.TCPFields{SrcPort: port, DstPort: ourPort, Seq: seq, Ack: ack, Flags: flags, Window: 65535})
	copy(h.Payload(), data)
	h.SetChecksum(h.ComputeChecksum(from, us))
	return b
}

// The states of the other connections.
const (
	benchIdle = iota
	benchKeepalive
	benchTimeWait
)

var benchStates = []string{"idle", "keepalive", "timewait"}

func newBenchTable(tb testing.TB, n int, state int) *benchTable {
	clock := &fakeClock{time.Unix(1_700_000_000, 0)}
	t := NewTable(Config{Clock: clock, Output: discard{}, Seed: 1,
		MaxConns: n + 2, MaxTimeWait: n + 1, BufferBudget: 1 << 40})
	t.isn = func(tuple) uint32 { return ourISS }
	l, err := t.Listen(netip.Addr{}, ourPort, 8)
	if err != nil {
		tb.Fatal(err)
	}
	b := make([]byte, 2048)
	open := func(i int) *Endpoint {
		from, port := benchPeer(i)
		t.Input(benchSeg(b, from, port, 100, 0, header.TCPFlagSYN, nil), from, us)
		t.Input(benchSeg(b, from, port, 101, ourISS+1, header.TCPFlagACK, nil), from, us)
		e, err := l.Accept()
		if err != nil {
			tb.Fatalf("Accept() of connection %d = %v", i, err)
		}
		return e
	}
	for i := range n {
		e := open(i)
		switch state {
		case benchKeepalive:
			e.SetKeepAlive(true, 0, 0, 0)
		case benchTimeWait:
			from, port := benchPeer(i)
			e.CloseWrite()
			t.Input(benchSeg(b, from, port, 101, ourISS+2, header.TCPFlagACK|header.TCPFlagFIN, nil), from, us)
			if e.State() != TimeWait {
				tb.Fatalf("connection %d in %v, want TIME-WAIT", i, e.State())
			}
		}
	}
	t.Tick(clock.now)
	bt := &benchTable{clock: clock, tb: t, active: open(n), seq: 101, ack: ourISS + 1, seg: b, buf: make([]byte, 2048)}
	bt.from, _ = benchPeer(n)
	return bt
}

// input delivers 100 bytes on the active connection and reads them.
func (bt *benchTable) input() {
	bt.clock.now = bt.clock.now.Add(time.Microsecond)
	bt.tb.Input(benchSeg(bt.seg, bt.from, bt.port(), bt.seq, bt.ack, header.TCPFlagACK|header.TCPFlagPSH, bt.buf[:100]), bt.from, us)
	bt.seq += 100
	if n, err := bt.active.Read(bt.buf); n != 100 || err != nil {
		panic(fmt.Sprintf("Read() = %d, %v; want 100 bytes", n, err))
	}
}

func (bt *benchTable) port() uint16 { return bt.active.RemoteAddr().Port() }

var benchSizes = []int{10, 1000, 50000}

// BenchmarkSegment: one data segment in, read, and the loop's question
// for the next timer.
func BenchmarkSegment(b *testing.B) {
	eachBenchTable(b, func(b *testing.B, bt *benchTable) {
		bt.input()
		bt.tb.NextTimeout()
	})
}

// eachBenchTable runs op as a sub-benchmark for every state of the other
// connections and every count of them (benchStates, benchSizes).
func eachBenchTable(b *testing.B, op func(*testing.B, *benchTable)) {
	for state, name := range benchStates {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				bt := newBenchTable(b, n, state)
				b.ResetTimer()
				for b.Loop() {
					op(b, bt)
				}
			})
		}
	}
}

// BenchmarkLoopPass: one data segment in, whose delayed ACK the next pass
// of the loop sends: NextTimeout, Tick.
func BenchmarkLoopPass(b *testing.B) {
	eachBenchTable(b, func(b *testing.B, bt *benchTable) {
		bt.input()
		// The delayed ACK is due first: TIME-WAIT lasts far longer than
		// the run.
		next := bt.tb.NextTimeout()
		if next.IsZero() || next.After(bt.clock.now.Add(DelayedACK)) {
			b.Fatalf("NextTimeout() = %v, want the delayed ACK", next)
		}
		bt.tb.Tick(next)
	})
}

// BenchmarkShortConnection: one whole short connection, as ab makes them
// against a server that closes first — SYN, ACK, a request, the reply and
// our FIN, the peer's FIN — then a pass of the loop (NextTimeout, Tick).
// Its TIME-WAIT stays behind: after the first 4,096 (Config.MaxTimeWait)
// every connection recycles the oldest one.
func BenchmarkShortConnection(b *testing.B) {
	clock := &fakeClock{time.Unix(1_700_000_000, 0)}
	t := NewTable(Config{Clock: clock, Output: discard{}, Seed: 1})
	t.isn = func(tuple) uint32 { return ourISS }
	l, err := t.Listen(netip.Addr{}, ourPort, 8)
	if err != nil {
		b.Fatal(err)
	}
	seg, buf := make([]byte, 2048), make([]byte, 2048)
	req, resp := []byte("GET / HTTP/1.0\r\n\r\n"), []byte("HTTP/1.0 200 OK\r\n\r\nhello")
	i := 0
	for b.Loop() {
		from, port := benchPeer(i % (1 << 20))
		i++
		clock.now = clock.now.Add(100 * time.Microsecond)
		t.Input(benchSeg(seg, from, port, 100, 0, header.TCPFlagSYN, nil), from, us)
		t.Input(benchSeg(seg, from, port, 101, ourISS+1, header.TCPFlagACK|header.TCPFlagPSH, req), from, us)
		e, err := l.Accept()
		if err != nil {
			b.Fatalf("Accept() = %v", err)
		}
		if n, err := e.Read(buf); n != len(req) || err != nil {
			b.Fatalf("Read() = %d, %v", n, err)
		}
		e.Write(resp)
		e.Close()
		fin := uint32(101 + len(req))
		t.Input(benchSeg(seg, from, port, fin, ourISS+1+uint32(len(resp))+1, header.TCPFlagACK|header.TCPFlagFIN, nil), from, us)
		if e.State() != TimeWait {
			b.Fatalf("connection %d in %v, want TIME-WAIT", i, e.State())
		}
		if next := t.NextTimeout(); !next.IsZero() && !next.After(clock.now) {
			t.Tick(clock.now)
		}
	}
	b.ReportMetric(float64(t.TimeWait()), "timewait")
}
