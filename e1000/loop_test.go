package e1000_test

// The driver process's loop (drivers/nic) on the e1000 model, through
// netdev.Device: the family and the framework together, as in the
// appliance, with the test as IP. drivers/nic's own tests run the loop on a
// fake device (drivers/netdev/netdevtest).

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"keepnet/drivers/link"
	"keepnet/drivers/netdev"
	"keepnet/drivers/nic"
	"keepnet/e1000"
	"keepnet/e1000/model"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

// modelTranslate stands a pool in for physical memory: the model's memory is
// the pool's mapping, so a buffer's bus address is its offset.
func modelTranslate(p *pool.Pool, ref pool.Ref) ([]byte, uint64, error) {
	mem, err := p.Bytes(ref)
	return mem, uint64(ref.Off), err
}

// loopBench is a driver loop on the device model, with the test as IP.
type loopBench struct {
	t    *testing.T
	m    *model.Model
	rx   *pool.Pool // IP's pool, also the model's "physical memory"
	ip   *channel.Endpoint
	drv  *nic.Driver
	mu   sync.Mutex
	wire [][]byte
	next uint64 // next request id
}

func newLoopBench(t *testing.T) *loopBench {
	b := &loopBench{t: t, next: 1}
	var err error
	b.rx, err = pool.Create(1, 128, 2048)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.rx.Close() })
	b.m = model.New(model.Config{MAC: testMAC, Mem: b.rx.Mapping(), Wire: func(f []byte) {
		b.mu.Lock()
		b.wire = append(b.wire, bytes.Clone(f))
		b.mu.Unlock()
	}})
	ringRef, _ := b.rx.Alloc() // the rings live in one buffer of the pool
	ringMem, _ := b.rx.Bytes(ringRef)
	cfg := e1000.Config{RxRing: 16, TxRing: 16, Sleep: func(time.Duration) {}}
	dev, err := e1000.New(b.m, netdev.Region{Mem: ringMem[:e1000.RingBytes(cfg)], Addr: uint64(ringRef.Off)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Reset(); err != nil {
		t.Fatal(err)
	}
	b.m.Advance(time.Second) // past QEMU's receive pause after the first RCTL write
	b.drv = nic.New(dev, modelTranslate)
	b.adopt(1)
	return b
}

// adopt connects a new IP generation over a fresh channel.
func (b *loopBench) adopt(gen int) []*pool.Pool {
	ipEnd, drvEnd, err := channel.NewLocal(256)
	if err != nil {
		b.t.Fatal(err)
	}
	b.ip = ipEnd
	old, err := b.drv.Adopt(&nic.Peer{Name: "ip", Generation: gen, Port: drvEnd, Pools: []*pool.Pool{b.rx}})
	if err != nil {
		b.t.Fatal(err)
	}
	return old
}

func (b *loopBench) send(op link.Op, ref pool.Ref) uint64 {
	id := b.next
	b.next++
	if b.ip.Send(channel.Msg{ID: id, Op: uint16(op), Ref: ref}) != 1 {
		b.t.Fatalf("channel full sending request %d", id)
	}
	return id
}

func (b *loopBench) postRX() uint64 {
	ref, ok := b.rx.Alloc()
	if !ok {
		b.t.Fatal("IP pool exhausted")
	}
	return b.send(link.OpRx, ref)
}

func (b *loopBench) transmit(payload string) uint64 {
	ref, ok := b.rx.Alloc()
	if !ok {
		b.t.Fatal("IP pool exhausted")
	}
	buf, _ := b.rx.Bytes(ref)
	n := copy(buf, ethFrame(payload))
	ref.Len = uint32(n)
	return b.send(link.OpTx, ref)
}

// replies runs the loop until it is quiet and returns what IP received.
func (b *loopBench) replies() []channel.Msg {
	for i := 0; i < 10; i++ {
		b.drv.Poll()
	}
	var out []channel.Msg
	buf := make([]channel.Msg, 64)
	for {
		n := b.ip.Recv(buf)
		if n == 0 {
			return out
		}
		out = append(out, buf[:n]...)
	}
}

func ethFrame(payload string) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f, testMAC[:])
	copy(f[6:], []byte{2, 0, 0, 0, 0, 1})
	f[12], f[13] = 0x08, 0x00
	return append(f, payload...)
}

func TestLoopInfoTxRx(t *testing.T) {
	b := newLoopBench(t)
	info := b.send(link.OpInfo, pool.Ref{})
	tx := []uint64{b.transmit("one"), b.transmit("two"), b.transmit("three")}
	var rx []uint64
	for i := 0; i < 8; i++ {
		rx = append(rx, b.postRX())
	}
	got := map[uint64]channel.Msg{}
	for _, r := range b.replies() {
		got[r.ID] = r
	}
	if r := got[info]; link.ArgToMAC(r.Arg[0]) != testMAC || r.Arg[1] != 1 || r.Arg[2] != link.FeatureChecksum|link.FeatureTSO|link.FeatureChecksum6|link.FeatureUDPChecksum6 {
		t.Errorf("info reply = %+v, want MAC %x, link up, the 8254x's offloads: checksum both families, TSO over IPv4", r, testMAC)
	}
	for _, id := range tx {
		if r, ok := got[id]; !ok || link.StatusOf(r) != link.StatusOK {
			t.Errorf("tx %d reply = %+v (%v), want StatusOK", id, r, ok)
		}
	}
	if len(b.wire) != 3 || !bytes.HasSuffix(b.wire[2][:14+5], []byte("three")) {
		t.Errorf("wire = %q, want the three frames in order", b.wire)
	}

	for i := 0; i < 5; i++ {
		if !b.m.Deliver(ethFrame(fmt.Sprintf("in-%d", i))) {
			t.Fatalf("model refused frame %d with 8 buffers posted", i)
		}
	}
	reps := b.replies()
	if len(reps) != 5 {
		t.Fatalf("%d rx replies, want 5", len(reps))
	}
	for i, r := range reps {
		if r.ID != rx[i] || link.StatusOf(r) != link.StatusOK {
			t.Errorf("rx reply %d = id %d status %d, want id %d ok", i, r.ID, r.Status, rx[i])
			continue
		}
		data, _ := b.rx.Bytes(r.Ref)
		if want := ethFrame(fmt.Sprintf("in-%d", i)); !bytes.Equal(data[:len(want)], want) {
			t.Errorf("rx reply %d carries %q, want %q", i, data, want)
		}
	}
}

// More RX buffers than the ring holds wait in the loop and reach the device
// as frames free descriptors; every frame is answered in order.
func TestLoopRingFullQueues(t *testing.T) {
	b := newLoopBench(t)
	var ids []uint64
	for i := 0; i < 40; i++ {
		ids = append(ids, b.postRX())
	}
	b.replies()
	// More buffers than the ring holds wait in the loop; that is no reason
	// to keep polling: the next received frame makes room. (A loop that
	// thought otherwise spun a CPU whenever the appliance was idle.)
	if !b.drv.Idle() {
		t.Errorf("Idle() = false with only buffers waiting for room on a full ring")
	}
	if b.drv.Poll() {
		t.Errorf("Poll() reported work with only buffers waiting for room on a full ring")
	}
	var got []uint64
	for i := 0; i < 40; i++ {
		if !b.m.Deliver(ethFrame(fmt.Sprintf("f%d", i))) {
			t.Fatalf("frame %d dropped: the loop did not refill the ring", i)
		}
		for _, r := range b.replies() {
			got = append(got, r.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("rx replies %v, want %v", got, ids)
	}
}

// A new IP generation: the device is reset, the old generation's buffers
// are forgotten (no frame lands in them), the old pools come back for
// release, and the new generation is served.
func TestLoopAdoptNewGeneration(t *testing.T) {
	b := newLoopBench(t)
	for i := 0; i < 8; i++ {
		b.postRX()
	}
	b.replies()
	old := b.adopt(2)
	if len(old) != 1 || old[0] != b.rx {
		t.Errorf("Adopt returned %v, want the old generation's pool", old)
	}
	if b.drv.Counters().Resets != 1 {
		t.Errorf("resets = %d, want 1", b.drv.Counters().Resets)
	}
	if b.m.Deliver(ethFrame("to nobody")) {
		t.Error("a frame was written into the old generation's buffers after the reset")
	}
	id := b.postRX()
	b.replies()
	b.m.Deliver(ethFrame("to gen 2"))
	reps := b.replies()
	if len(reps) != 1 || reps[0].ID != id {
		t.Errorf("after adopting generation 2: replies %+v, want the new buffer %d filled", reps, id)
	}
}
