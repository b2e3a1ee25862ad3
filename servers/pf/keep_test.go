package pf

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"keepnet/servers/header"
)

const keptRules = "set default block\npass out proto tcp\npass out proto udp\n"

// restart drops w's Filter, as a crash of pf would, and makes a new one
// over the same kept memory with the rules loaded again (from the store,
// in the server).
func (w *wire) restart(mem []byte, maxStates int) {
	w.t.Helper()
	f, err := New(mem, Config{MaxStates: maxStates, Nonce: 99})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := f.LoadText(keptRules); err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

// slotOf is the kept memory slot of c's state.
func (w *wire) slotOf(c *conn) int {
	w.t.Helper()
	k, _ := keyOf(c.client.Is6(), header.ProtocolTCP, addrFrom(c.client), addrFrom(c.server), c.cport, c.sport, c.dir)
	i, ok := w.f.index[k]
	if !ok {
		w.t.Fatalf("no state for %v:%d", c.client, c.cport)
	}
	return int(i)
}

// TestCrashAdoptsStates: a new Filter over the kept memory of a dead one
// lets every established flow go on, and drops a record scribbled on:
// that flow's packets are judged by the rules again.
func TestCrashAdoptsStates(t *testing.T) {
	const maxStates = 16
	mem := make([]byte, MemBytes(maxStates))
	w := &wire{t: t, now: epoch}
	w.restart(mem, maxStates)
	conns := []*conn{
		w.conn(inside, 40001, outside, 80, Out),
		w.conn(inside, 40002, outside, 443, Out),
		w.conn(inside, 40003, other, 22, Out),
	}
	for _, c := range conns {
		c.open()
		w.pass(Out, c.fromClient(ack, 100), ReasonState, "request")
		w.pass(In, c.fromServer(ack, 1000), ReasonState, "response")
	}
	w.pass(Out, udp(inside, 5000, outside, 53, 30), ReasonRule, "DNS query")

	// Scribble over both copies of the second connection's record.
	slot := w.slotOf(conns[1])
	for c := range 2 {
		off := headerBytes + slot*slotBytes + c*copyBytes + copyHeader + recPeers
		mem[off] ^= 0xff
	}

	w.restart(mem, maxStates)
	if c := w.f.Counters(); c.Adopted != 3 || c.Discarded != 1 {
		t.Fatalf("after the restart Adopted %d, Discarded %d; want 3, 1", c.Adopted, c.Discarded)
	}
	for _, i := range []int{0, 2} {
		c := conns[i]
		w.pass(Out, c.fromClient(ack, 100), ReasonState, "request after the restart")
		w.pass(In, c.fromServer(ack, 1000), ReasonState, "response after the restart")
	}
	w.pass(In, udp(outside, 53, inside, 5000, 80), ReasonState, "DNS answer after the restart")
	w.block(In, conns[1].fromServer(ack, 1000), ReasonDefault, "the scribbled connection's response")

	// The adopted states go on being kept: another crash finds them as
	// the last packets left them.
	w.pass(Out, conns[0].fromClient(ack, 100000%1400), ReasonState, "more data")
	before := w.f.states[w.slotOf(conns[0])]
	w.restart(mem, maxStates)
	if c := w.f.Counters(); c.Adopted != 3 || c.Discarded != 0 {
		t.Fatalf("after the second restart Adopted %d, Discarded %d; want 3, 0", c.Adopted, c.Discarded)
	}
	if after := w.f.states[w.slotOf(conns[0])]; after != before {
		t.Errorf("state after the second restart\n%+v\nwant\n%+v", after, before)
	}
}

// TestCrashTornWrite: a crash in the middle of a record's write tears the
// copy being written; the restart takes the other copy, one packet older,
// and the flow goes on.
func TestCrashTornWrite(t *testing.T) {
	const maxStates = 4
	mem := make([]byte, MemBytes(maxStates))
	w := &wire{t: t, now: epoch}
	w.restart(mem, maxStates)
	c := w.conn(inside, 40000, outside, 80, Out)
	c.open()
	w.pass(Out, c.fromClient(ack, 1000), ReasonState, "data")

	// Tear the newest copy: the one before the next to be written.
	slot := w.slotOf(c)
	newest := w.f.kept.next[slot] ^ 1
	binary.LittleEndian.PutUint32(mem[headerBytes+slot*slotBytes+int(newest)*copyBytes+copyHeader+recLast:], 0xdead)

	w.restart(mem, maxStates)
	if got := w.f.Counters(); got.Adopted != 1 || got.Discarded != 0 {
		t.Fatalf("Adopted %d, Discarded %d; want 1, 0", got.Adopted, got.Discarded)
	}
	w.pass(In, c.fromServer(ack, 1000), ReasonState, "response, judged by the state one packet older")
	w.pass(Out, c.fromClient(ack, 1000), ReasonState, "more data")
}

// TestCrashBadRecord: a record whose checksum holds but whose contents
// break the invariants is dropped too, and of two records of one flow
// the older.
func TestCrashBadRecord(t *testing.T) {
	const maxStates = 4
	mem := make([]byte, MemBytes(maxStates))
	f, err := New(mem, Config{MaxStates: maxStates, Nonce: 5})
	if err != nil {
		t.Fatal(err)
	}
	good := state{key: flowKey{lo: addrFrom(inside), hi: addrFrom(outside), loPort: 3, hiPort: 4, proto: header.ProtocolUDP, loDir: Out}, created: 1, last: 2}
	good.peers[initiator].state = peerSingle
	bad := good
	bad.key.loDir = 7
	older := good
	older.last = 1
	f.kept.save(2, &older) // a second record of good's flow, older
	f.kept.save(0, &good)
	f.kept.save(1, &bad)

	f, err = New(mem, Config{MaxStates: maxStates, Nonce: 5})
	if err != nil {
		t.Fatal(err)
	}
	if c := f.Counters(); c.Adopted != 1 || c.Discarded != 2 {
		t.Errorf("Adopted %d, Discarded %d; want 1, 2", c.Adopted, c.Discarded)
	}
	if i, ok := f.index[good.key]; !ok || f.states[i] != good {
		t.Errorf("adopted %+v, want the newer record %+v", f.states[i], good)
	}
}

// TestKeptMemoryOfAnotherSize: memory set up for another table size is
// set up afresh (nothing adopted); memory too small is refused.
func TestKeptMemoryOfAnotherSize(t *testing.T) {
	mem := make([]byte, MemBytes(8))
	w := &wire{t: t, now: epoch}
	w.restart(mem, 8)
	w.conn(inside, 40000, outside, 80, Out).open()
	w.restart(mem[:MemBytes(4)], 4)
	if c := w.f.Counters(); c.Adopted != 0 || c.Discarded != 0 || w.f.NumStates() != 0 {
		t.Errorf("counters %+v, %d states; want a fresh table", c, w.f.NumStates())
	}
	if _, err := New(mem[:MemBytes(4)-1], Config{MaxStates: 4}); err == nil {
		t.Error("New with too little memory: no error")
	}
}

// crc32Header is the checksum of kept memory's header.
func crc32Header(mem []byte) uint32 { return crc32.Checksum(mem[:hdrCRC], castagnoli) }
