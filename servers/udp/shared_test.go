package udp

import (
	"testing"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// A delivered datagram sits in IP's pool while udp parses it: a UDP length
// rewritten between udp's check and its use must not crash udp (servers/tcp's
// TestDeliveryRewrittenWhileParsed, for the other transport).
func TestDeliveryRewrittenWhileParsed(t *testing.T) {
	p := startProcess(t, nil)
	p.answerAddr(p.ip)
	from := addr(peerIP, 5000)
	if r := p.call(ops.OpOpen, 1, uint64(ops.UDP)); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpOpen = %s", ops.StatusOf(r))
	}
	if r := p.callMsg(withAddr(ops.OpBind.Msg(1), addr(ourIP, 7))); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("OpBind(:7) = %s", ops.StatusOf(r))
	}
	noChecksum := func(u header.UDP) { u.SetChecksum(0) }
	good := ipUDP(from, addr(ourIP, 7), []byte("twenty bytes of data"), noChecksum)
	evil := ipUDP(from, addr(ourIP, 7), []byte("twenty bytes of data"), func(u header.UDP) {
		noChecksum(u)
		u.SetLength(60000) // far past the datagram
	})

	rounds, raced, writes := p.ip.RaceDelivery(t, good, evil)
	c := p.core.table.Counters()
	t.Logf("%d deliveries, %d of them while IP rewrote the buffer (%d times): %d truncated", rounds, raced, writes, c.InTruncated)
}
