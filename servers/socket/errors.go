package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"keepnet/servers/ops"
)

// Errors that are not Go's or the system's. At the API every error comes
// wrapped in a *net.OpError.
var (
	// ErrLost: a SYSCALL restart could not re-create the socket (its port
	// was taken meanwhile, or the transport did not come back).
	ErrLost = errors.New("socket lost in a SYSCALL server restart")

	errMissingAddress = errors.New("missing address")
	// errFamily is an address of the other family than the network
	// names ("tcp4" and an IPv6 host): EAFNOSUPPORT, as Linux says.
	errFamily = fmt.Errorf("address of the other family than the network: %w", syscall.EAFNOSUPPORT)
)

// statusErr turns a reply's status into the error Go's net would give for
// the same failure of the same system call: an *os.SyscallError around the
// errno, so errors.Is(err, syscall.EADDRINUSE) and friends work.
func statusErr(call string, status ops.Status) error {
	var errno syscall.Errno
	switch status {
	case ops.StatusOK:
		return nil
	case ops.StatusClosed:
		return net.ErrClosed
	case ops.StatusInUse:
		errno = syscall.EADDRINUSE
	case ops.StatusNoRoute:
		errno = syscall.EHOSTUNREACH
	case ops.StatusNoPort, ops.StatusRefused:
		errno = syscall.ECONNREFUSED
	case ops.StatusTooBig:
		errno = syscall.EMSGSIZE
	case ops.StatusInvalid:
		errno = syscall.EINVAL
	case ops.StatusNoSocket:
		errno = syscall.EBADF
	case ops.StatusReset:
		errno = syscall.ECONNRESET
	case ops.StatusTimedOut:
		errno = syscall.ETIMEDOUT
	case ops.StatusAFNoSupport:
		errno = syscall.EAFNOSUPPORT
	case ops.StatusNoBuffers:
		errno = syscall.ENOBUFS
	case ops.StatusTooManySockets:
		errno = syscall.EMFILE
	case ops.StatusNetUnreach:
		errno = syscall.ENETUNREACH
	case ops.StatusAddrNotAvail:
		errno = syscall.EADDRNOTAVAIL
	default:
		errno = syscall.EIO
	}
	return os.NewSyscallError(call, errno)
}

// ctxErr maps a context's error as Go's net does: a passed deadline is a
// timeout (os.ErrDeadlineExceeded), a cancellation stays context.Canceled.
func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return os.ErrDeadlineExceeded
	}
	return err
}
