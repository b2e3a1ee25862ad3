package tcp

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	impair "keepnet/qemu/relay"
	"keepnet/servers/header"
	"keepnet/servers/transport"
)

// relayLink joins two Tables through qemu/relay's Impairer, the model the
// keepnet-relay of the QEMU tests runs: per direction, frames are dropped,
// duplicated back to back, or held back behind the next frame, then
// serialized at a rate after a delay. One fake clock, one seed.
type relayLink struct {
	clock  *fakeClock
	dir    map[netip.Addr]*impair.Impairer[inflight] // by destination
	order  []netip.Addr                              // the destinations, in the order they are served
	tables map[netip.Addr]*Table
	now    []inflight // frames the Impairer let through at once
}

// relayOut is both Tables' Output.
type relayOut struct {
	l *relayLink
}

func (relayOut) Buffer(int) []byte { return nil }

func (o relayOut) Send(seg []byte, src, dst netip.Addr, _ transport.Offload) error {
	l := o.l
	im := l.dir[dst]
	v := im.Admit(l.clock.now, header.EthernetMinimumSize+header.IPv4MinimumSize+len(seg))
	if v.Drop {
		return nil
	}
	f := inflight{b: append([]byte(nil), seg...), src: src, dst: dst}
	if v.Direct {
		for range v.Copies {
			l.now = append(l.now, f)
		}
		return nil
	}
	im.Enqueue(v, f)
	return nil
}

// deliver hands every due frame to its Table, until none is due.
func (l *relayLink) deliver() {
	for {
		progress := false
		for len(l.now) > 0 {
			f := l.now[0]
			l.now = l.now[1:]
			l.tables[f.dst].Input(f.b, f.src, f.dst)
			progress = true
		}
		for _, dst := range l.order {
			for {
				f, copies, ok := l.dir[dst].Pop(l.clock.now)
				if !ok {
					break
				}
				for range copies {
					l.tables[f.dst].Input(f.b, f.src, f.dst)
				}
				progress = true
			}
		}
		if !progress {
			return
		}
	}
}

func (l *relayLink) next() time.Time {
	var t time.Time
	consider := func(d time.Time) {
		if !d.IsZero() && (t.IsZero() || d.Before(t)) {
			t = d
		}
	}
	for _, im := range l.dir {
		if at, ok := im.Next(); ok {
			consider(at)
		}
	}
	for _, tb := range l.tables {
		consider(tb.NextTimeout())
	}
	return t
}

type transferResult struct {
	elapsed time.Duration
	sender  Counters
}

// mbps is the transfer's rate in Mbit/s of virtual time.
func (r transferResult) mbps(size int) float64 { return float64(size) * 8 / r.elapsed.Seconds() / 1e6 }

// transfer sends size bytes from a Table at us to one at peer through imp
// (both ways), the receiver reading as fast as they come, and returns the
// virtual time it took and the sender's counters. cc is the sender's
// congestion control (nil: CUBIC); offer, if not nil, changes the sender's
// endpoint before the SYN-ACK settles the options.
func transfer(t *testing.T, size int, imp impair.Impairment, seed uint64, cc func() Congestion, offer func(*Endpoint)) transferResult {
	t.Helper()
	clock := &fakeClock{time.Unix(1_700_000_000, 0)}
	l := &relayLink{clock: clock, dir: map[netip.Addr]*impair.Impairer[inflight]{}, tables: map[netip.Addr]*Table{}}
	l.dir[us] = impair.NewImpairer[inflight](imp, rand.New(rand.NewPCG(seed, 1)))
	l.dir[peer] = impair.NewImpairer[inflight](imp, rand.New(rand.NewPCG(seed, 2)))
	l.order = []netip.Addr{us, peer}
	mk := func(addr netip.Addr, s uint64) *Table {
		tb := NewTable(Config{Clock: clock, Output: relayOut{l}, Seed: s, ISNKey: [32]byte{byte(s)}, Congestion: cc})
		l.tables[addr] = tb
		return tb
	}
	a, b := mk(us, seed), mk(peer, seed+100)
	ln, err := b.Listen(netip.Addr{}, 7, 4)
	if err != nil {
		t.Fatal(err)
	}
	ea, err := a.Connect(us, netip.AddrPortFrom(peer, 7))
	if err != nil {
		t.Fatal(err)
	}
	if offer != nil {
		offer(ea)
	}
	src := make([]byte, 64<<10)
	for i := range src {
		src[i] = byte(i * 7)
	}
	var eb *Endpoint
	sent, got := 0, 0
	buf := make([]byte, 256<<10)
	start := clock.now
	for steps := 0; ; steps++ {
		if steps > 10_000_000 || clock.now.Sub(start) > time.Hour {
			t.Fatalf("no end after %d steps, %v: sent %d got %d; %+v", steps, clock.now.Sub(start), sent, got, a.Counters())
		}
		l.deliver()
		if eb == nil {
			eb, _ = ln.Accept()
		}
		for sent < size {
			off := sent % len(src)
			n, err := ea.Write(src[off:min(len(src), off+size-sent)])
			if errors.Is(err, ErrWouldBlock) {
				break
			}
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if sent += n; sent == size {
				ea.CloseWrite()
			}
		}
		for eb != nil {
			n, err := eb.Read(buf)
			for i := range n {
				if buf[i] != src[(got+i)%len(src)] {
					t.Fatalf("byte %d differs", got+i)
				}
			}
			got += n
			if err == io.EOF {
				if got != size {
					t.Fatalf("EOF after %d bytes, want %d", got, size)
				}
				return transferResult{clock.now.Sub(start), a.Counters()}
			}
			if err != nil {
				break
			}
		}
		l.deliver()
		next := l.next()
		if next.IsZero() {
			t.Fatalf("deadlock: nothing in flight, no timer; sent %d got %d", sent, got)
		}
		if next.After(clock.now) {
			clock.now = next
		}
		a.Tick(clock.now)
		b.Tick(clock.now)
	}
}

// relayImpairment is what qemu/itest's TestTCPThroughRelay asks of the
// relay (1% loss, 1% reordering, 1% duplication, each way), on a short
// fast link: RTT 0.2 ms plus queueing, 800 Mbit/s.
var relayImpairment = impair.Impairment{Drop: 0.01, Reorder: 0.01, Dup: 0.01,
	Delay: 100 * time.Microsecond, Rate: 100_000_000, Limit: 1000}

func TestImpairedLinkThroughput(t *testing.T) {
	// With loss recovery by RFC 6675 and lost retransmissions found by
	// SACK, a transfer through the relay's impairment sees no timeout and
	// most of the link's rate. (Retransmitting after three duplicate ACKs
	// alone, with NewReno's one hole per round trip, it took a dozen or
	// more 200 ms timeouts per 30 MB and ran at 40-70 Mbit/s.)
	const size = 30 << 20
	for seed := uint64(1); seed <= 3; seed++ {
		r := transfer(t, size, relayImpairment, seed, nil, nil)
		c := r.sender
		t.Logf("seed %d: %v, %.0f Mbit/s; retransmits %d, fast retransmits %d, lost retransmits %d, undone %d",
			seed, r.elapsed, r.mbps(size), c.Retransmits, c.FastRetransmits, c.LostRetransmits, c.SpuriousRecoveries)
		if c.Timeouts != 0 || r.mbps(size) < 400 {
			t.Errorf("seed %d: %d timeouts, %.0f Mbit/s; want 0, at least 400", seed, c.Timeouts, r.mbps(size))
		}
	}
}

func TestImpairedLinkVariants(t *testing.T) {
	// The sender ignores the SACK blocks of a peer it did not offer SACK
	// (or timestamps) to, whatever the peer answers.
	noSACK := func(e *Endpoint) { e.sackOK = false }
	noTS := func(e *Endpoint) { e.tsOK = false }
	neither := func(e *Endpoint) { e.sackOK, e.tsOK = false, false }
	lossy := impair.Impairment{Drop: 0.05, Reorder: 0.05, Dup: 0.05, Delay: 2 * time.Millisecond, Jitter: time.Millisecond,
		Rate: 10_000_000, Limit: 100}
	for _, tc := range []struct {
		name     string
		imp      impair.Impairment
		cc       func() Congestion
		offer    func(*Endpoint)
		timeouts uint64 // at most, per seed
	}{
		{"relay, NewReno without SACK", relayImpairment, newReno, noSACK, 5},
		{"relay, SACK without timestamps", relayImpairment, nil, noTS, 0},
		{"relay, neither, NewReno", relayImpairment, newReno, neither, 5},
		{"5% loss, reordering, duplication", lossy, nil, nil, 20},
		{"5% loss, reordering, duplication, no SACK", lossy, nil, noSACK, 200},
		{"queue overflow only", impair.Impairment{Delay: 5 * time.Millisecond, Rate: 10_000_000, Limit: 50}, nil, nil, 0},
		{"queue overflow, 20% reordering", impair.Impairment{Reorder: 0.2, Delay: time.Millisecond, Rate: 50_000_000, Limit: 500}, nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 8 << 20
			for seed := uint64(1); seed <= 3; seed++ {
				r := transfer(t, size, tc.imp, seed, tc.cc, tc.offer)
				c := r.sender
				t.Logf("seed %d: %v, %.0f Mbit/s; retransmits %d, fast retransmits %d, timeouts %d, lost retransmits %d, undone %d",
					seed, r.elapsed, r.mbps(size), c.Retransmits, c.FastRetransmits, c.Timeouts, c.LostRetransmits, c.SpuriousRecoveries)
				if c.Timeouts > tc.timeouts {
					t.Errorf("seed %d: %d timeouts, want at most %d", seed, c.Timeouts, tc.timeouts)
				}
			}
		})
	}
}
