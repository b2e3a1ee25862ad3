package pid1

import (
	"net"
	"testing"

	"github.com/mdlayher/vsock"
)

// Only the host's vsock address reaches the control channel.
func TestFromHost(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&vsock.Addr{ContextID: vsock.Host, Port: 1234}, true},
		{&vsock.Addr{ContextID: 3, Port: 1234}, false},        // another guest
		{&vsock.Addr{ContextID: vsock.Local, Port: 1}, false}, // this guest
		{&net.UnixAddr{Name: "/x", Net: "unix"}, false},
	} {
		if got := fromHost(tc.addr); got != tc.want {
			t.Errorf("fromHost(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
