package e1000

import (
	"fmt"

	"keepnet/drivers/netdev"
)

// PostRX hands b to the device for one received frame. It returns false when
// the ring is full (one slot always stays empty, so RDH == RDT means no
// buffers). The device sees it at the next FlushRX. b.Mem must hold at least
// Config.RxBufSize bytes: the device writes up to that many (13.4.22).
func (d *Dev) PostRX(b netdev.Buffer) bool {
	if len(b.Mem) < d.cfg.RxBufSize {
		panic(fmt.Sprintf("e1000: PostRX: buffer of %d bytes, the device writes up to %d", len(b.Mem), d.cfg.RxBufSize))
	}
	if d.rx.full() {
		return false
	}
	i := d.rx.tail
	RxDesc(d.rx.desc(i)).SetAddr(b.Addr)
	d.rxBufs[i] = b
	d.rx.tail = d.rx.inc(i)
	return true
}

// RxFree is how many more buffers PostRX accepts.
func (d *Dev) RxFree() int { return int(d.rx.n - 1 - d.rx.used()) }

// FlushRX gives the buffers posted since the last flush to the device: one
// RDT write (13.4.29) per batch, none when nothing was posted. While the
// device holds at least half the ring it waits until rxWriteBatch buffers
// have gathered, as Linux's e1000e does (E1000_RX_BUFFER_WRITE): each
// RDT write is a trip into the device (under QEMU, through its lock and a
// wake-up of its I/O thread), and the device, which fills descriptors in
// ring order, has half a ring to fill before it would reach the ones held
// back. Below half it is told at once; the descriptor-minimum interrupt
// (ICR.RXDMT0, at half the ring: RCTL.RDMTS) wakes the driver to flush
// before it runs dry.
func (d *Dev) FlushRX() {
	waiting := d.rx.unwritten()
	if waiting == 0 || waiting < rxWriteBatch && d.rx.told() >= d.rx.n/2 {
		return
	}
	d.regs.Write32(RDT, d.rx.tail)
	d.rx.written = d.rx.tail
	d.stats.RxTailWrites++
}

// rxWriteBatch is how many posted buffers FlushRX gathers before it writes
// RDT, while the device holds enough (FlushRX).
const rxWriteBatch = 16

// PollRX harvests the descriptors the device has completed (DD set, 3.2.3),
// in ring order, and returns how many buffers it handed back. For each it
// calls fn with the buffer's cookie, the frame (a prefix of the buffer's
// Mem; the CRC is stripped, RCTL.SECRC) and what the device checked of it
// (rxCheck): netdev.RxBad if RDESC.ERRORS has a frame error
// (RDESC_ERRORS_FRAME, counted in Stats.RxErrors) — such frames are handed
// over too, for the caller to drop — and, on a variant that verifies
// checksums (Variant.RxChecksum), the ones it found right. A frame whose
// IPv4 header or TCP/UDP checksum the 82574's RXCSUM found wrong (IPE,
// TCPE) is counted in Stats.RxBadChecksum and handed over unchecked: ip
// and the transports check it themselves and drop it if it is bad. A frame that spanned
// several descriptors (no EOP on the first, which 2048-byte buffers and
// 1518-byte frames never produce) is dropped and counted in
// Stats.RxDropped; its buffers come back with a nil frame.
//
// Every posted buffer comes back exactly once: here, or in Reset's Forgotten.
func (d *Dev) PollRX(fn func(cookie uint64, frame []byte, check netdev.RxCheck)) int {
	n := 0
	for d.rx.next != d.rx.written {
		i := d.rx.next
		desc := d.rx.desc(i)
		wb := loadWriteBack(desc)
		status, errs := uint8(wb), uint8(wb>>8)
		if status&RDESC_STATUS_DD == 0 {
			break
		}
		length := int(RxDesc(desc).Length())
		b := d.rxBufs[i]
		d.rxBufs[i] = netdev.Buffer{}
		d.rx.next = d.rx.inc(i)
		n++

		check := d.rxCheck(status, errs)
		eop := status&RDESC_STATUS_EOP != 0
		switch {
		case !eop:
			d.rxDiscard = true
			fn(b.Cookie, nil, check)
			continue
		case d.rxDiscard:
			d.rxDiscard = false
			d.stats.RxDropped++
			fn(b.Cookie, nil, check)
			continue
		}
		if errs&RDESC_ERRORS_FRAME != 0 {
			d.stats.RxErrors++
		} else {
			d.stats.RxFrames++
			d.stats.RxBytes += uint64(length)
			if errs&(RDESC_ERRORS_IPE|RDESC_ERRORS_TCPE) != 0 {
				d.stats.RxBadChecksum++
			}
			if check&netdev.RxL4Checked != 0 {
				d.stats.RxChecksumGood++
			}
		}
		fn(b.Cookie, b.Mem[:min(length, len(b.Mem))], check)
	}
	return n
}

// rxCheck reads a receive descriptor's status and errors (3.2.3.1, 3.2.3.2):
// a frame error (RDESC_ERRORS_FRAME) makes the frame bad; with none, TCPCS
// (or UDPCS) says the TCP/UDP checksum was verified and IPCS the IPv4
// header's — unless IXSM says to ignore them all, or the variant does not
// verify at all (QEMU's 8254x sets IXSM on every frame; variant.go). A
// checksum error (TCPE, IPE) is counted but the frame goes up unchecked,
// for ip and the transports to judge: QEMU 7.2's e1000e checks an IPv6
// fragment's TCP/UDP checksum as if the fragment were the whole datagram
// (it skips IPv4 fragments only, net_rx_pkt_validate_l4_csum), so good
// fragments come with TCPE, and dropping them here lost every UDP
// datagram fragmented over IPv6.
func (d *Dev) rxCheck(status, errs uint8) netdev.RxCheck {
	switch {
	case errs&RDESC_ERRORS_FRAME != 0:
		return netdev.RxBad
	case errs != 0, !d.v.RxChecksum, status&RDESC_STATUS_IXSM != 0:
		return 0
	}
	var c netdev.RxCheck
	if status&(RDESC_STATUS_TCPCS|RDESC_STATUS_UDPCS) != 0 {
		c |= netdev.RxL4Checked
	}
	if status&RDESC_STATUS_IPCS != 0 {
		c |= netdev.RxIPv4Checked
	}
	return c
}
