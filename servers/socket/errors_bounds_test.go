package socket

import (
	"errors"
	"syscall"
	"testing"

	"keepnet/servers/ops"
)

// The bounds' statuses reach applications as the errnos Linux gives for
// the same limits.
func TestBoundStatusesAreErrnos(t *testing.T) {
	for _, tt := range []struct {
		status ops.Status
		want   syscall.Errno
	}{
		{ops.StatusTooManySockets, syscall.EMFILE},
		{ops.StatusNoBuffers, syscall.ENOBUFS},
		{ops.StatusNetUnreach, syscall.ENETUNREACH},
		{ops.StatusAddrNotAvail, syscall.EADDRNOTAVAIL},
	} {
		if err := statusErr("accept", tt.status); !errors.Is(err, tt.want) {
			t.Errorf("statusErr(accept, %v) = %v, want %v", tt.status, err, tt.want)
		}
	}
}
