package nic

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"keepnet/drivers/link"
	"keepnet/drivers/netdev"
	"keepnet/drivers/netdev/netdevtest"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// poolTranslate stands a pool in for physical memory: a buffer's bus
// address is its offset (the fake device never reads it).
func poolTranslate(p *pool.Pool, ref pool.Ref) ([]byte, uint64, error) {
	mem, err := p.Bytes(ref)
	return mem, uint64(ref.Off), err
}

// bench is a driver loop on a fake device, with the test as IP.
type bench struct {
	t    *testing.T
	dev  *netdevtest.Device
	rx   *pool.Pool // IP's pool
	ip   *channel.Endpoint
	drv  *Driver
	next uint64 // next request id
}

func newBench(t *testing.T, cfg netdevtest.Config) *bench {
	b := &bench{t: t, next: 1}
	var err error
	b.rx, err = pool.Create(1, 128, 2048)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.rx.Close() })
	cfg.MAC = testMAC
	b.dev = netdevtest.New(cfg)
	if _, err := b.dev.Reset(); err != nil {
		t.Fatal(err)
	}
	b.drv = New(b.dev, poolTranslate)
	b.adopt(1)
	return b
}

// adopt connects a new IP generation over a fresh channel.
func (b *bench) adopt(gen int) []*pool.Pool {
	ipEnd, drvEnd, err := channel.NewLocal(256)
	if err != nil {
		b.t.Fatal(err)
	}
	b.ip = ipEnd
	old, err := b.drv.Adopt(&Peer{Name: "ip", Generation: gen, Port: drvEnd, Pools: []*pool.Pool{b.rx}})
	if err != nil {
		b.t.Fatal(err)
	}
	return old
}

func (b *bench) send(m channel.Msg) uint64 {
	m.ID = b.next
	b.next++
	if b.ip.Send(m) != 1 {
		b.t.Fatalf("channel full sending request %d", m.ID)
	}
	return m.ID
}

func (b *bench) postRX() uint64 {
	ref, ok := b.rx.Alloc()
	if !ok {
		b.t.Fatal("IP pool exhausted")
	}
	return b.send(link.OpRx.Msg(ref))
}

// transmit sends a frame carrying payload, with offload o when o.L4 != 0.
func (b *bench) transmit(payload string, o link.Offload) uint64 {
	ref, ok := b.rx.Alloc()
	if !ok {
		b.t.Fatal("IP pool exhausted")
	}
	buf, _ := b.rx.Bytes(ref)
	ref.Len = uint32(copy(buf, frame(payload)))
	m := link.OpTx.Msg(ref)
	if o.L4 != 0 {
		m.Arg[0] = o.Arg()
	}
	return b.send(m)
}

// replies runs the loop until it is quiet and returns what IP received.
func (b *bench) replies() []channel.Msg {
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

func byID(reps []channel.Msg) map[uint64]channel.Msg {
	got := map[uint64]channel.Msg{}
	for _, r := range reps {
		got[r.ID] = r
	}
	return got
}

// frame is an IPv4 Ethernet frame to testMAC carrying payload, with room
// for a TCP header after a 20-byte IP header.
func frame(payload string) []byte {
	f := make([]byte, 54, 54+len(payload))
	copy(f, testMAC[:])
	copy(f[6:], []byte{2, 0, 0, 0, 0, 1})
	f[12], f[13] = 0x08, 0x00
	return append(f, payload...)
}

func TestInfoTxRx(t *testing.T) {
	b := newBench(t, netdevtest.Config{Features: netdev.FeatureChecksum | netdev.FeatureTSO})
	info := b.send(link.OpInfo.Msg(pool.Ref{}))
	tx := []uint64{b.transmit("one", link.Offload{}), b.transmit("two", link.Offload{}), b.transmit("three", link.Offload{})}
	var rx []uint64
	for i := 0; i < 8; i++ {
		rx = append(rx, b.postRX())
	}
	got := byID(b.replies())
	if r := got[info]; link.StatusOf(r) != link.StatusOK || link.ArgToMAC(r.Arg[0]) != testMAC || r.Arg[1] != 1 || r.Arg[2] != link.FeatureChecksum|link.FeatureTSO {
		t.Errorf("info reply = %+v, want MAC %x, link up, checksum and TSO offload", r, testMAC)
	}
	for _, id := range tx {
		if r, ok := got[id]; !ok || link.StatusOf(r) != link.StatusOK {
			t.Errorf("tx %d reply = %+v (%v), want StatusOK", id, r, ok)
		}
	}
	var wire []string
	for _, s := range b.dev.Wire {
		wire = append(wire, string(s.Frame[54:]))
	}
	if fmt.Sprint(wire) != "[one two three]" {
		t.Errorf("wire = %q, want the three frames in order", wire)
	}

	for i := 0; i < 5; i++ {
		if !b.dev.Deliver(frame(fmt.Sprintf("in-%d", i)), false) {
			t.Fatalf("device refused frame %d with 8 buffers posted", i)
		}
	}
	reps := b.replies()
	if len(reps) != 5 {
		t.Fatalf("%d rx replies, want 5", len(reps))
	}
	for i, r := range reps {
		want := frame(fmt.Sprintf("in-%d", i))
		if r.ID != rx[i] || link.StatusOf(r) != link.StatusOK || r.Ref.Len != uint32(len(want)) {
			t.Errorf("rx reply %d = id %d status %d len %d, want id %d ok len %d", i, r.ID, r.Status, r.Ref.Len, rx[i], len(want))
			continue
		}
		if data, _ := b.rx.Bytes(r.Ref); !bytes.Equal(data, want) {
			t.Errorf("rx reply %d carries %q, want %q", i, data, want)
		}
	}
}

// OpInfo announces what the device says it does, and its link state: the
// loop assumes nothing of a family.
func TestInfoFromDevice(t *testing.T) {
	for _, tc := range []struct {
		cfg      netdevtest.Config
		link     uint64
		features uint64
	}{
		{netdevtest.Config{}, 1, 0},
		{netdevtest.Config{Features: netdev.FeatureChecksum}, 1, link.FeatureChecksum},
		{netdevtest.Config{Features: netdev.FeatureChecksum | netdev.FeatureTSO, LinkDown: true}, 0, link.FeatureChecksum | link.FeatureTSO},
	} {
		b := newBench(t, tc.cfg)
		id := b.send(link.OpInfo.Msg(pool.Ref{}))
		r := byID(b.replies())[id]
		if link.StatusOf(r) != link.StatusOK || r.Arg[1] != tc.link || r.Arg[2] != tc.features {
			t.Errorf("%+v: info reply = %+v, want link %d, features %b", tc.cfg, r, tc.link, tc.features)
		}
	}
}

// An offload request reaches the device as netdev.Offload; one the device
// cannot honour, or did not announce, is refused and never handed to it.
func TestOffloadRequests(t *testing.T) {
	good := []link.Offload{
		{L3: 14, L4: 34, TCP: true},                        // checksum only
		{L3: 14, L4: 34, HdrLen: 54, MSS: 1448, TCP: true}, // segmentation
		{L3: 14, L4: 54, TCP: true, IPv6: true},            // TCP over IPv6
		{L3: 14, L4: 54, IPv6: true},                       // UDP over IPv6
	}
	all := netdev.FeatureChecksum | netdev.FeatureTSO | netdev.FeatureChecksum6 | netdev.FeatureUDPChecksum6
	b := newBench(t, netdevtest.Config{Features: all})
	var ids []uint64
	for _, o := range good {
		ids = append(ids, b.transmit(strings.Repeat("payload ", 10), o)) // past an IPv6 UDP header
	}
	got := byID(b.replies())
	for i, id := range ids {
		if link.StatusOf(got[id]) != link.StatusOK {
			t.Errorf("offload %+v: status %d, want StatusOK", good[i], got[id].Status)
		}
	}
	if len(b.dev.Wire) != len(good) {
		t.Fatalf("%d frames sent, want %d", len(b.dev.Wire), len(good))
	}
	for i, o := range good {
		want := netdev.Offload{L3: int(o.L3), L4: int(o.L4), TCP: o.TCP, IPv6: o.IPv6, MSS: int(o.MSS), HdrLen: int(o.HdrLen)}
		if s := b.dev.Wire[i]; s.Offload == nil || *s.Offload != want {
			t.Errorf("frame %d went out with offload %+v, want %+v", i, s.Offload, want)
		}
	}

	for _, tc := range []struct {
		features netdev.Features
		bad      []link.Offload
	}{
		{netdev.FeatureChecksum | netdev.FeatureTSO, []link.Offload{
			{L3: 14, L4: 14, TCP: true},                         // TCP header where IP's is
			{L3: 14, L4: 250, TCP: true},                        // past any real header
			{L3: 14, L4: 34, HdrLen: 40, MSS: 1448, TCP: true},  // headers end inside TCP's
			{L3: 14, L4: 34, HdrLen: 54, MSS: 1500, TCP: true},  // segments longer than a frame
			{L3: 14, L4: 34, HdrLen: 54, MSS: 16, TCP: true},    // absurdly small segments
			{L3: 14, L4: 34, HdrLen: 200, MSS: 1000, TCP: true}, // no payload after the headers
		}},
		{netdev.FeatureChecksum, []link.Offload{good[1]}},                                     // segmentation not announced
		{netdev.FeatureChecksum | netdev.FeatureTSO, good[2:]},                                // nothing over IPv6 announced
		{netdev.FeatureChecksum | netdev.FeatureTSO | netdev.FeatureChecksum6, good[3:]},      // TCP over IPv6, not UDP (the e1000e)
		{all, []link.Offload{{L3: 14, L4: 54, HdrLen: 86, MSS: 1428, TCP: true, IPv6: true}}}, // no segmentation over IPv6 announced
		{0, good}, // no offload announced
	} {
		b := newBench(t, netdevtest.Config{Features: tc.features})
		var ids []uint64
		for _, o := range tc.bad {
			ref, _ := b.rx.Alloc()
			ref.Len = 100
			ids = append(ids, b.send(link.OpTx.Msg(ref, o.Arg())))
		}
		got := byID(b.replies())
		for i, id := range ids {
			if link.StatusOf(got[id]) != link.StatusBadRef {
				t.Errorf("features %b, offload %+v: status %d, want StatusBadRef", tc.features, tc.bad[i], got[id].Status)
			}
		}
		if len(b.dev.Wire) != 0 || b.drv.Counters().BadRefs != uint64(len(tc.bad)) {
			t.Errorf("features %b: %d frames sent, %d bad refs; want none sent, %d bad refs", tc.features, len(b.dev.Wire), b.drv.Counters().BadRefs, len(tc.bad))
		}
	}
}

// More RX buffers than the ring holds wait in the loop and reach the device
// as frames free room; every frame is answered in order.
func TestRingFullQueues(t *testing.T) {
	b := newBench(t, netdevtest.Config{RxRing: 16})
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
		if !b.dev.Deliver(frame(fmt.Sprintf("f%d", i)), false) {
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

// The same with transmit: frames beyond the ring's room wait, in order.
func TestTxRingFullQueues(t *testing.T) {
	b := newBench(t, netdevtest.Config{TxRing: 4})
	var ids []uint64
	for i := 0; i < 10; i++ {
		ids = append(ids, b.transmit(fmt.Sprintf("f%d", i), link.Offload{}))
	}
	var got []uint64
	for _, r := range b.replies() {
		got = append(got, r.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("tx replies %v, want %v", got, ids)
	}
	for i, s := range b.dev.Wire {
		if want := fmt.Sprintf("f%d", i); string(s.Frame[54:]) != want {
			t.Errorf("frame %d on the wire carries %q, want %q", i, s.Frame[54:], want)
		}
	}
}

func TestBadRef(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	id := b.send(link.OpTx.Msg(pool.Ref{Pool: 99, Off: 4096, Len: 60}))
	reps := b.replies()
	if len(reps) != 1 || reps[0].ID != id || link.StatusOf(reps[0]) != link.StatusBadRef || b.drv.Counters().BadRefs != 1 {
		t.Errorf("reply to a foreign ref = %+v, want StatusBadRef", reps)
	}
}

// A receive buffer shorter than the device writes is refused, not posted.
func TestShortRxBuffer(t *testing.T) {
	b := newBench(t, netdevtest.Config{RxBufMin: 4096}) // the pool's buffers hold 2048
	id := b.postRX()
	reps := b.replies()
	if len(reps) != 1 || reps[0].ID != id || link.StatusOf(reps[0]) != link.StatusBadRef {
		t.Errorf("reply to a 2048-byte receive buffer on a device writing 4096 = %+v, want StatusBadRef", reps)
	}
	if b.dev.RxFree() != 16 {
		t.Errorf("device RxFree() = %d, want 16: nothing posted", b.dev.RxFree())
	}
}

// A frame the device marks bad is answered with StatusError and its length.
func TestRxError(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	id := b.postRX()
	b.replies()
	f := frame("garbled")
	b.dev.Deliver(f, true)
	reps := b.replies()
	if len(reps) != 1 || reps[0].ID != id || link.StatusOf(reps[0]) != link.StatusError || reps[0].Ref.Len != uint32(len(f)) {
		t.Errorf("reply to a bad frame = %+v, want id %d StatusError length %d", reps, id, len(f))
	}
}

// The checksums the device verified reach IP in the reply's Arg[0]
// (link.RxChecked*); a frame it verified nothing of carries 0.
func TestRxChecked(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	for _, tc := range []struct {
		check netdev.RxCheck
		want  uint64
	}{
		{0, 0},
		{netdev.RxL4Checked, link.RxCheckedL4},
		{netdev.RxL4Checked | netdev.RxIPv4Checked, link.RxCheckedL4 | link.RxCheckedIPv4},
	} {
		b.postRX()
		b.replies()
		b.dev.DeliverChecked(frame("checked"), tc.check)
		if reps := b.replies(); len(reps) != 1 || link.StatusOf(reps[0]) != link.StatusOK || reps[0].Arg[0] != tc.want {
			t.Errorf("reply to a frame checked %b = %+v, want StatusOK, Arg[0] %b", tc.check, reps, tc.want)
		}
	}
}

// A new IP generation: the device is reset, the old generation's buffers
// are forgotten (no frame lands in them), the old pools come back for
// release, and the new generation is served.
func TestAdoptNewGeneration(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	for i := 0; i < 8; i++ {
		b.postRX()
	}
	b.replies()
	resets := b.dev.Resets
	old := b.adopt(2)
	if len(old) != 1 || old[0] != b.rx {
		t.Errorf("Adopt returned %v, want the old generation's pool", old)
	}
	if b.drv.Counters().Resets != 1 || b.dev.Resets != resets+1 {
		t.Errorf("resets = %d (device: %d more), want 1", b.drv.Counters().Resets, b.dev.Resets-resets)
	}
	if b.dev.Deliver(frame("to nobody"), false) {
		t.Error("a frame was written into the old generation's buffers after the reset")
	}
	id := b.postRX()
	b.replies()
	b.dev.Deliver(frame("to gen 2"), false)
	reps := b.replies()
	if len(reps) != 1 || reps[0].ID != id {
		t.Errorf("after adopting generation 2: replies %+v, want the new buffer %d filled", reps, id)
	}
}

// Beyond maxWaiting requests waiting for room on a full ring, one is
// answered StatusThrottled at once and counted; the waiting ones go on.
func TestWaitingIsBounded(t *testing.T) {
	b := newBench(t, netdevtest.Config{TxRing: 4})
	b.drv.maxWaiting = 2
	var ids []uint64
	for i := 0; i < 7; i++ { // 4 on the ring, 2 waiting, 1 throttled
		ids = append(ids, b.transmit(fmt.Sprintf("f%d", i), link.Offload{}))
	}
	b.drv.Poll()
	got := byID(b.replies())
	if r, ok := got[ids[6]]; !ok || link.StatusOf(r) != link.StatusThrottled {
		t.Fatalf("the seventh frame answered %+v (%v), want StatusThrottled", r, ok)
	}
	for _, id := range ids[:6] {
		if r, ok := got[id]; !ok || link.StatusOf(r) != link.StatusOK {
			t.Errorf("frame %d answered %+v (%v), want StatusOK", id, r, ok)
		}
	}
	if c := b.drv.Counters(); c.Throttled != 1 || len(b.dev.Wire) != 6 {
		t.Errorf("Throttled %d, %d frames on the wire; want 1, 6", c.Throttled, len(b.dev.Wire))
	}
}

// While maxOutbox replies wait for room in the channel, the loop takes no
// request: the outbox does not grow past it.
func TestOutboxIsBounded(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	b.drv.maxOutbox = 3
	// A peer that reads no replies and sends as long as the channel takes
	// its requests: the reply channel (256) fills, then the outbox.
	for range 10 {
		for b.ip.Send(link.OpInfo.Msg(pool.Ref{})) == 1 {
		}
		for range 4 {
			b.drv.Poll()
		}
	}
	if n := len(b.drv.outbox); n > 3+BatchSize {
		t.Errorf("outbox holds %d replies, want at most maxOutbox plus one batch", n)
	}
	if b.drv.Counters().OutboxStalls == 0 {
		t.Errorf("OutboxStalls = 0, want the stalled rounds counted")
	}
}

// TestIdlePollAllocatesNothing: the driver's loop spins through hundreds of
// idle passes before it sleeps on the interrupt, and a pass that finds
// nothing to do must not make garbage for the collector to chase.
func TestIdlePollAllocatesNothing(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	b.replies() // the loop settles
	if n := testing.AllocsPerRun(1000, func() { b.drv.Poll() }); n != 0 {
		t.Errorf("an idle Poll allocates %v times, want none", n)
	}
}

// OpMulticast joins and leaves groups: the device's filter always holds
// exactly the groups joined, once each.
func TestMulticastJoinLeave(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	g1, g2 := [6]byte{0x33, 0x33, 0, 0, 0, 1}, [6]byte{0x33, 0x33, 0xff, 1, 2, 3}
	join := func(g [6]byte, on uint64) {
		t.Helper()
		id := b.send(link.OpMulticast.Msg(pool.Ref{}, link.MACToArg(g), on))
		if r := byID(b.replies())[id]; link.StatusOf(r) != link.StatusOK {
			t.Fatalf("OpMulticast(%x, %d) reply = %+v, want StatusOK", g, on, r)
		}
	}
	join(g1, 1)
	join(g2, 1)
	join(g1, 1) // again: still once
	if fmt.Sprint(b.dev.Groups) != fmt.Sprint([][6]byte{g1, g2}) {
		t.Errorf("groups = %x, want %x %x", b.dev.Groups, g1, g2)
	}
	join(g1, 0)
	if fmt.Sprint(b.dev.Groups) != fmt.Sprint([][6]byte{g2}) {
		t.Errorf("groups after leaving %x = %x, want %x", g1, b.dev.Groups, g2)
	}
}

// TestCompletionsAreLazy: transmit completions alone do not wake an IP
// that sleeps patiently; a received frame does, and an impatient IP is
// woken by completions too.
func TestCompletionsAreLazy(t *testing.T) {
	b := newBench(t, netdevtest.Config{})
	rx := b.postRX()
	b.drv.Poll() // the buffer goes on the ring
	arm := func(patient bool) {
		b.ip.SetPatient(patient)
		if ready, err := b.ip.Arm(); ready || err != nil {
			t.Fatalf("IP's Arm = %v, %v; want to sleep", ready, err)
		}
	}

	arm(true)
	tx := b.transmit("out", link.Offload{})
	woken := b.drv.peerWakeups()
	for i := 0; i < 3; i++ {
		b.drv.Poll()
	}
	if b.drv.peerWakeups() != woken {
		t.Error("a transmit completion woke a patient IP")
	}
	b.ip.Disarm()
	if got := byID(b.replies()); link.StatusOf(got[tx]) != link.StatusOK {
		t.Fatalf("transmit reply = %+v, want it waiting, StatusOK", got[tx])
	}

	arm(true)
	if !b.dev.Deliver(frame("in"), false) {
		t.Fatal("device refused the frame")
	}
	b.drv.Poll()
	if b.drv.peerWakeups() != woken+1 {
		t.Error("a received frame did not wake a patient IP")
	}
	b.ip.Disarm()
	if got := byID(b.replies()); link.StatusOf(got[rx]) != link.StatusOK {
		t.Fatalf("receive reply = %+v, want StatusOK", got[rx])
	}

	arm(false)
	b.transmit("out again", link.Offload{})
	b.drv.Poll()
	if b.drv.peerWakeups() != woken+2 {
		t.Error("a transmit completion did not wake an impatient IP")
	}
	b.ip.Disarm()
}
