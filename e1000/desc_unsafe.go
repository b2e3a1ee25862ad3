package e1000

// This file holds every use of package unsafe in e1000 (STYLE item 4):
//   - compile-time checks that the descriptor views' offsets match the
//     manual's layouts, expressed as Go structs;
//   - the one fenced access to descriptor memory the device writes
//     concurrently: an atomic 32-bit load of the write-back dword.

import (
	"sync/atomic"
	"unsafe"
)

// rxDescLayout is the legacy receive descriptor as in 3.2.3, Figure 3-1.
type rxDescLayout struct {
	Addr     uint64
	Length   uint16
	Checksum uint16
	Status   uint8
	Errors   uint8
	Special  uint16
}

// txDescLayout is the legacy transmit descriptor as in 3.3.3, Figure 3-8.
type txDescLayout struct {
	Addr    uint64
	Length  uint16
	CSO     uint8
	CMD     uint8
	STA     uint8 // STA 3:0, RSV 7:4
	CSS     uint8
	Special uint16
}

// ctxDescLayout is the TCP/IP context descriptor as in 3.3.6, Figure 3-10.
type ctxDescLayout struct {
	IPCSS, IPCSO uint8
	IPCSE        uint16
	TUCSS, TUCSO uint8
	TUCSE        uint16
	PaylenCmd    uint32 // PAYLEN 19:0, DTYP 23:20, TUCMD 31:24
	STA          uint8
	HDRLEN       uint8
	MSS          uint16
}

// dataDescLayout is the TCP/IP data descriptor as in 3.3.7, Figure 3-11.
type dataDescLayout struct {
	Addr    uint64
	LenCmd  uint32 // DTALEN 19:0, DTYP 23:20, DCMD 31:24
	STA     uint8
	POPTS   uint8
	Special uint16
}

// zero is the target of the layout assertions below: [a-b]struct{}{} and
// [b-a]struct{}{} are both assignable to [0]struct{} only when a == b (a
// negative length does not compile, a positive one is a different type).
// The load/store helpers also assume a little-endian host (linux/amd64).
type zero = [0]struct{}

var (
	_ zero = [unsafe.Sizeof(rxDescLayout{}) - DescSize]struct{}{}
	_ zero = [DescSize - unsafe.Sizeof(rxDescLayout{})]struct{}{}
	_ zero = [unsafe.Sizeof(txDescLayout{}) - DescSize]struct{}{}
	_ zero = [DescSize - unsafe.Sizeof(txDescLayout{})]struct{}{}
	_ zero = [unsafe.Sizeof(ctxDescLayout{}) - DescSize]struct{}{}
	_ zero = [DescSize - unsafe.Sizeof(ctxDescLayout{})]struct{}{}
	_ zero = [unsafe.Sizeof(dataDescLayout{}) - DescSize]struct{}{}
	_ zero = [DescSize - unsafe.Sizeof(dataDescLayout{})]struct{}{}

	_ zero = [unsafe.Offsetof(rxDescLayout{}.Length) - rxLengthOff]struct{}{}
	_ zero = [unsafe.Offsetof(rxDescLayout{}.Checksum) - rxChecksumOff]struct{}{}
	_ zero = [unsafe.Offsetof(rxDescLayout{}.Status) - rxStatusOff]struct{}{}
	_ zero = [unsafe.Offsetof(rxDescLayout{}.Errors) - rxErrorsOff]struct{}{}
	_ zero = [unsafe.Offsetof(rxDescLayout{}.Special) - rxSpecialOff]struct{}{}

	_ zero = [unsafe.Offsetof(txDescLayout{}.Length) - txLengthOff]struct{}{}
	_ zero = [unsafe.Offsetof(txDescLayout{}.CSO) - txCSOOff]struct{}{}
	_ zero = [unsafe.Offsetof(txDescLayout{}.CMD) - txCMDOff]struct{}{}
	_ zero = [unsafe.Offsetof(txDescLayout{}.STA) - txSTAOff]struct{}{}
	_ zero = [unsafe.Offsetof(txDescLayout{}.CSS) - txCSSOff]struct{}{}
	_ zero = [unsafe.Offsetof(txDescLayout{}.Special) - txSpecialOff]struct{}{}

	_ zero = [unsafe.Offsetof(ctxDescLayout{}.IPCSE) - ctxIPCSEOff]struct{}{}
	_ zero = [unsafe.Offsetof(ctxDescLayout{}.TUCSS) - ctxTUCSSOff]struct{}{}
	_ zero = [unsafe.Offsetof(ctxDescLayout{}.TUCSE) - ctxTUCSEOff]struct{}{}
	_ zero = [unsafe.Offsetof(ctxDescLayout{}.PaylenCmd) - ctxPAYLENOff]struct{}{}
	_ zero = [unsafe.Offsetof(ctxDescLayout{}.STA) - ctxSTAOff]struct{}{}
	_ zero = [unsafe.Offsetof(ctxDescLayout{}.HDRLEN) - ctxHDRLENOff]struct{}{}
	_ zero = [unsafe.Offsetof(ctxDescLayout{}.MSS) - ctxMSSOff]struct{}{}

	_ zero = [unsafe.Offsetof(dataDescLayout{}.LenCmd) - dataLenOff]struct{}{}
	_ zero = [unsafe.Offsetof(dataDescLayout{}.STA) - dataSTAOff]struct{}{}
	_ zero = [unsafe.Offsetof(dataDescLayout{}.POPTS) - dataPOPTSOff]struct{}{}
	_ zero = [unsafe.Offsetof(dataDescLayout{}.Special) - dataSpecialOff]struct{}{}
)

// aligned reports whether b starts on an n-byte boundary of host memory.
func aligned(b []byte, n uintptr) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%n == 0
}

// writeBackOff is the offset of the dword the device writes back last:
// status/errors/special of an RX descriptor, STA/CSS/special of a TX one.
const writeBackOff = 12

// loadWriteBack atomically loads bytes 12-15 of a descriptor, as a
// little-endian word, so that fields read after it (length) are those the
// device wrote before setting DD. desc must be 4-byte aligned in host memory;
// New checks the ring region is 16-byte aligned.
func loadWriteBack(desc []byte) uint32 {
	_ = desc[writeBackOff+3]
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&desc[writeBackOff])))
}

// storeWriteBack atomically stores bytes 12-15 of a descriptor: the device
// model's counterpart of loadWriteBack, publishing a completed descriptor.
func storeWriteBack(desc []byte, v uint32) {
	_ = desc[writeBackOff+3]
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&desc[writeBackOff])), v)
}

// PublishWriteBack sets the status byte (byte 12) of a descriptor in one
// atomic 32-bit store, keeping bytes 13-15: the last write a device makes to
// a completed descriptor. Exported for the device model.
func PublishWriteBack(desc []byte, status uint8) {
	w := loadWriteBack(desc)
	storeWriteBack(desc, w&^0xFF|uint32(status))
}
