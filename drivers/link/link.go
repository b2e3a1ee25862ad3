// Package link is the protocol between the IP server and a NIC driver, over
// a kernel/chan channel. IP sends requests; the driver answers each exactly
// once, with the request's id.
//
//	OpRx    IP -> driver. Ref is an empty buffer of IP's receive pool. The
//	        driver posts it to the device; the reply comes when a frame has
//	        arrived in it: Ref.Len is the frame's length. A buffer the
//	        driver gives back unused (a reset, a shutdown) is answered with
//	        StatusUnused.
//	OpTx    IP -> driver. Ref is a whole Ethernet frame (without FCS). The
//	        reply comes once the device has read it out of memory (its
//	        descriptor is done): only then may IP free or reuse the buffer.
//	OpInfo  IP -> driver. The reply carries the MAC address in Arg[0] (the
//	        low 48 bits, first byte in bits 40-47) and link state in Arg[1]
//	        (1: up).
//
// After a driver restart IP gets a fresh channel (kernel/wire) and resubmits
// every request that has no reply yet, with new ids: TX frames that may not
// have gone out are sent again (a few duplicates, never a loss), and its
// receive buffers are posted again. The new driver reset the device before
// it said hello, so none of the old requests is still in the device's hands.
package link

// Operations.
const (
	OpRx   uint16 = 1
	OpTx   uint16 = 2
	OpInfo uint16 = 3
)

// Reply statuses.
const (
	StatusOK     int32 = 0
	StatusUnused int32 = 1 // an RX buffer returned without a frame
	StatusBadRef int32 = 2 // the ref is not inside a pool the driver knows
	StatusError  int32 = 3 // the device reported an error for this frame
)

// MACToArg packs a MAC address into a message argument.
func MACToArg(mac [6]byte) uint64 {
	var v uint64
	for _, b := range mac {
		v = v<<8 | uint64(b)
	}
	return v
}

// ArgToMAC unpacks MACToArg.
func ArgToMAC(v uint64) [6]byte {
	var mac [6]byte
	for i := 5; i >= 0; i-- {
		mac[i] = byte(v)
		v >>= 8
	}
	return mac
}
