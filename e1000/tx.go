package e1000

import "fmt"

// Transmit queues the first n bytes of b as one frame (a legacy descriptor
// with EOP, IFCS and RS; 3.3.3). It returns false when the ring is full. The
// device sees it at the next FlushTX. b comes back through PollTX once sent.
//
// Every descriptor asks for status (RS), so each completion is visible on its
// own and PollTX can return buffers one by one; TDESC.CMD.IDE is never set,
// so completions are not delayed beyond ITR.
func (d *Dev) Transmit(b Buffer, n int) bool {
	if n <= 0 || n > len(b.Mem) || n > MaxTxLength {
		panic(fmt.Sprintf("e1000: Transmit: length %d of a %d-byte buffer (max %d)", n, len(b.Mem), MaxTxLength))
	}
	if d.tx.full() {
		return false
	}
	i := d.tx.tail
	TxDesc(d.tx.desc(i)).Set(b.Addr, uint16(n), TDESC_CMD_EOP|TDESC_CMD_IFCS|TDESC_CMD_RS)
	d.txBufs[i] = txSlot{buf: b, n: n}
	d.tx.tail = d.tx.inc(i)
	return true
}

// TxFree is how many more frames Transmit accepts.
func (d *Dev) TxFree() int { return int(d.tx.n - 1 - d.tx.used()) }

// FlushTX starts transmission of the frames queued since the last flush: one
// TDT write (13.4.40) per batch, none when nothing was queued.
func (d *Dev) FlushTX() {
	if d.tx.tail != d.tx.written {
		d.regs.Write32(TDT, d.tx.tail)
		d.tx.written = d.tx.tail
	}
}

// PollTX returns the buffers of frames the device has sent (TDESC.STA.DD,
// 3.3.3.2), in submission order, calling fn with each cookie, and returns
// how many.
func (d *Dev) PollTX(fn func(cookie uint64)) int {
	n := 0
	for d.tx.next != d.tx.written {
		i := d.tx.next
		if uint8(loadWriteBack(d.tx.desc(i)))&TDESC_STA_DD == 0 {
			break
		}
		s := d.txBufs[i]
		d.txBufs[i] = txSlot{}
		d.tx.next = d.tx.inc(i)
		d.stats.TxFrames++
		d.stats.TxBytes += uint64(s.n)
		n++
		fn(s.buf.Cookie)
	}
	return n
}
