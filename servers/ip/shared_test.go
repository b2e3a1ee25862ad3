package ip

import (
	"fmt"
	"testing"
	"time"

	"keepnet/drivers/link"
	"keepnet/kernel/pool/pooltest"
	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// A receive buffer is memory the driver (and its device) may write while IP
// parses it. A driver that rewrites the IPv4 total length between IP's
// check and its use once crashed IP (`slice bounds out of range [:65400]
// with capacity 120`): IP must take every field from the buffer once.
func TestReceiveBufferRewrittenWhileParsed(t *testing.T) {
	b := newHoldbed(t)
	b.setStack(map[uint8]Transport{
		header.ProtocolTCP: &transportLink{s: b.s, name: "tcp"},
	})
	good := fromPeer(header.ProtocolTCP, 7, make([]byte, 120-header.EthernetMinimumSize-header.IPv4MinimumSize))
	evil := append([]byte(nil), good...)
	ip := header.IPv4(evil[header.EthernetMinimumSize:])
	ip.SetTotalLength(65400) // a valid header, but for a datagram far longer than the buffer
	ip.SetChecksum(0)
	ip.SetChecksum(ip.HeaderChecksum())

	ref, ok := b.s.rx.Alloc()
	if !ok {
		t.Fatal("no receive buffer")
	}
	buf, _ := b.s.rx.Bytes(ref)
	copy(buf, good)
	b.s.request(b.drv, link.OpRx.Msg(ref))

	r := pooltest.Rewrite(buf[:len(good)], evil, good)
	var panicked any
	raced, rounds := pooltest.Race(r, 1000, 5*time.Second, func() {
		if panicked != nil {
			return
		}
		defer func() { panicked = recover() }()
		b.receive(len(good))
	})
	writes := r.Stop()
	if panicked != nil {
		t.Fatalf("IP panicked on a receive buffer rewritten while it parsed: %v", panicked)
	}
	c := b.s.stack.Counters()
	t.Logf("%d frames, %d of them while the driver rewrote the buffer (%d times): %d delivered, %d truncated", rounds, raced, writes, c.IPDelivered, c.IPTruncated)
	if c.IPDelivered+c.IPTruncated != uint64(rounds) {
		t.Errorf("%d delivered + %d truncated, want the %d frames", c.IPDelivered, c.IPTruncated, rounds)
	}
}

// receive has the driver answer IP's receive request with a frame of n
// bytes, and tcp answer what IP delivered.
func (b *holdbed) receive(n int) {
	q := b.drv.queue
	b.drv.queue = nil
	for _, m := range q {
		if link.OpOf(m) != link.OpRx {
			continue
		}
		link.SetStatus(&m, link.StatusOK)
		m.Ref.Len = uint32(n)
		b.s.handle(b.drv, m)
	}
	q = b.tcp.queue
	b.tcp.queue = nil
	for _, m := range q {
		if ops.OpOf(m) != ops.OpDeliver {
			panic(fmt.Sprintf("IP sent tcp %+v", m))
		}
		ops.SetStatus(&m, ops.StatusOK)
		b.s.handle(b.tcp, m)
	}
}
