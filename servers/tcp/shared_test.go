package tcp

import (
	"testing"

	"keepnet/servers/header"
)

// A delivered segment sits in IP's pool (ip.up.small), which IP, and through
// a bug anyone who can write it, may rewrite while tcp parses. A data offset
// rewritten between tcp's check and its use once crashed tcp: tcp must take
// every field of the segment once.
func TestDeliveryRewrittenWhileParsed(t *testing.T) {
	p := startProc(t, procOptions{})
	p.answerAddr()
	// A reset to no connection: tcp parses it all and answers nothing.
	good := pkt{from: 40000, to: 9, flags: header.TCPFlagRST, seq: 1, data: "twenty bytes of data"}.encode()
	evil := append([]byte(nil), good...)
	h := header.TCP(evil[header.IPv4MinimumSize:])
	h.SetDataOffset(header.TCPMaximumHeaderSize) // past the segment's 40 bytes
	h.SetChecksum(0)
	h.SetChecksum(h.ComputeChecksum(cliIP, srvIP))

	rounds, raced, writes := p.ip.RaceDelivery(t, good, evil)
	p.stop()
	c := p.s.table.Counters()
	t.Logf("%d deliveries, %d of them while IP rewrote the buffer (%d times): %d parsed, %d with a bad offset", rounds, raced, writes, c.InSegs, c.InBadOffset)
	if c.InSegs+c.InBadOffset != uint64(rounds) {
		t.Errorf("%d parsed + %d bad offsets, want the %d deliveries", c.InSegs, c.InBadOffset, rounds)
	}
}
