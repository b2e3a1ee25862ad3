package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rig is a Relay between two socketpairs standing in for QEMU and the tap:
// guest is the test's end of the stream socket (QEMU's side), wire the
// test's end of a SOCK_SEQPACKET pair (the namespace kernel's side of the
// tap: one frame per message, like a tap).
type rig struct {
	r     *Relay
	conn  net.Conn // the relay's end of the stream socket
	guest net.Conn
	wire  *os.File
	done  chan error
}

// hangWait bounds the waits for what the relay does in microseconds: only a
// hang takes this long, however loaded the host.
const hangWait = time.Minute

func socketpair(t testing.TB, typ int) (a, b *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b = os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func fileConn(t testing.TB, f *os.File) net.Conn {
	t.Helper()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newRig(t testing.TB, cfg Config) *rig {
	t.Helper()
	s1, s2 := socketpair(t, unix.SOCK_STREAM)
	tap, wire := socketpair(t, unix.SOCK_SEQPACKET)
	r, err := New(tap, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := &rig{r: r, conn: fileConn(t, s1), guest: fileConn(t, s2), wire: wire, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { g.done <- r.Run(ctx, g.conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-g.done:
		case <-time.After(hangWait):
			t.Errorf("Run did not return %v after cancel", hangWait)
		}
	})
	return g
}

// returned waits up to hangWait for a Run or Serve to send its result on ch
// and returns it; what names the wait if it times out.
func returned(t testing.TB, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(hangWait):
		t.Fatalf("%s: still running after %v", what, hangWait)
		return nil
	}
}

// frame returns a recognisable Ethernet-sized frame carrying i.
func frame(i, size int) []byte {
	f := make([]byte, size)
	binary.BigEndian.PutUint32(f, uint32(i))
	for k := 4; k < size; k++ {
		f[k] = byte(i + k)
	}
	return f
}

func frameID(f []byte) int { return int(binary.BigEndian.Uint32(f)) }

// recvWire reads n frames from the wire side (or until timeout).
func recvWire(t testing.TB, wire *os.File, n int, timeout time.Duration) [][]byte {
	t.Helper()
	wire.SetReadDeadline(time.Now().Add(timeout))
	var got [][]byte
	buf := make([]byte, MaxFrame)
	for len(got) < n {
		k, err := wire.Read(buf)
		if err != nil {
			break
		}
		got = append(got, bytes.Clone(buf[:k]))
	}
	return got
}

// recvGuest reads n frames from the guest side of the stream (or until
// timeout).
func recvGuest(t testing.TB, guest net.Conn, n int, timeout time.Duration) [][]byte {
	t.Helper()
	guest.SetReadDeadline(time.Now().Add(timeout))
	var got [][]byte
	s := NewStreamReader(0)
	for len(got) < n {
		err := s.Fill(guest)
		for {
			f, ferr := s.Next()
			if ferr != nil {
				t.Fatalf("guest side: %v", ferr)
			}
			if f == nil {
				break
			}
			got = append(got, bytes.Clone(f))
		}
		if err != nil {
			break
		}
	}
	return got
}

func ids(frames [][]byte) []int {
	var out []int
	for _, f := range frames {
		out = append(out, frameID(f))
	}
	return out
}

func TestRelayPassesFramesBothWaysUnchanged(t *testing.T) {
	g := newRig(t, Config{})
	const n = 2000
	var want [][]byte
	go func() {
		var stream []byte
		for i := range n {
			stream = AppendFrame(stream, frame(i, 60+i%1455))
		}
		g.guest.Write(stream)
	}()
	go func() {
		for i := range n {
			g.wire.Write(frame(i, 60+(i*7)%1455))
		}
	}()
	for i := range n {
		want = append(want, frame(i, 60+i%1455))
	}
	if got := recvWire(t, g.wire, n, hangWait); !reflect.DeepEqual(got, want) {
		t.Errorf("guest→wire: got %d frames %v..., want %d unchanged in order", len(got), head(ids(got)), n)
	}
	want = want[:0]
	for i := range n {
		want = append(want, frame(i, 60+(i*7)%1455))
	}
	if got := recvGuest(t, g.guest, n, hangWait); !reflect.DeepEqual(got, want) {
		t.Errorf("wire→guest: got %d frames %v..., want %d unchanged in order", len(got), head(ids(got)), n)
	}
	out, in := g.r.Stats()
	if out.In != n || out.Out != n || in.In != n || in.Out != n || out.Errors+in.Errors != 0 {
		t.Errorf("stats out %v, in %v; want %d in and out each way", out, in, n)
	}
}

func head(s []int) []int { return s[:min(len(s), 10)] }

// The same seed and the same frames give the same frames through the relay.
func TestRelayReplaysFromSeed(t *testing.T) {
	cfg := Config{Seed: 42, Out: Impairment{Drop: 0.1, Dup: 0.1, Reorder: 0.1, ReorderBound: time.Minute}}
	run := func() []int {
		g := newRig(t, cfg)
		wire := make(chan int, 2000) // read as they come: the socket holds only so many
		go func() {
			buf := make([]byte, MaxFrame)
			g.wire.SetReadDeadline(time.Now().Add(2 * hangWait))
			for {
				k, err := g.wire.Read(buf)
				if err != nil {
					return // the rig closed, or the test is long over
				}
				wire <- frameID(buf[:k])
			}
		}()
		var got []int
		// send writes frames from..to-1 and collects what came out of them:
		// as many frames as the relay counts sent once it has taken them all.
		send := func(from, to int) {
			var stream []byte
			for i := from; i < to; i++ {
				stream = AppendFrame(stream, frame(i, 100))
			}
			g.guest.Write(stream)
			for out := g.taken(t, uint64(to)); len(got) < int(out.Out); {
				select {
				case id := <-wire:
					got = append(got, id)
				case <-time.After(hangWait):
					t.Fatalf("the wire got %d frames, want the %d the relay sent", len(got), out.Out)
				}
			}
		}
		send(0, 1000)
		send(1000, 1001) // one more frame flushes a frame still held back
		return got
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs with seed 42 differ:\n%v\n%v", a, b)
	}
	if len(a) < 900 || len(a) > 1100 || reflect.DeepEqual(a[:100], []int{0, 1, 2, 3}) {
		t.Errorf("run with 10%% drop/dup/reorder sent %d frames, first %v", len(a), head(a))
	}
}

// taken waits until the relay has taken n frames from the guest and is done
// with them, and returns its guest→wire counters then. The relay handles
// both directions in turn in one loop: once a frame sent the other way
// after the nth came through, that turn is over.
func (g *rig) taken(t *testing.T, n uint64) Stats {
	t.Helper()
	for deadline := time.Now().Add(hangWait); ; time.Sleep(time.Millisecond) {
		if out, _ := g.r.Stats(); out.In >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay took fewer than %d frames from the guest in %v", n, hangWait)
		}
	}
	_, in := g.r.Stats()
	g.wire.Write(frame(-1, 60))
	if got := recvGuest(t, g.guest, 1, hangWait); len(got) != 1 {
		t.Fatalf("the frame the other way did not come through")
	}
	if _, after := g.r.Stats(); after.Out != in.Out+1 {
		t.Fatalf("wire→guest counters %v, want one more frame out than %v", after, in)
	}
	out, _ := g.r.Stats()
	return out
}

// A delay one way holds up nothing the other way: with the guest's frame
// held for an hour, a frame from the wire comes through; and a delayed
// frame goes out when its delay has passed.
func TestRelayDelayDoesNotBlockOtherDirection(t *testing.T) {
	g := newRig(t, Config{Out: Impairment{Delay: time.Hour}})
	g.guest.Write(AppendFrame(nil, frame(1, 60)))
	g.wire.Write(frame(2, 60))
	if got := recvGuest(t, g.guest, 1, hangWait); len(got) != 1 || frameID(got[0]) != 2 {
		t.Fatalf("wire→guest got %v, want frame 2", ids(got))
	}
	if out, _ := g.r.Stats(); out.Out != 0 {
		t.Errorf("out stats %v, want frame 1 still held", out)
	}

	g = newRig(t, Config{Out: Impairment{Delay: 300 * time.Millisecond}})
	start := time.Now()
	g.guest.Write(AppendFrame(nil, frame(1, 60)))
	if got := recvWire(t, g.wire, 1, hangWait); len(got) != 1 || frameID(got[0]) != 1 {
		t.Fatalf("guest→wire got %v, want frame 1", ids(got))
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("delayed frame arrived after %v, want ≥ 300ms", d)
	}
	if out, _ := g.r.Stats(); out.Delayed != 1 {
		t.Errorf("out stats %v, want delayed=1", out)
	}
}

func TestRelayRejectsBrokenFraming(t *testing.T) {
	g := newRig(t, Config{})
	g.guest.Write(binary.BigEndian.AppendUint32(nil, 1<<20))
	select {
	case err := <-g.done:
		g.done <- err // for the cleanup
		if !errors.Is(err, ErrFrameLength) {
			t.Errorf("Run = %v, want ErrFrameLength", err)
		}
	case <-time.After(hangWait):
		t.Fatal("Run still running after a 1 MiB length prefix")
	}
}

// QEMU going away ends Run with nil; the relay serves the next connection
// on the same tap.
func TestRelayServesReconnect(t *testing.T) {
	tap, wire := socketpair(t, unix.SOCK_SEQPACKET)
	r, err := New(tap, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(t.TempDir() + "/q.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, Accepting(ln)) }()
	for i := range 3 {
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(AppendFrame(nil, frame(i, 64)))
		if got := recvWire(t, wire, 1, hangWait); len(got) != 1 || frameID(got[0]) != i {
			t.Fatalf("connection %d: wire got %v, want frame %d", i, ids(got), i)
		}
		wire.Write(frame(100+i, 64))
		if got := recvGuest(t, c, 1, hangWait); len(got) != 1 || frameID(got[0]) != 100+i {
			t.Fatalf("connection %d: guest got %v, want frame %d", i, ids(got), 100+i)
		}
		c.Close()
	}
	if _, err := Listen(ln.Addr().String()); err == nil {
		t.Errorf("Listen on a path a relay is serving: no error")
	}
	cancel()
	if err := returned(t, served, "Serve after cancel"); err != nil {
		t.Errorf("Serve = %v after cancel, want nil", err)
	}
}

// A connection that broke the framing leaves nothing behind: the next one,
// on the same Relay, is relayed from its first frame.
func TestRelayServesCleanlyAfterBrokenFraming(t *testing.T) {
	tap, wire := socketpair(t, unix.SOCK_SEQPACKET)
	r, err := New(tap, Config{})
	if err != nil {
		t.Fatal(err)
	}
	run := func(write []byte) (guest net.Conn, done chan error) {
		s1, s2 := socketpair(t, unix.SOCK_STREAM)
		guest, done = fileConn(t, s2), make(chan error, 1)
		s2.Close() // guest holds its own descriptor: closing guest is QEMU going away
		go func() { done <- r.Run(context.Background(), fileConn(t, s1)) }()
		guest.Write(write)
		return guest, done
	}
	_, done := run(binary.BigEndian.AppendUint32(AppendFrame(nil, frame(1, 60)), 0))
	if err := returned(t, done, "Run after a zero length prefix"); !errors.Is(err, ErrFrameLength) {
		t.Fatalf("Run = %v, want ErrFrameLength", err)
	}
	got := recvWire(t, wire, 1, hangWait)
	got = append(got, recvWire(t, wire, 1, 500*time.Millisecond)...) // nothing more may come
	if len(got) != 1 || frameID(got[0]) != 1 {
		t.Fatalf("broken connection: wire got %v, want frame 1 only", ids(got))
	}
	guest, done := run(AppendFrame(nil, frame(2, 60)))
	if got := recvWire(t, wire, 1, hangWait); len(got) != 1 || frameID(got[0]) != 2 {
		t.Fatalf("next connection: wire got %v, want frame 2", ids(got))
	}
	guest.Close()
	if err := returned(t, done, "Run after QEMU closed"); err != nil {
		t.Errorf("Run after QEMU closed = %v, want nil", err)
	}
}

// A QEMU that stops reading holds up the tap→guest direction only: the
// relay stops taking frames from the tap (they wait there, or the tap drops
// them as a full link would), keeps relaying guest→tap, and delivers what
// it took, in order, once QEMU reads again.
func TestRelayBackpressureFromQEMU(t *testing.T) {
	g := newRig(t, Config{})
	const n, size = 3000, 1500 // about 4.5 MB: more than the socket buffers hold
	sent := 0
	g.wire.SetWriteDeadline(time.Now().Add(time.Second))
	for i := range n {
		if _, err := g.wire.Write(frame(i, size)); err != nil {
			break // the pair's own buffer stayed full: the relay has stopped reading
		}
		sent++
	}
	if sent == n {
		t.Fatalf("all %d frames were taken while QEMU read nothing", n)
	}
	g.guest.Write(AppendFrame(nil, frame(9999, 60)))
	if got := recvWire(t, g.wire, 1, hangWait); len(got) != 1 || frameID(got[0]) != 9999 {
		t.Fatalf("guest→wire while tap→guest is held up: got %v, want frame 9999", ids(got))
	}
	got := recvGuest(t, g.guest, sent, hangWait)
	if len(got) != sent {
		t.Fatalf("guest got %d frames, want the %d the tap took", len(got), sent)
	}
	for i, f := range got {
		if frameID(f) != i || !bytes.Equal(f, frame(i, size)) {
			t.Fatalf("frame %d is frame %d or corrupt", i, frameID(f))
		}
	}
}

// Run's thread is SCHED_BATCH while it relays, and only then.
func TestRelayRunsSchedBatch(t *testing.T) {
	batch := func() int {
		n := 0
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
			if err != nil {
				continue
			}
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			if f[38] == "3" { // field 41, policy; SCHED_BATCH
				n++
			}
		}
		return n
	}
	if n := batch(); n != 0 {
		t.Fatalf("%d SCHED_BATCH threads before Run", n)
	}
	tap, _ := socketpair(t, unix.SOCK_SEQPACKET)
	r, err := New(tap, Config{})
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := socketpair(t, unix.SOCK_STREAM)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, fileConn(t, s1)) }()
	deadline := time.Now().Add(hangWait)
	for batch() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := batch(); n != 1 {
		t.Errorf("%d SCHED_BATCH threads while Run relays, want 1", n)
	}
	cancel()
	if err := returned(t, done, "Run after cancel"); err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
	if n := batch(); n != 0 {
		t.Errorf("%d SCHED_BATCH threads after Run, want 0 (policy restored)", n)
	}
}
