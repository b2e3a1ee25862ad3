package udp

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"keepnet/servers/ops"
	"keepnet/servers/transport"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{ID: 1},
		{ID: 42, Local: addr(netip.IPv4Unspecified(), 7)},
		{ID: 1<<64 - 1, Local: addr(ourIP, 65535), Peer: addr(netip.MustParseAddr("255.255.255.255"), 1)},
		{ID: 6, Local: addr(netip.IPv6Unspecified(), 7), Peer: addr(netip.MustParseAddr("fd00:77::2"), 4000)},
	} {
		b, _ := r.MarshalBinary()
		if len(b) != 45 {
			t.Errorf("MarshalBinary(%+v) is %d bytes, want 45 (the layout in record.go)", r, len(b))
		}
		got, err := ParseRecord(transport.RecordKey(r.ID), b)
		if err != nil || got != r {
			t.Errorf("ParseRecord(MarshalBinary(%+v)) = %+v, %v; want the same, nil", r, got, err)
		}
	}
}

func TestParseRecordRejects(t *testing.T) {
	good, _ := Record{ID: 5, Local: addr(ourIP, 53)}.MarshalBinary()
	badVersion := slices.Clone(good)
	badVersion[0] = 1
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"empty", "5", nil},
		{"short", "5", good[:44]},
		{"long", "5", append(slices.Clone(good), 0)},
		{"version 1", "5", badVersion},
		{"key names another socket", "6", good},
		{"key not decimal", "0x5", good},
	}
	for _, tt := range tests {
		if _, err := ParseRecord(tt.key, tt.value); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: ParseRecord(%q, % x) error = %v, want ErrBadRecord", tt.name, tt.key, tt.value, err)
		}
	}
}

// TestRestore is udp's restart in miniature: a Table's journal is all that
// survives; a new Table restored from it has the same sockets.
func TestRestore(t *testing.T) {
	old := newTestbed(t, Limits{})
	old.open(t, 1, addr(netip.IPv4Unspecified(), 7)) // bound
	old.open(t, 2, addr(ourIP, 53))                  // bound to our address
	old.open(t, 3, ops.Addr{})                       // open, unbound
	old.open(t, 4, ops.Addr{})                       // connected, below
	local4, _ := old.Connect(4, addr(peerIP, 53))
	old.open(t, 5, addr(netip.IPv4Unspecified(), 9)) // closed: gone
	old.Close(5)
	// A queued datagram is not kept.
	old.deliver(ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("lost"), nil))

	var stored []Record
	for _, r := range old.journal {
		b, _ := r.MarshalBinary()
		r2, err := ParseRecord(transport.RecordKey(r.ID), b)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, r2)
	}
	tb := newTestbed(t, Limits{})
	n, errs := tb.Restore(stored)
	if n != 4 || errs != nil {
		t.Fatalf("Restore() = %d, %v; want 4, nil", n, errs)
	}
	if got, want := tb.Records(), old.Records(); !slices.Equal(got, want) {
		t.Errorf("Records() after Restore = %+v, want %+v", got, want)
	}
	if len(tb.journal) != 0 {
		t.Errorf("Restore saved %d records again, want 0", len(tb.journal))
	}
	tests := []struct {
		name string
		pkt  []byte
		want ops.Status
	}{
		{"bound socket", ipUDP(addr(peerIP, 1), addr(ourIP, 7), []byte("a"), nil), ops.StatusOK},
		{"bound to our address", ipUDP(addr(peerIP, 1), addr(ourIP, 53), []byte("a"), nil), ops.StatusOK},
		{"connected, from the peer", ipUDP(addr(peerIP, 53), addr(ourIP, local4.Port()), []byte("a"), nil), ops.StatusOK},
		{"connected, from elsewhere", ipUDP(addr(otherIP, 53), addr(ourIP, local4.Port()), []byte("a"), nil), ops.StatusNoPort},
		{"closed before the crash", ipUDP(addr(peerIP, 1), addr(ourIP, 9), []byte("a"), nil), ops.StatusNoPort},
	}
	for _, tt := range tests {
		if got := tb.deliver(tt.pkt); got != tt.want {
			t.Errorf("%s: Deliver() after Restore = %s, want %s", tt.name, got.Text(), ops.Status(tt.want))
		}
	}
	// The restored bindings hold their ports; the unbound one still works.
	if _, st := tb.Bind(3, addr(netip.IPv4Unspecified(), 7)); st != ops.StatusInUse {
		t.Errorf("Bind(3, :7) after Restore = %s, want %s", st.Text(), ops.StatusInUse)
	}
	if _, st := tb.SendTo(4, ops.Addr{}, []byte("q")); st != ops.StatusOK || tb.ip.sent[0].dst != peerIP {
		t.Errorf("SendTo(restored connected socket, 0) = %s, want ok to %v", st.Text(), peerIP)
	}
	tb.RecvFrom(1, 1, make([]byte, 8))
	if d := tb.takeDone(); len(d) != 1 || d[0].Len != 1 {
		t.Errorf("RecvFrom(1) after Restore = %+v, want the datagram sent after the restart only", d)
	}
}

func TestRestoreConflicts(t *testing.T) {
	tb := newTestbed(t, Limits{})
	tb.journal[2], tb.journal[3] = Record{ID: 2}, Record{ID: 3}
	n, errs := tb.Restore([]Record{
		{ID: 1, Local: addr(netip.IPv4Unspecified(), 7)},
		{ID: 2, Local: addr(ourIP, 7)},     // same port
		{ID: 1, Local: addr(ourIP, 8)},     // same id
		{ID: 3, Peer: addr(peerIP, 53)},    // connected, unbound
		{ID: 4, Local: addr(ourIP, 65535)}, // fine
	})
	if n != 2 || len(errs) != 3 {
		t.Errorf("Restore() = %d, %d errors (%v); want 2, 3", n, len(errs), errs)
	}
	for _, err := range errs {
		if !errors.Is(err, ErrBadRecord) {
			t.Errorf("Restore() error %v, want ErrBadRecord", err)
		}
	}
	if _, ok := tb.journal[2]; ok {
		t.Errorf("conflicting record 2 still in the journal")
	}
	if _, ok := tb.journal[3]; ok {
		t.Errorf("bad record 3 still in the journal")
	}
}
