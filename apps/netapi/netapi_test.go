package netapi

import (
	"errors"
	"testing"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		stack       string
		wantNet     Network
		wantErr     bool
		unavailable bool
	}{
		{stack: "linux", wantNet: Host},
		{stack: "keepnet", wantErr: true, unavailable: true},
		{stack: "", wantErr: true},
		{stack: "bsd", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Lookup(tt.stack)
		if (err != nil) != tt.wantErr || got != tt.wantNet {
			t.Errorf("Lookup(%q) = %v, %v; want %v, error %v", tt.stack, got, err, tt.wantNet, tt.wantErr)
		}
		if errors.Is(err, ErrUnavailable) != tt.unavailable {
			t.Errorf("Lookup(%q) error %v: errors.Is(ErrUnavailable) = %v, want %v", tt.stack, err, !tt.unavailable, tt.unavailable)
		}
	}
}

func TestHostListens(t *testing.T) {
	l, err := Host.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Host.Listen: %v", err)
	}
	l.Close()
	pc, err := Host.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Host.ListenPacket: %v", err)
	}
	pc.Close()
}
