package e1000

import "encoding/binary"

// Descriptors are views over 16-byte slices of the descriptor rings, in the
// style of gVisor's header package: type X []byte with one-line accessors
// over explicit little-endian offsets (the device is little-endian; 3.2.3,
// 3.3.3). A view aliases the ring memory, so reading a field reads what the
// device wrote and setting a field is what the device will fetch: no copy, no
// encode/decode step to forget. Offsets are checked against the manual's
// layouts by compile-time assertions in desc_unsafe.go.
//
// A view is valid when len(v) >= DescSize; every accessor relies on that and
// nothing else (slicing a ring at 16-byte steps guarantees it; the fuzz test
// feeds arbitrary 16-byte slices).
//
// The write-back dword (bytes 12-15: status, errors, special) is the one the
// device writes after the rest; the driver reads it with an atomic load
// (loadStatusWord in desc_unsafe.go) before any other field of a descriptor
// it does not own yet.

// DescSize is the size of every receive and transmit descriptor (3.2.3, 3.3.3).
const DescSize = 16

// RxDesc is a receive descriptor (3.2.3, Figure 3-1):
//
//	 63                48 47    40 39    32 31             16 15              0
//	+--------------------------------------------------------------------------+
//	|                        Buffer Address [63:0]                             |
//	+--------------------+--------+--------+-----------------+-----------------+
//	|      Special       | Errors | Status | Packet Checksum |     Length      |
//	+--------------------+--------+--------+-----------------+-----------------+
type RxDesc []byte

const (
	rxAddrOff     = 0
	rxLengthOff   = 8
	rxChecksumOff = 10
	rxStatusOff   = 12
	rxErrorsOff   = 13
	rxSpecialOff  = 14
)

// Receive descriptor status bits (3.2.3.1, Table 3-2).
const (
	RDESC_STATUS_DD    uint8 = 1 << 0 // descriptor done
	RDESC_STATUS_EOP   uint8 = 1 << 1 // end of packet
	RDESC_STATUS_IXSM  uint8 = 1 << 2 // ignore checksum indication
	RDESC_STATUS_VP    uint8 = 1 << 3 // packet is 802.1Q (matched VET)
	RDESC_STATUS_UDPCS uint8 = 1 << 4 // UDP checksum calculated (82574; reserved on the 8254x)
	RDESC_STATUS_TCPCS uint8 = 1 << 5 // TCP checksum calculated
	RDESC_STATUS_IPCS  uint8 = 1 << 6 // IP checksum calculated
	RDESC_STATUS_PIF   uint8 = 1 << 7 // passed in-exact filter
)

// Receive descriptor error bits (3.2.3.2, Table 3-3). Valid only with EOP.
const (
	RDESC_ERRORS_CE   uint8 = 1 << 0 // CRC or alignment error
	RDESC_ERRORS_SE   uint8 = 1 << 1 // symbol error (TBI)
	RDESC_ERRORS_SEQ  uint8 = 1 << 2 // sequence error (TBI)
	RDESC_ERRORS_CXE  uint8 = 1 << 4 // carrier extension error (TBI)
	RDESC_ERRORS_TCPE uint8 = 1 << 5 // TCP/UDP checksum error
	RDESC_ERRORS_IPE  uint8 = 1 << 6 // IP checksum error
	RDESC_ERRORS_RXE  uint8 = 1 << 7 // RX data error

	// RDESC_ERRORS_FRAME are the errors that make the frame itself bad;
	// TCPE and IPE only report checksum offload results.
	RDESC_ERRORS_FRAME = RDESC_ERRORS_CE | RDESC_ERRORS_SE | RDESC_ERRORS_SEQ |
		RDESC_ERRORS_CXE | RDESC_ERRORS_RXE
)

// Addr is the buffer's bus address, written by software.
func (d RxDesc) Addr() uint64 { return binary.LittleEndian.Uint64(d[rxAddrOff:]) }

// Length is the number of bytes the device stored in the buffer.
func (d RxDesc) Length() uint16 { return binary.LittleEndian.Uint16(d[rxLengthOff:]) }

// Checksum is the unadjusted 16-bit ones' complement packet checksum (3.2.3).
func (d RxDesc) Checksum() uint16 { return binary.LittleEndian.Uint16(d[rxChecksumOff:]) }

// Status is the RDESC.STATUS byte.
func (d RxDesc) Status() uint8 { return d[rxStatusOff] }

// Errors is the RDESC.ERRORS byte.
func (d RxDesc) Errors() uint8 { return d[rxErrorsOff] }

// Special is the 802.1Q tag when Status has VP.
func (d RxDesc) Special() uint16 { return binary.LittleEndian.Uint16(d[rxSpecialOff:]) }

// SetAddr sets the buffer address and clears every field the device writes
// back, as software must before handing a descriptor over (3.2.3: "software
// should clear the status byte").
func (d RxDesc) SetAddr(addr uint64) {
	binary.LittleEndian.PutUint64(d[rxAddrOff:], addr)
	clear(d[rxLengthOff:DescSize])
}

// SetWriteBack stores length, status and errors as the device does (used by
// the device model).
func (d RxDesc) SetWriteBack(length uint16, status, errors uint8) {
	binary.LittleEndian.PutUint16(d[rxLengthOff:], length)
	d[rxStatusOff] = status
	d[rxErrorsOff] = errors
}

// TxDesc is a legacy transmit descriptor (3.3.3, Figure 3-8):
//
//	 63          48 47    40 39   36 35   32 31    24 23    16 15             0
//	+--------------------------------------------------------------------------+
//	|                        Buffer Address [63:0]                             |
//	+--------------+--------+-------+-------+--------+--------+----------------+
//	|   Special    |  CSS   |  RSV  |  STA  |  CMD   |  CSO   |     Length     |
//	+--------------+--------+-------+-------+--------+--------+----------------+
type TxDesc []byte

const (
	txAddrOff    = 0
	txLengthOff  = 8
	txCSOOff     = 10
	txCMDOff     = 11
	txSTAOff     = 12
	txCSSOff     = 13
	txSpecialOff = 14
)

// TDESC.CMD bits of legacy descriptors and TDESC.DCMD bits of data
// descriptors (3.3.3.1 Table 3-10, 3.3.7.1 Table 3-14).
const (
	TDESC_CMD_EOP  uint8 = 1 << 0 // end of packet
	TDESC_CMD_IFCS uint8 = 1 << 1 // insert FCS
	TDESC_CMD_IC   uint8 = 1 << 2 // insert checksum (legacy only)
	TDESC_DCMD_TSE uint8 = 1 << 2 // TCP segmentation enable (data descriptor)
	TDESC_CMD_RS   uint8 = 1 << 3 // report status
	TDESC_CMD_RPS  uint8 = 1 << 4 // report packet sent (82544GC/EI only)
	TDESC_CMD_DEXT uint8 = 1 << 5 // extension: 0 = legacy descriptor
	TDESC_CMD_VLE  uint8 = 1 << 6 // VLAN packet enable
	TDESC_CMD_IDE  uint8 = 1 << 7 // interrupt delay enable
)

// TDESC.STA bits (3.3.3.2, Table 3-11).
const (
	TDESC_STA_DD uint8 = 1 << 0 // descriptor done
	TDESC_STA_EC uint8 = 1 << 1 // excess collisions
	TDESC_STA_LC uint8 = 1 << 2 // late collision
	TDESC_STA_TU uint8 = 1 << 3 // transmit underrun (82544GC/EI only)
)

// MaxTxLength is the largest buffer one legacy descriptor can carry (3.3.3:
// "the maximum length is 16288 bytes").
const MaxTxLength = 16288

// Addr is the buffer's bus address.
func (d TxDesc) Addr() uint64 { return binary.LittleEndian.Uint64(d[txAddrOff:]) }

// Length is the number of bytes to send from the buffer.
func (d TxDesc) Length() uint16 { return binary.LittleEndian.Uint16(d[txLengthOff:]) }

// CSO is the checksum offset (legacy IC).
func (d TxDesc) CSO() uint8 { return d[txCSOOff] }

// CMD is the TDESC.CMD byte.
func (d TxDesc) CMD() uint8 { return d[txCMDOff] }

// STA is the TDESC.STA nibble.
func (d TxDesc) STA() uint8 { return d[txSTAOff] & 0x0F }

// CSS is the checksum start (legacy IC).
func (d TxDesc) CSS() uint8 { return d[txCSSOff] }

// Special is the 802.1Q tag inserted when CMD has VLE.
func (d TxDesc) Special() uint16 { return binary.LittleEndian.Uint16(d[txSpecialOff:]) }

// Set fills a legacy descriptor for one buffer; STA (and so DD) is cleared.
func (d TxDesc) Set(addr uint64, length uint16, cmd uint8) {
	binary.LittleEndian.PutUint64(d[txAddrOff:], addr)
	binary.LittleEndian.PutUint16(d[txLengthOff:], length)
	d[txCSOOff] = 0
	d[txCMDOff] = cmd &^ TDESC_CMD_DEXT
	d[txSTAOff] = 0
	d[txCSSOff] = 0
	binary.LittleEndian.PutUint16(d[txSpecialOff:], 0)
}

// SetSTA stores the status nibble as the device does on write-back (used by
// the device model); the reserved nibble is left alone.
func (d TxDesc) SetSTA(sta uint8) { d[txSTAOff] = d[txSTAOff]&0xF0 | sta&0x0F }

// IsExtended reports whether the descriptor is a context or data descriptor
// (DEXT set, 3.3.5) rather than a legacy one.
func (d TxDesc) IsExtended() bool { return d[txCMDOff]&TDESC_CMD_DEXT != 0 }

// Extended descriptor types in the DTYP field (3.3.5; bits 23:20 of the
// second quadword).
const (
	DTYP_CONTEXT uint8 = 0x0 // TCP/IP context descriptor (3.3.6)
	DTYP_DATA    uint8 = 0x1 // TCP/IP data descriptor (3.3.7)
)

// DTYP returns the extended descriptor type (meaningful when IsExtended).
func (d TxDesc) DTYP() uint8 { return d[txCSOOff] >> 4 }

// TxContextDesc is a TCP/IP context descriptor (3.3.6, Figure 3-10). It sets
// up checksum offload and TSO for the data descriptors that follow.
//
//	 63      48 47      40 39      32 31      24 23      16 15       8 7       0
//	+----------+----------+----------+----------+----------+---------+---------+
//	|  TUCSE   |  TUCSO   |  TUCSS   |      IPCSE          |  IPCSO  |  IPCSS  |
//	+----------+----------+----------+----------+----------+---------+---------+
//	|   MSS    |  HDRLEN  | RSV|STA  |  TUCMD   |DTYP|      PAYLEN            |
//	+----------+----------+----------+----------+----------+---------+---------+
type TxContextDesc []byte

const (
	ctxIPCSSOff  = 0
	ctxIPCSOOff  = 1
	ctxIPCSEOff  = 2
	ctxTUCSSOff  = 4
	ctxTUCSOOff  = 5
	ctxTUCSEOff  = 6
	ctxPAYLENOff = 8 // 32-bit word: PAYLEN 19:0, DTYP 23:20, TUCMD 31:24
	ctxSTAOff    = 12
	ctxHDRLENOff = 13
	ctxMSSOff    = 14
)

// TUCMD bits of a context descriptor (3.3.6.1, Table 3-12).
const (
	TDESC_TUCMD_TCP  uint8 = 1 << 0 // 1 = TCP, 0 = UDP
	TDESC_TUCMD_IP   uint8 = 1 << 1 // 1 = IPv4, 0 = IPv6
	TDESC_TUCMD_TSE  uint8 = 1 << 2 // TCP segmentation enable
	TDESC_TUCMD_RS   uint8 = 1 << 3 // report status
	TDESC_TUCMD_DEXT uint8 = 1 << 5 // must be 1
	TDESC_TUCMD_IDE  uint8 = 1 << 7 // interrupt delay enable
)

// TxContext is the decoded content of a context descriptor.
type TxContext struct {
	IPCSS, IPCSO uint8  // IP checksum start and offset
	IPCSE        uint16 // IP checksum end (0: to the end of the packet)
	TUCSS, TUCSO uint8  // TCP/UDP checksum start and offset
	TUCSE        uint16 // TCP/UDP checksum end (0: to the end of the packet)
	PAYLEN       uint32 // TSO payload length, 20 bits
	TUCMD        uint8
	HDRLEN       uint8  // TSO header length
	MSS          uint16 // TSO maximum segment size
}

// Context decodes the descriptor.
func (d TxContextDesc) Context() TxContext {
	w := binary.LittleEndian.Uint32(d[ctxPAYLENOff:])
	return TxContext{
		IPCSS:  d[ctxIPCSSOff],
		IPCSO:  d[ctxIPCSOOff],
		IPCSE:  binary.LittleEndian.Uint16(d[ctxIPCSEOff:]),
		TUCSS:  d[ctxTUCSSOff],
		TUCSO:  d[ctxTUCSOOff],
		TUCSE:  binary.LittleEndian.Uint16(d[ctxTUCSEOff:]),
		PAYLEN: w & 0xFFFFF,
		TUCMD:  uint8(w >> 24),
		HDRLEN: d[ctxHDRLENOff],
		MSS:    binary.LittleEndian.Uint16(d[ctxMSSOff:]),
	}
}

// Set encodes c with DTYP=context and DEXT set; STA is cleared.
func (d TxContextDesc) Set(c TxContext) {
	d[ctxIPCSSOff] = c.IPCSS
	d[ctxIPCSOOff] = c.IPCSO
	binary.LittleEndian.PutUint16(d[ctxIPCSEOff:], c.IPCSE)
	d[ctxTUCSSOff] = c.TUCSS
	d[ctxTUCSOOff] = c.TUCSO
	binary.LittleEndian.PutUint16(d[ctxTUCSEOff:], c.TUCSE)
	w := c.PAYLEN&0xFFFFF | uint32(DTYP_CONTEXT)<<20 | uint32(c.TUCMD|TDESC_TUCMD_DEXT)<<24
	binary.LittleEndian.PutUint32(d[ctxPAYLENOff:], w)
	d[ctxSTAOff] = 0
	d[ctxHDRLENOff] = c.HDRLEN
	binary.LittleEndian.PutUint16(d[ctxMSSOff:], c.MSS)
}

// STA is the status nibble (DD when RS was set).
func (d TxContextDesc) STA() uint8 { return d[ctxSTAOff] & 0x0F }

// TxDataDesc is a TCP/IP data descriptor (3.3.7, Figure 3-11).
//
//	 63          48 47    40 39   36 35   32 31    24 23  20 19               0
//	+--------------------------------------------------------------------------+
//	|                        Buffer Address [63:0]                             |
//	+--------------+--------+-------+-------+--------+------+------------------+
//	|   Special    | POPTS  |  RSV  |  STA  |  DCMD  | DTYP |      DTALEN      |
//	+--------------+--------+-------+-------+--------+------+------------------+
type TxDataDesc []byte

const (
	dataAddrOff    = 0
	dataLenOff     = 8 // 32-bit word: DTALEN 19:0, DTYP 23:20, DCMD 31:24
	dataSTAOff     = 12
	dataPOPTSOff   = 13
	dataSpecialOff = 14
)

// POPTS bits of a data descriptor (3.3.7.2, Table 3-15).
const (
	TDESC_POPTS_IXSM uint8 = 1 << 0 // insert IP checksum
	TDESC_POPTS_TXSM uint8 = 1 << 1 // insert TCP/UDP checksum
)

// Addr is the buffer's bus address.
func (d TxDataDesc) Addr() uint64 { return binary.LittleEndian.Uint64(d[dataAddrOff:]) }

// DTALEN is the data length, 20 bits.
func (d TxDataDesc) DTALEN() uint32 {
	return binary.LittleEndian.Uint32(d[dataLenOff:]) & 0xFFFFF
}

// DCMD is the command byte (TDESC_CMD_* and TDESC_DCMD_TSE).
func (d TxDataDesc) DCMD() uint8 { return d[dataLenOff+3] }

// STA is the status nibble.
func (d TxDataDesc) STA() uint8 { return d[dataSTAOff] & 0x0F }

// POPTS is the packet options byte.
func (d TxDataDesc) POPTS() uint8 { return d[dataPOPTSOff] }

// Set encodes a data descriptor with DTYP=data and DEXT set; STA is cleared.
func (d TxDataDesc) Set(addr uint64, length uint32, dcmd, popts uint8) {
	binary.LittleEndian.PutUint64(d[dataAddrOff:], addr)
	w := length&0xFFFFF | uint32(DTYP_DATA)<<20 | uint32(dcmd|TDESC_CMD_DEXT)<<24
	binary.LittleEndian.PutUint32(d[dataLenOff:], w)
	d[dataSTAOff] = 0
	d[dataPOPTSOff] = popts
	binary.LittleEndian.PutUint16(d[dataSpecialOff:], 0)
}
