package tcp

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"keepnet/servers/transport"
	"math/rand/v2"
	"net/netip"
	"sort"
	"testing"
	"time"
)

// A lossy in-memory link between two Tables: each segment is dropped with
// probability loss, duplicated with probability dup, and delayed by a base
// latency plus random jitter, which reorders. Everything runs on one fake
// clock from a seed, so a failure replays exactly.
type link struct {
	clock     *fakeClock
	rand      *rand.Rand
	loss, dup float64
	delay     time.Duration
	jitter    time.Duration
	queue     []inflight
	tables    map[netip.Addr]*Table
	order     int
	sent      int
	dropped   int
}

type inflight struct {
	at       time.Time
	order    int
	b        []byte
	src, dst netip.Addr
}

// side is an Output for the Table at one end.
type side struct{ l *link }

func (side) Buffer(int) []byte { return nil }

func (s side) Send(seg []byte, src, dst netip.Addr, _ transport.Offload) error {
	l := s.l
	l.sent++
	if l.rand.Float64() < l.loss {
		l.dropped++
		return nil
	}
	n := 1
	if l.rand.Float64() < l.dup {
		n = 2
	}
	for range n {
		d := l.delay + time.Duration(l.rand.Int64N(int64(l.jitter)+1))
		l.order++
		l.queue = append(l.queue, inflight{at: l.clock.now.Add(d), order: l.order, b: append([]byte(nil), seg...), src: src, dst: dst})
	}
	return nil
}

// deliver hands over every segment due by now, in arrival order.
func (l *link) deliver() {
	sort.Slice(l.queue, func(i, j int) bool {
		if !l.queue[i].at.Equal(l.queue[j].at) {
			return l.queue[i].at.Before(l.queue[j].at)
		}
		return l.queue[i].order < l.queue[j].order
	})
	for len(l.queue) > 0 && !l.queue[0].at.After(l.clock.now) {
		p := l.queue[0]
		l.queue = l.queue[1:]
		l.tables[p.dst].Input(p.b, p.src, p.dst)
	}
}

// next is the earliest of the next arrival and the Tables' timers.
func (l *link) next() time.Time {
	var t time.Time
	consider := func(d time.Time) {
		if !d.IsZero() && (t.IsZero() || d.Before(t)) {
			t = d
		}
	}
	for _, p := range l.queue {
		consider(p.at)
	}
	for _, tb := range l.tables {
		consider(tb.NextTimeout())
	}
	return t
}

// pump is one application end: it writes src, reads into got, and closes
// its write side when src is sent.
type pump struct {
	e      *Endpoint
	src    []byte
	off    int
	got    bytes.Buffer
	eof    bool
	closed bool
}

func (p *pump) run(t *testing.T) {
	for p.off < len(p.src) {
		n, err := p.e.Write(p.src[p.off:min(len(p.src), p.off+100_000)])
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		p.off += n
	}
	if p.off == len(p.src) && !p.closed {
		p.closed = true
		p.e.CloseWrite()
	}
	buf := make([]byte, 64<<10)
	for !p.eof {
		n, err := p.e.Read(buf)
		p.got.Write(buf[:n])
		if err == io.EOF {
			p.eof = true
		} else if errors.Is(err, ErrWouldBlock) {
			break
		} else if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
}

func TestLossyLinkTransfer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		seed      uint64
		loss, dup float64
		cc        func() Congestion
		ts        bool
	}{
		{"clean", 1, 0, 0, nil, true},
		{"2% loss, reorder, cubic", 2, 0.02, 0.01, nil, true},
		{"5% loss, reorder, newreno", 3, 0.05, 0.01, func() Congestion { return &NewReno{} }, true},
		{"3% loss, no timestamps", 4, 0.03, 0.0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{time.Unix(1_700_000_000, 0)}
			l := &link{clock: clock, rand: rand.New(rand.NewPCG(tc.seed, 7)), loss: tc.loss, dup: tc.dup,
				delay: 5 * time.Millisecond, jitter: 3 * time.Millisecond, tables: map[netip.Addr]*Table{}}
			mk := func(addr netip.Addr, seed uint64) *Table {
				tb := NewTable(Config{Clock: clock, Output: side{l}, Seed: seed, ISNKey: [32]byte{byte(seed)},
					Congestion: tc.cc, SendBuffer: 256 << 10, RecvBuffer: 256 << 10})
				l.tables[addr] = tb
				return tb
			}
			a, b := mk(us, tc.seed), mk(peer, tc.seed+100)
			ln, err := b.Listen(netip.Addr{}, 7, 4)
			if err != nil {
				t.Fatal(err)
			}
			ea, err := a.Connect(us, netip.AddrPortFrom(peer, 7))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.ts {
				ea.tsOK = false // offer no timestamps: Karn's algorithm
			}
			r := rand.New(rand.NewPCG(tc.seed, 99))
			up := make([]byte, 1<<20)
			down := make([]byte, 1<<20)
			for i := range up {
				up[i], down[i] = byte(r.Uint32()), byte(r.Uint32())
			}
			pa := &pump{e: ea, src: up}
			var pb *pump
			start := clock.now
			for steps := 0; ; steps++ {
				if steps > 2_000_000 || clock.now.Sub(start) > 30*time.Minute {
					t.Fatalf("no end after %d steps, %v: A %v sent %d/%d got %d; B %v", steps, clock.now.Sub(start),
						ea.State(), pa.off, len(up), pa.got.Len(), pb)
				}
				l.deliver()
				if pb == nil {
					if eb, err := ln.Accept(); err == nil {
						pb = &pump{e: eb, src: down}
					}
				}
				pa.run(t)
				if pb != nil {
					pb.run(t)
				}
				if pa.eof && pb != nil && pb.eof {
					break
				}
				if ea.Err() != nil {
					t.Fatalf("A: %v", ea.Err())
				}
				next := l.next()
				if next.IsZero() {
					t.Fatalf("deadlock: nothing in flight, no timer; A %v", ea.State())
				}
				if next.After(clock.now) {
					clock.now = next
				}
				a.Tick(clock.now)
				b.Tick(clock.now)
			}
			if sha256.Sum256(pb.got.Bytes()) != sha256.Sum256(up) {
				t.Errorf("A->B: got %d bytes, hash differs", pb.got.Len())
			}
			if sha256.Sum256(pa.got.Bytes()) != sha256.Sum256(down) {
				t.Errorf("B->A: got %d bytes, hash differs", pa.got.Len())
			}
			// Both close down: TIME-WAIT on one side ends after 2*MSL.
			clock.now = clock.now.Add(2*MSL + time.Minute)
			for range 100 {
				l.deliver()
				a.Tick(clock.now)
				b.Tick(clock.now)
				clock.now = clock.now.Add(10 * time.Second)
			}
			t.Logf("%v virtual, %d segments sent, %d dropped; A %+v", clock.now.Sub(start), l.sent, l.dropped, a.Counters())
			if a.Conns() != 0 || b.Conns() != 0 {
				t.Errorf("Conns = %d, %d after close; want 0, 0 (A %v, B %v)", a.Conns(), b.Conns(), ea.State(), pb.e.State())
			}
		})
	}
}
