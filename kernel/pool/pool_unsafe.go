package pool

import "unsafe"

// addrOf is the virtual address of b's first byte, for /proc/self/pagemap.
// b is an mmap'ed region, which the garbage collector never moves.
func addrOf(b []byte) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}

// Ref is 12 bytes: it sits inside the fixed 64-byte channel message.
var (
	_ [unsafe.Sizeof(Ref{}) - 12]byte
	_ [12 - unsafe.Sizeof(Ref{})]byte
)
