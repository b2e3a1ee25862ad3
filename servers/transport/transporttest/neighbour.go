// Package transporttest plays a transport's neighbours — ip and syscall —
// in tests of a servers/transport process: each generation of one is a
// Neighbour, an in-process channel and a real pool, handed to the process
// as the wiring would hand it.
package transporttest

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/loop"
	"keepnet/kernel/pool"
	"keepnet/kernel/pool/pooltest"
	"keepnet/kernel/wiring"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
)

// Wait is how long a Neighbour waits for a message or for room: long
// enough for a busy machine, short enough to catch a hang.
const Wait = 5 * time.Second

// Neighbour is one generation of ip or syscall, played by the test.
type Neighbour struct {
	T      *testing.T
	Name   string
	Ep     *channel.Endpoint // the test's end
	Pool   *pool.Pool        // its own pool (ip.up or syscall.io)
	Peer   *wiring.Peer      // what the process is handed
	NextID uint64
	stash  []channel.Msg // received, not yet asked for
}

// New is generation gen of neighbour name, with its pool poolID of bufs
// buffers of size bytes.
func New(t *testing.T, name string, gen int, poolID uint32, bufs, size int) *Neighbour {
	t.Helper()
	a, b, err := channel.NewLocal(1024)
	if err != nil {
		t.Fatal(err)
	}
	own, err := pool.Create(poolID, bufs, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	mapped, err := pool.Open(poolID, own.Fd(), bufs, size) // the process's mapping
	if err != nil {
		t.Fatal(err)
	}
	return &Neighbour{T: t, Name: name, Ep: a, Pool: own,
		Peer:   &wiring.Peer{Name: name, Generation: gen, Port: b, Pools: []*pool.Pool{mapped}},
		NextID: uint64(gen) << 32}
}

// Send sends a request with a fresh id and returns it.
func (f *Neighbour) Send(m channel.Msg) channel.Msg {
	f.T.Helper()
	f.NextID++
	m.ID = f.NextID
	f.SendRaw(m)
	return m
}

// SendRaw sends m as it is (a reply, or a stale message).
func (f *Neighbour) SendRaw(m channel.Msg) {
	f.T.Helper()
	if err := f.TrySend(m); err != nil {
		f.T.Fatal(err)
	}
}

// TrySend is SendRaw for another goroutine than the test's.
func (f *Neighbour) TrySend(m channel.Msg) error {
	deadline := time.Now().Add(Wait)
	for f.Ep.Send(m) == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: channel full", f.Name)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// Recv waits for the next message from the process that match accepts
// (nil: any); the others are kept for later calls.
func (f *Neighbour) Recv(match func(channel.Msg) bool) channel.Msg {
	f.T.Helper()
	m, err := f.TryRecv(match)
	if err != nil {
		f.T.Fatal(err)
	}
	return m
}

// TryRecv is Recv for another goroutine than the test's.
func (f *Neighbour) TryRecv(match func(channel.Msg) bool) (channel.Msg, error) {
	deadline := time.Now().Add(Wait)
	for {
		for i, m := range f.stash {
			if match == nil || match(m) {
				f.stash = append(f.stash[:i], f.stash[i+1:]...)
				return m, nil
			}
		}
		var in [16]channel.Msg
		n := f.Ep.Recv(in[:])
		if n == 0 {
			if time.Now().After(deadline) {
				return channel.Msg{}, fmt.Errorf("%s: no message from the process within %v", f.Name, Wait)
			}
			f.Ep.Wait(time.Millisecond)
		}
		f.stash = append(f.stash, in[:n]...)
	}
}

// Reply waits for the reply to req.
func (f *Neighbour) Reply(req channel.Msg) channel.Msg {
	f.T.Helper()
	return f.Recv(func(m channel.Msg) bool { return m.ID == req.ID && m.Op == req.Op })
}

// Quiet checks that the process sends nothing for d.
func (f *Neighbour) Quiet(d time.Duration) {
	f.T.Helper()
	time.Sleep(d)
	var in [16]channel.Msg
	f.stash = append(f.stash, in[:f.Ep.Recv(in[:])]...)
	if len(f.stash) != 0 {
		f.T.Errorf("%s: unexpected message from the process: %+v", f.Name, f.stash[0])
	}
}

// Buffer puts data in a fresh buffer of the neighbour's pool; size, if
// larger, is the Ref's length (an empty receive buffer).
func (f *Neighbour) Buffer(data []byte, size int) pool.Ref {
	f.T.Helper()
	ref, ok := f.Pool.Alloc()
	if !ok {
		f.T.Fatalf("%s: pool exhausted", f.Name)
	}
	b, _ := f.Pool.Bytes(ref)
	ref.Len = uint32(max(copy(b, data), size))
	return ref
}

// Bytes are the bytes ref names in the neighbour's pool.
func (f *Neighbour) Bytes(ref pool.Ref) []byte {
	f.T.Helper()
	b, err := f.Pool.Bytes(ref)
	if err != nil {
		f.T.Fatal(err)
	}
	return b
}

// AnswerAddr plays ip answering with p (no offloads) the process's next
// message, which must be an OpAddr.
func (f *Neighbour) AnswerAddr(p netip.Prefix) {
	f.T.Helper()
	m := f.Recv(nil)
	if ops.OpOf(m) != ops.OpAddr {
		f.T.Fatalf("next request to %s: %+v, want OpAddr", f.Name, m)
	}
	ops.SetAddrReply(&m, p, 0)
	f.SendRaw(m)
}

// Deliver plays ip delivering pkt, a whole IPv4 datagram, in a buffer of
// its pool, with its addresses and where the transport header starts
// (servers/ops); it returns the request, whose Ref the test frees.
func (f *Neighbour) Deliver(pkt []byte) channel.Msg {
	f.T.Helper()
	if pkt[0]>>4 == header.IPv6Version { // no extension headers in tests
		h := header.IPv6(pkt)
		return f.Send(ops.Deliver(f.Buffer(pkt, 0), h.Src(), h.Dst(), header.IPv6MinimumSize))
	}
	h := header.IPv4(pkt)
	return f.Send(ops.Deliver(f.Buffer(pkt, 0), h.Src(), h.Dst(), h.HeaderLength()))
}

// Run runs s's loop, taking new neighbour generations from peers, until
// stop (which the test's cleanup calls too); s may be read after it. A
// panic in the loop ends it and fails the test at stop.
func Run(t *testing.T, s *transport.Server, peers <-chan *wiring.Peer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("the loop panicked: %v", r)
			}
		}()
		done <- s.Run(ctx, loop.Peers{C: peers, Fd: -1})
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

// RaceDelivery delivers the IPv4 datagram good to the transport, again and
// again, while another goroutine rewrites its buffer between good and evil
// (kernel/pool/pooltest): the transport must answer every delivery OK and
// never crash. It returns how many deliveries ran, how many of them raced a
// rewrite, and how many rewrites there were.
func (f *Neighbour) RaceDelivery(t *testing.T, good, evil []byte) (rounds, raced int, writes uint64) {
	t.Helper()
	ref := f.Buffer(good, 0)
	r := pooltest.Rewrite(f.Bytes(ref), evil, good)
	ip := header.IPv4(good)
	raced, rounds = pooltest.Race(r, 500, 5*time.Second, func() {
		req := f.Send(ops.Deliver(ref, ip.Src(), ip.Dst(), ip.HeaderLength()))
		if m, err := f.TryRecv(func(m channel.Msg) bool { return m.ID == req.ID }); err != nil {
			t.Fatalf("no answer to delivery %d of a rewritten datagram: %v", req.ID, err)
		} else if st := ops.StatusOf(m); st != ops.StatusOK {
			t.Fatalf("delivery %d answered %s, want ok", req.ID, st)
		}
	})
	return rounds, raced, r.Stop()
}
