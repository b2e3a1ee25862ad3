package itest

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// frameBatch is a batch of copies of one frame for sendmmsg on a socket
// bound to its interface (no address per message): one system call sends
// them all, so a sender on a busy host spends its time on frames, not on
// entering the kernel.
type frameBatch struct {
	iov  unix.Iovec
	msgs []unix.Mmsghdr
}

func newFrameBatch(frame []byte, n int) *frameBatch {
	b := &frameBatch{msgs: make([]unix.Mmsghdr, n)}
	b.iov.Base = &frame[0]
	b.iov.SetLen(len(frame))
	for i := range b.msgs {
		b.msgs[i].Hdr.Iov = &b.iov
		b.msgs[i].Hdr.Iovlen = 1
	}
	return b
}

// send sends the first n copies on fd and returns how many the kernel
// took; err is why it took no more (the first copy's failure: sendmmsg
// reports an error only when it sent nothing).
func (b *frameBatch) send(fd, n int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
