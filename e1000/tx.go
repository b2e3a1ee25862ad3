package e1000

import (
	"fmt"

	"keepnet/drivers/netdev"
)

// Transmit queues the first n bytes of b as one frame (a legacy descriptor
// with EOP, IFCS and RS; 3.3.3). It returns false when the ring is full. The
// device sees it at the next FlushTX. b comes back through PollTX once sent.
//
// Every descriptor asks for status (RS), so each completion is visible on its
// own and PollTX can return buffers one by one; TDESC.CMD.IDE is never set,
// so completions are not delayed beyond ITR.
func (d *Dev) Transmit(b netdev.Buffer, n int) bool {
	if n <= 0 || n > len(b.Mem) || n > MaxTxLength {
		panic(fmt.Sprintf("e1000: Transmit: length %d of a %d-byte buffer (max %d)", n, len(b.Mem), MaxTxLength))
	}
	if d.tx.full() {
		return false
	}
	i := d.tx.tail
	TxDesc(d.tx.desc(i)).Set(b.Addr, uint16(n), TDESC_CMD_EOP|TDESC_CMD_IFCS|TDESC_CMD_RS)
	d.txBufs[i] = txSlot{buf: b, n: n, span: 1}
	d.tx.tail = d.tx.inc(i)
	return true
}

// maxTSO is the most a segmentation request may carry: PAYLEN is 20 bits,
// but the IPv4 total length the request carries is 16.
const maxTSO = 64 << 10

// TransmitOffload queues the first n bytes of b as one frame (or, with
// o.MSS, as the frames TCP segmentation cuts it into) with a context
// descriptor carrying o — unless the device holds that context already
// (Dev.ctx) — and data descriptors of at most MaxTxLength bytes.
// The frame is prepared as netdev.Offload says: the device's checksum
// insertion (3.3.5.1) and segmentation (3.3.6) work that way.
// It returns false when the ring lacks room for all of them. b comes back
// through PollTX once the last descriptor is written back.
func (d *Dev) TransmitOffload(b netdev.Buffer, n int, o netdev.Offload) bool {
	if n <= 0 || n > len(b.Mem) || n > maxTSO+o.HdrLen || o.L3 < 0 || o.L4 <= o.L3 || o.L4 > 255-20 ||
		o.MSS < 0 || (o.MSS > 0 && (o.HdrLen <= o.L4 || o.HdrLen > 255 || n <= o.HdrLen)) || (o.MSS == 0 && n > MaxTxLength) {
		panic(fmt.Sprintf("e1000: TransmitOffload: length %d of a %d-byte buffer, %+v", n, len(b.Mem), o))
	}
	c, popts := offloadContext(n, o)
	load := o.MSS > 0 || !d.ctxLoaded || c != d.ctx
	descs := (n + MaxTxLength - 1) / MaxTxLength
	if load {
		descs++
	}
	if d.TxFree() < descs {
		return false
	}
	dcmd := TDESC_CMD_IFCS
	if o.MSS > 0 {
		dcmd |= TDESC_DCMD_TSE
		d.stats.TxSegmented++
	}
	if o.IPv6 {
		d.stats.TxChecksum6++
	} else {
		d.stats.TxChecksum4++
	}
	first := d.tx.tail
	i := first
	if load {
		TxContextDesc(d.tx.desc(i)).Set(c)
		i = d.tx.inc(i)
		d.ctx, d.ctxLoaded = c, o.MSS == 0
		d.stats.TxContexts++
	}
	for off := 0; off < n; off += MaxTxLength {
		chunk := min(n-off, MaxTxLength)
		cmd := dcmd
		if off+chunk == n {
			cmd |= TDESC_CMD_EOP | TDESC_CMD_RS
		}
		TxDataDesc(d.tx.desc(i)).Set(b.Addr+uint64(off), uint32(chunk), cmd, popts)
		i = d.tx.inc(i)
	}
	d.txBufs[first] = txSlot{buf: b, n: n, span: uint32(descs)}
	d.tx.tail = i
	return true
}

// offloadContext is the context descriptor (3.3.5) for a frame of n bytes
// with the offload o, and the POPTS its data descriptors carry. TUCSS is
// where the TCP or UDP header starts and TUCSO its checksum field (16 bytes
// in for TCP, 6 for UDP); TUCSE 0 sums to the frame's end. Over IPv4
// TUCMD.IP is set and IPCSS..IPCSE is the IPv4 header, whose checksum the
// device inserts at IPCSS+10 for each segment (IXSM, with segmentation
// only: a single frame's header IP checksummed already). Over IPv6
// TUCMD.IP is clear: there is no header checksum to insert, and for
// segmentation the device rewrites the payload length at IPCSS+4.
func offloadContext(n int, o netdev.Offload) (TxContext, uint8) {
	c := TxContext{
		IPCSS: uint8(o.L3), IPCSO: uint8(o.L3 + 10), IPCSE: uint16(o.L4 - 1),
		TUCSS: uint8(o.L4), TUCSO: uint8(o.L4 + 6), TUCMD: TDESC_TUCMD_IP,
	}
	if o.IPv6 {
		c.IPCSO, c.IPCSE, c.TUCMD = 0, 0, 0
	}
	popts := TDESC_POPTS_TXSM
	if o.TCP {
		c.TUCSO, c.TUCMD = uint8(o.L4+16), c.TUCMD|TDESC_TUCMD_TCP
	}
	if o.MSS > 0 {
		c.TUCMD |= TDESC_TUCMD_TSE
		c.PAYLEN, c.HDRLEN, c.MSS = uint32(n-o.HdrLen), uint8(o.HdrLen), uint16(o.MSS)
		if !o.IPv6 {
			popts |= TDESC_POPTS_IXSM
		}
	}
	return c, popts
}

// TxFree is how many more frames Transmit accepts.
func (d *Dev) TxFree() int { return int(d.tx.n - 1 - d.tx.used()) }

// FlushTX starts transmission of the frames queued since the last flush: one
// TDT write (13.4.40) per batch, none when nothing was queued.
func (d *Dev) FlushTX() {
	if d.tx.tail != d.tx.written {
		d.regs.Write32(TDT, d.tx.tail)
		d.tx.written = d.tx.tail
		d.stats.TxTailWrites++
	}
}

// PollTX returns the buffers of frames the device has sent (TDESC.STA.DD,
// 3.3.3.2), in submission order, calling fn with each cookie, and returns
// how many. A frame of several descriptors is done when its last, the one
// that asked for status, is.
func (d *Dev) PollTX(fn func(cookie uint64)) int {
	n := 0
	for d.tx.next != d.tx.written {
		i := d.tx.next
		s := d.txBufs[i]
		last := (i + s.span - 1) % d.tx.n
		if uint8(loadWriteBack(d.tx.desc(last)))&TDESC_STA_DD == 0 {
			break
		}
		d.txBufs[i] = txSlot{}
		d.tx.next = (last + 1) % d.tx.n
		d.stats.TxFrames++
		d.stats.TxBytes += uint64(s.n)
		n++
		fn(s.buf.Cookie)
	}
	return n
}
