// Package model is a register-level model of the Intel 82540EM (and, with
// Config.Part, the 82574L) for hermetic tests of the e1000 driver: a
// register file (netdev.Regs), descriptor processing, and DMA over a byte
// slice that stands for physical memory (a bus address is an offset into
// it).
//
// By default it behaves like QEMU's e1000 (hw/net/e1000.c) where a driver can
// tell:
//   - a TDT or TCTL write processes descriptors TDH..TDT at once (start_xmit):
//     frames are assembled up to EOP and handed to Wire; DD is written back
//     when RS is set; TDH advances; ICR gets TXDW (and TXQE);
//   - Deliver writes a frame at RDH if RDH != RDT, else counts it in MPC and
//     RNBC and raises RXO; it sets DD|EOP and the length, advances RDH and
//     raises RXT0 (and RXDMT0 below the RCTL.RDMTS threshold);
//   - CTRL.RST only clears itself: rings, RCTL, TCTL, statistics survive;
//   - an RCTL write pauses receive for one second (flush_queue_timer): Deliver
//     refuses frames until Advance has moved the clock past it;
//   - EERD returns EEPROM words (START bit 0, DONE bit 4, 13.4.4);
//   - STATUS.LU follows CTRL.SLU and the cable (SetLink); ICR clears on read;
//     IMS/IMC set and clear the mask; frames are dropped while RCTL.EN or the
//     link is off; MPC and RNBC do not clear on read (unlike 13.7).
//
// With Config.Hardware it behaves like a real part instead where QEMU
// differs: the device prefetches descriptors when the tail moves and uses
// its cached copies (so rewriting descriptor memory does not redirect DMA),
// CTRL.RST is a full reset (registers to power-on values, caches dropped,
// RAL0/RAH0 reloaded from the EEPROM), there is no RCTL pause, and
// statistics clear when read.
//
// With Config.Part = Part82574L it is QEMU 7.2's e1000e (hw/net/e1000e_core.c)
// instead, where it differs from the 82540EM in ways the driver must get
// right:
//   - EERD has START at bit 0, DONE at bit 1 and the address at 15:2;
//   - ICR carries INT_ASSERTED (bit 31) while any cause is set, and a read
//     clears it only when IMS is zero or when INT_ASSERTED and
//     CTRL_EXT.IAME are set, which also clears the IMS bits set in IAM
//     (e1000e_mac_icr_read): a driver that reads ICR with interrupts
//     enabled and no IAME never deasserts the line (Pending stays true);
//   - CTRL.RST reloads RAL0/RAH0 from the EEPROM's address and resets
//     nothing else (QEMU 7.2; Hardware mode: a full reset);
//   - STATUS.GIO_MASTER_ENABLE is set unless CTRL.GIO_MASTER_DISABLE is;
//     EECD.AUTO_RD is set;
//   - a TDT or TCTL write sends nothing unless TARC0.ENABLE is set;
//   - with RFCTL.EXTEN set receive descriptors are written back in the
//     extended format (status and errors in bytes 8-11, length in 12-13),
//     which a legacy-descriptor driver misreads;
//   - with RXCSUM.IPOFLD/TUOFLD (both set at power-on) a received IPv4
//     frame's header and TCP/UDP checksums, and an IPv6 frame's TCP/UDP
//     checksum (no extension headers), are checked: IPCS, TCPCS, UDPCS
//     in the status, IPE, TCPE in the errors (never IXSM); without
//     either, no checksum bit at all;
//   - a transmitted checksum that sums to zero stays zero (the 8254x
//     writes 0xFFFF);
//   - an RCTL write does not pause receive.
//
// The model is safe for concurrent use; DMA into descriptor rings publishes
// the status word with an atomic store, as the driver expects.
package model

import (
	"encoding/binary"
	"hash/crc32"
	"sync"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/e1000"
)

// Config parameterises a Model.
type Config struct {
	// MAC is the station address in the EEPROM (and in RAL0/RAH0 after reset).
	MAC [6]byte
	// Mem is physical memory: a bus address is an offset into it.
	Mem []byte
	// Wire receives every transmitted frame (without FCS). It is called with
	// the model's lock held; it must not call back into the model.
	Wire func(frame []byte)
	// Hardware selects real-part behaviour (descriptor caching, full reset,
	// clear-on-read statistics, no RCTL pause) instead of QEMU's.
	Hardware bool
	// HoldTX queues transmit work on TDT writes without processing it;
	// StepTX processes it. It stands for a device that is still sending.
	HoldTX bool
	// NoEERD makes EERD never report DONE, as on parts with another EERD
	// layout or none (the driver must fall back to RAL0/RAH0).
	NoEERD bool
	// NoRA leaves RAL0/RAH0 empty at reset, as a part whose NVM does not
	// load them: the driver gets the address only through EERD.
	NoRA bool
	// Part is the part modelled: the 82540EM (zero) or the 82574L.
	Part Part
}

// Part is a part the model can be.
type Part int

// Parts.
const (
	Part82540EM Part = iota // QEMU's e1000
	Part82574L              // QEMU's e1000e
)

// rctlPause is how long QEMU refuses frames after an RCTL write.
const rctlPause = time.Second

// Model is an 82540EM or an 82574L (Config.Part).
type Model struct {
	mu  sync.Mutex // guards everything below and DMA into Mem
	cfg Config

	regs   [0x20000 / 4]uint32
	eeprom [64]uint16
	cable  bool // link partner present

	now         time.Duration // model clock, moved by Advance
	rxPauseEnds time.Duration
	// rxJammed makes Deliver drop every frame into MPC (JamRX).
	rxJammed bool

	// Hardware mode descriptor caches: ring index -> descriptor copy,
	// filled when the tail moves.
	rxCache map[uint32][e1000.DescSize]byte
	txCache map[uint32][e1000.DescSize]byte

	txFrame []byte // frame being assembled across descriptors
	// The last context descriptors, with and without TSE (QEMU keeps
	// both), and the offloads the frame being assembled asked for (the
	// POPTS of its first data descriptor, and DCMD.TSE).
	txCtx, tsoCtx e1000.TxContext
	txPOPTS       uint8
	txTSE, txData bool
	writes        map[uint32]int
	// eepromReads counts EEPROM words EERD returned with DONE.
	eepromReads int
}

var _ netdev.Regs = (*Model)(nil)

// New returns a model after power-on reset, cable plugged in.
func New(cfg Config) *Model {
	m := &Model{cfg: cfg, cable: true, writes: map[uint32]int{}}
	for i := range 3 {
		m.eeprom[i] = uint16(cfg.MAC[2*i]) | uint16(cfg.MAC[2*i+1])<<8
	}
	m.powerOn()
	return m
}

// powerOn sets the registers a driver can observe to their reset values
// (and QEMU's mac_reg_init): link set up, RAL0/RAH0 from the EEPROM.
func (m *Model) powerOn() {
	clear(m.regs[:])
	m.reg(e1000.CTRL, e1000.CTRL_SLU|e1000.CTRL_FD)
	m.updateStatus()
	m.reloadRA()
	if m.e1000e() {
		// e1000e_mac_reg_init: the queue enabled, checksum offload on.
		m.reg(e1000.TARC0, 0x3|e1000.TARC0_ENABLE)
		m.reg(e1000.RXCSUM, e1000.RXCSUM_IPOFLD|e1000.RXCSUM_TUOFLD)
		m.reg(e1000.EECD, e1000.EECD_AUTO_RD)
	}
	m.rxCache = map[uint32][e1000.DescSize]byte{}
	m.txCache = map[uint32][e1000.DescSize]byte{}
	m.txFrame = nil
}

func (m *Model) e1000e() bool { return m.cfg.Part == Part82574L }

func (m *Model) reg(off, v uint32) { m.regs[off/4] = v }
func (m *Model) get(off uint32) uint32 {
	return m.regs[off/4]
}

func (m *Model) updateStatus() {
	st := m.get(e1000.STATUS) &^ e1000.STATUS_LU
	if m.cable && m.get(e1000.CTRL)&e1000.CTRL_SLU != 0 {
		st |= e1000.STATUS_LU | e1000.STATUS_FD
	}
	if m.e1000e() {
		st &^= e1000.STATUS_GIO_MASTER_ENABLE
		if m.get(e1000.CTRL)&e1000.CTRL_GIO_MASTER_DISABLE == 0 {
			st |= e1000.STATUS_GIO_MASTER_ENABLE
		}
	}
	m.reg(e1000.STATUS, st)
}

// reloadRA is QEMU's e1000x_reset_mac_addr: RAL0/RAH0 from the permanent
// address.
func (m *Model) reloadRA() {
	if m.cfg.NoRA {
		m.reg(e1000.RAL0, 0)
		m.reg(e1000.RAH0, 0)
		return
	}
	mac := m.cfg.MAC
	m.reg(e1000.RAL0, uint32(mac[0])|uint32(mac[1])<<8|uint32(mac[2])<<16|uint32(mac[3])<<24)
	m.reg(e1000.RAH0, uint32(mac[4])|uint32(mac[5])<<8|e1000.RAH_AV)
}

// Read32 reads a register, with the side effects of ICR (clear on read),
// EERD and, in Hardware mode, the statistics (clear on read).
func (m *Model) Read32(off uint32) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch off {
	case e1000.ICR:
		v := m.get(e1000.ICR)
		if m.e1000e() {
			m.icrRead82574()
			return v
		}
		m.reg(e1000.ICR, 0)
		return v
	case e1000.EERD:
		v := m.get(e1000.EERD)
		if m.e1000e() {
			return v // computed when written (e1000e_set_eerd)
		}
		if v&e1000.EERD_START == 0 || m.cfg.NoEERD {
			return v &^ e1000.EERD_DONE
		}
		addr := v >> e1000.EERD_ADDR_SHIFT & 0xFF
		data := uint32(0)
		if int(addr) < len(m.eeprom) {
			data = uint32(m.eeprom[addr])
		}
		m.eepromReads++
		return v&0xFFFF | e1000.EERD_DONE | data<<e1000.EERD_DATA_SHIFT
	case e1000.MPC, e1000.RNBC, e1000.GPRC, e1000.GPTC:
		v := m.get(off)
		if m.cfg.Hardware {
			m.reg(off, 0)
		}
		return v
	}
	return m.get(off)
}

// Write32 writes a register, with the side effects the driver relies on.
func (m *Model) Write32(off, val uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes[off]++
	switch off {
	case e1000.CTRL:
		if val&e1000.CTRL_RST != 0 {
			m.rxJammed = false // a reset cures a wedged receive unit
		}
		if val&e1000.CTRL_RST != 0 && m.cfg.Hardware {
			m.powerOn()
			return
		}
		m.reg(off, val&^e1000.CTRL_RST) // QEMU: RST is self-clearing, nothing else
		if val&e1000.CTRL_RST != 0 && m.e1000e() {
			m.reloadRA() // ... but for the address, on the e1000e
		}
		m.updateStatus()
	case e1000.ICR:
		if m.e1000e() && m.get(e1000.ICR)&e1000.ICR_ASSERTED != 0 && m.get(e1000.CTRL_EXT)&e1000.CTRL_EXT_IAME != 0 {
			m.reg(e1000.IMS, m.get(e1000.IMS)&^m.get(e1000.IAM)) // e1000e_set_icr
		}
		m.setICR(m.get(off) &^ val) // write 1 to clear
	case e1000.ICS:
		m.cause(val)
	case e1000.IMS:
		m.reg(e1000.IMS, m.get(e1000.IMS)|val)
	case e1000.IMC:
		m.reg(e1000.IMS, m.get(e1000.IMS)&^val)
	case e1000.RCTL:
		m.reg(off, val)
		if !m.cfg.Hardware && !m.e1000e() {
			m.rxPauseEnds = m.now + rctlPause
		}
	case e1000.RDLEN, e1000.TDLEN:
		m.reg(off, val&0xFFF80)
	case e1000.RDH, e1000.TDH:
		m.reg(off, val&0xFFFF)
	case e1000.RDT:
		m.reg(off, val&0xFFFF)
		m.prefetchRX()
	case e1000.CTRL_EXT:
		m.reg(off, val)
		m.updateStatus()
	case e1000.EERD:
		if !m.e1000e() {
			m.reg(off, val)
			break
		}
		// e1000e_set_eerd: the word is read at once; DONE only for a
		// word the EEPROM has.
		addr := val >> e1000.EERD_82574_ADDR_SHIFT & 0x3FFF
		v := addr << e1000.EERD_82574_ADDR_SHIFT
		if val&e1000.EERD_START != 0 && int(addr) < len(m.eeprom) && !m.cfg.NoEERD {
			v |= e1000.EERD_82574_DONE | uint32(m.eeprom[addr])<<e1000.EERD_DATA_SHIFT
			m.eepromReads++
		}
		m.reg(off, v)
	case e1000.TDT, e1000.TCTL:
		m.reg(off, val)
		if off == e1000.TDT {
			m.reg(off, val&0xFFFF)
		}
		m.prefetchTX()
		if !m.cfg.HoldTX {
			m.processTX(-1)
		}
	case e1000.STATUS, e1000.MPC, e1000.RNBC, e1000.GPRC, e1000.GPTC:
		// read-only
	default:
		m.reg(off, val)
	}
}

// Peek returns a register without read side effects.
func (m *Model) Peek(off uint32) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.get(off)
}

// Writes returns how many times off was written.
func (m *Model) Writes(off uint32) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes[off]
}

// SetLink plugs (true) or unplugs the cable; a change raises ICR.LSC.
func (m *Model) SetLink(up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before := m.get(e1000.STATUS)
	m.cable = up
	m.updateStatus()
	if m.get(e1000.STATUS) != before {
		m.cause(e1000.ICR_LSC)
	}
}

// Advance moves the model's clock (QEMU's RCTL pause).
func (m *Model) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now += d
}

func (m *Model) cause(c uint32) { m.setICR(m.get(e1000.ICR) | c) }

// setICR stores the causes; the e1000e adds INT_ASSERTED while any is set
// (e1000e_fix_icr_asserted).
func (m *Model) setICR(v uint32) {
	if m.e1000e() {
		v &^= e1000.ICR_ASSERTED
		if v != 0 {
			v |= e1000.ICR_ASSERTED
		}
	}
	m.reg(e1000.ICR, v)
}

// icrRead82574 is the side effect of reading ICR on QEMU 7.2's e1000e
// (e1000e_mac_icr_read): cleared when IMS is zero; cleared, and the IAM bits
// of IMS masked, when INT_ASSERTED and CTRL_EXT.IAME are set; else kept.
func (m *Model) icrRead82574() {
	if m.get(e1000.IMS) == 0 {
		m.reg(e1000.ICR, 0)
	}
	if m.get(e1000.ICR)&e1000.ICR_ASSERTED != 0 && m.get(e1000.CTRL_EXT)&e1000.CTRL_EXT_IAME != 0 {
		m.reg(e1000.ICR, 0)
		m.reg(e1000.IMS, m.get(e1000.IMS)&^m.get(e1000.IAM))
	}
}

// EEPROMReads is how many EEPROM words EERD has returned with DONE (on the
// 82574L: has read on a START).
func (m *Model) EEPROMReads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.eepromReads
}

// Pending reports whether an interrupt is asserted (ICR & IMS != 0).
func (m *Model) Pending() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.get(e1000.ICR)&m.get(e1000.IMS)&^e1000.ICR_ASSERTED != 0
}

func ringBase(lo, hi uint32) uint64 { return uint64(hi)<<32 | uint64(lo&^0xF) }

// dma returns Mem[addr:addr+n], or nil when it is outside memory (a real bus
// would master-abort; the model drops the access).
func (m *Model) dma(addr uint64, n int) []byte {
	if addr > uint64(len(m.cfg.Mem)) || uint64(n) > uint64(len(m.cfg.Mem))-addr {
		return nil
	}
	return m.cfg.Mem[addr : addr+uint64(n)]
}

func (m *Model) ringLen(lenReg uint32) uint32 { return m.get(lenReg) / e1000.DescSize }

// prefetchRX caches RX descriptors RDH..RDT (Hardware mode).
func (m *Model) prefetchRX() {
	if !m.cfg.Hardware {
		return
	}
	n := m.ringLen(e1000.RDLEN)
	base := ringBase(m.get(e1000.RDBAL), m.get(e1000.RDBAH))
	for i := m.get(e1000.RDH); n > 0 && i != m.get(e1000.RDT); i = (i + 1) % n {
		if _, ok := m.rxCache[i]; ok {
			continue
		}
		if d := m.dma(base+uint64(i)*e1000.DescSize, e1000.DescSize); d != nil {
			m.rxCache[i] = [e1000.DescSize]byte(d)
		}
	}
}

// prefetchTX caches TX descriptors TDH..TDT (Hardware mode).
func (m *Model) prefetchTX() {
	if !m.cfg.Hardware || m.get(e1000.TCTL)&e1000.TCTL_EN == 0 {
		return
	}
	n := m.ringLen(e1000.TDLEN)
	base := ringBase(m.get(e1000.TDBAL), m.get(e1000.TDBAH))
	for i := m.get(e1000.TDH); n > 0 && i != m.get(e1000.TDT); i = (i + 1) % n {
		if _, ok := m.txCache[i]; ok {
			continue
		}
		if d := m.dma(base+uint64(i)*e1000.DescSize, e1000.DescSize); d != nil {
			m.txCache[i] = [e1000.DescSize]byte(d)
		}
	}
}

// fetch returns descriptor i of a ring: the cached copy in Hardware mode if
// there is one (and drops it from the cache), else the memory.
func (m *Model) fetch(cache map[uint32][e1000.DescSize]byte, base uint64, i uint32) ([]byte, bool) {
	mem := m.dma(base+uint64(i)*e1000.DescSize, e1000.DescSize)
	if c, ok := cache[i]; ok && m.cfg.Hardware {
		delete(cache, i)
		cp := c
		return cp[:], mem != nil
	}
	if mem == nil {
		return nil, false
	}
	cp := [e1000.DescSize]byte(mem)
	return cp[:], true
}

// StepTX processes up to max pending transmit descriptors (all when max < 0)
// and returns how many. With HoldTX it is the only way frames leave.
func (m *Model) StepTX(max int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.processTX(max)
}

func (m *Model) processTX(max int) int {
	if m.get(e1000.TCTL)&e1000.TCTL_EN == 0 {
		return 0
	}
	if m.e1000e() && m.get(e1000.TARC0)&e1000.TARC0_ENABLE == 0 {
		return 0 // e1000e_set_tdt, e1000e_set_tctl: queue 0 not enabled
	}
	n := m.ringLen(e1000.TDLEN)
	if n == 0 {
		return 0
	}
	base := ringBase(m.get(e1000.TDBAL), m.get(e1000.TDBAH))
	done := 0
	cause := uint32(0)
	for m.get(e1000.TDH) != m.get(e1000.TDT) && (max < 0 || done < max) {
		h := m.get(e1000.TDH)
		if h >= n {
			break // bogus TDH, as QEMU's "TDH wraparound" guard
		}
		desc, ok := m.fetch(m.txCache, base, h)
		if !ok {
			break
		}
		m.txDescriptor(desc)
		if cmd := e1000.TxDesc(desc).CMD(); cmd&e1000.TDESC_CMD_RS != 0 {
			if mem := m.dma(base+uint64(h)*e1000.DescSize, e1000.DescSize); mem != nil {
				e1000.PublishWriteBack(mem, e1000.TDESC_STA_DD)
			}
			cause |= e1000.ICR_TXDW
		}
		m.reg(e1000.TDH, (h+1)%n)
		done++
	}
	if m.get(e1000.TDH) == m.get(e1000.TDT) {
		cause |= e1000.ICR_TXQE
	}
	m.cause(cause)
	return done
}

// txDescriptor consumes one descriptor: context descriptors carry no data;
// legacy and data descriptors append their buffer; EOP sends the frame.
func (m *Model) txDescriptor(desc []byte) {
	var addr uint64
	var length int
	var cmd uint8
	t := e1000.TxDesc(desc)
	switch {
	case !t.IsExtended():
		addr, length, cmd = t.Addr(), int(t.Length()), t.CMD()
		m.txData = false
	case t.DTYP() == e1000.DTYP_DATA:
		dd := e1000.TxDataDesc(desc)
		addr, length, cmd = dd.Addr(), int(dd.DTALEN()), dd.DCMD()
		if !m.txData { // the packet's first data descriptor sets its options
			m.txPOPTS, m.txTSE, m.txData = dd.POPTS(), cmd&e1000.TDESC_DCMD_TSE != 0, true
		}
	default:
		c := e1000.TxContextDesc(desc).Context()
		if c.TUCMD&e1000.TDESC_TUCMD_TSE != 0 {
			m.tsoCtx = c
		} else {
			m.txCtx = c
		}
		return
	}
	if b := m.dma(addr, length); b != nil {
		m.txFrame = append(m.txFrame, b...)
	}
	if cmd&e1000.TDESC_CMD_EOP == 0 {
		return
	}
	frame := m.txFrame
	m.txFrame = nil
	data := m.txData
	m.txData = false
	switch {
	case data && m.txTSE:
		for _, seg := range segment(frame, m.tsoCtx, m.txPOPTS, !m.e1000e()) {
			m.send(seg)
		}
	case data:
		insertChecksums(frame, m.txCtx, m.txPOPTS, !m.e1000e())
		m.send(frame)
	default:
		m.send(frame)
	}
}

func (m *Model) send(frame []byte) {
	if m.get(e1000.TCTL)&e1000.TCTL_PSP != 0 && len(frame) < 60 {
		frame = append(frame, make([]byte, 60-len(frame))...) // 13.4.33 PSP
	}
	m.inc(e1000.GPTC)
	if m.cfg.Wire != nil {
		m.cfg.Wire(frame)
	}
}

// segment is TCP segmentation (3.5): the payload after HDRLEN bytes is cut
// into MSS-sized pieces, each behind a copy of the header with the IPv4
// total length and identification, the TCP sequence number and flags, and
// the checksums fixed up. The TCP checksum field comes holding the
// pseudo-header sum without the length; each segment's length is added.
func segment(frame []byte, c e1000.TxContext, popts uint8, nonZero bool) [][]byte {
	hdr, mss := int(c.HDRLEN), int(c.MSS)
	if hdr >= len(frame) || mss == 0 || int(c.TUCSS)+20 > hdr {
		return nil // malformed: QEMU would send garbage; the model sends nothing
	}
	var segs [][]byte
	payload := frame[hdr:]
	for k, off := 0, 0; off < len(payload); k, off = k+1, off+mss {
		end := min(off+mss, len(payload))
		seg := append(append([]byte(nil), frame[:hdr]...), payload[off:end]...)
		ip, tcp := int(c.IPCSS), int(c.TUCSS)
		binary.BigEndian.PutUint16(seg[ip+2:], uint16(len(seg)-ip))
		binary.BigEndian.PutUint16(seg[ip+4:], binary.BigEndian.Uint16(seg[ip+4:])+uint16(k))
		binary.BigEndian.PutUint32(seg[tcp+4:], binary.BigEndian.Uint32(seg[tcp+4:])+uint32(off))
		if end < len(payload) {
			seg[tcp+13] &^= 0x09 // PSH and FIN only on the last segment
		}
		if popts&e1000.TDESC_POPTS_TXSM != 0 {
			so := int(c.TUCSO)
			sum := uint32(binary.BigEndian.Uint16(seg[so:])) + uint32(len(seg)-tcp)
			binary.BigEndian.PutUint16(seg[so:], uint16(sum>>16+sum&0xFFFF))
		}
		insertChecksums(seg, c, popts, nonZero)
		segs = append(segs, seg)
	}
	return segs
}

// insertChecksums does what POPTS asks (3.3.7.2): each checksum is the
// one's complement of the sum from its start (CSS) to its end (CSE, 0: the
// frame's end), the field at CSO included as it came. With nonZero a
// checksum that comes out zero is written 0xFFFF, as QEMU's e1000 does
// (putsum's net_checksum_finish_nozero); its e1000e writes the zero.
func insertChecksums(frame []byte, c e1000.TxContext, popts uint8, nonZero bool) {
	if popts&e1000.TDESC_POPTS_TXSM != 0 {
		putChecksum(frame, int(c.TUCSS), int(c.TUCSO), int(c.TUCSE), nonZero)
	}
	if popts&e1000.TDESC_POPTS_IXSM != 0 {
		putChecksum(frame, int(c.IPCSS), int(c.IPCSO), int(c.IPCSE), nonZero)
	}
}

func putChecksum(frame []byte, css, cso, cse int, nonZero bool) {
	end := len(frame)
	if cse != 0 && cse+1 < end {
		end = cse + 1
	}
	if css >= end || cso+2 > end {
		return
	}
	var sum uint32
	b := frame[css:end]
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xFFFF {
		sum = sum>>16 + sum&0xFFFF
	}
	c := ^uint16(sum)
	if c == 0 && nonZero {
		c = 0xFFFF
	}
	binary.BigEndian.PutUint16(frame[cso:], c)
}

func (m *Model) inc(off uint32) {
	if v := m.get(off); v != ^uint32(0) {
		m.reg(off, v+1)
	}
}

// JamRX wedges the receive side as a part whose receive DMA hangs: every
// frame is dropped and counted in MPC, descriptors or not, until a global
// reset (CTRL.RST) clears it.
func (m *Model) JamRX() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rxJammed = true
}

// Deliver offers a frame from the wire (without FCS). It returns whether the
// device accepted it into host memory; see the package doc for why not.
func (m *Model) Deliver(frame []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	rctl := m.get(e1000.RCTL)
	if m.get(e1000.STATUS)&e1000.STATUS_LU == 0 || rctl&e1000.RCTL_EN == 0 {
		return false
	}
	if m.now < m.rxPauseEnds {
		return false // QEMU: the frame waits in the net queue
	}
	if m.rxJammed {
		m.inc(e1000.MPC)
		m.cause(e1000.ICR_RXO)
		return false
	}
	if len(frame) < 14 || !m.accept(frame, rctl) {
		return false
	}
	if len(frame) < 60 {
		frame = append(frame[:len(frame):len(frame)], make([]byte, 60-len(frame))...)
	}
	if len(frame) > 1522 && rctl&e1000.RCTL_LPE == 0 {
		return false // oversized (QEMU counts ROC)
	}
	data := frame
	if rctl&e1000.RCTL_SECRC == 0 {
		data = binary.LittleEndian.AppendUint32(frame[:len(frame):len(frame)], crc32.ChecksumIEEE(frame))
	}
	bufSize := rxBufSize(rctl)
	n := m.ringLen(e1000.RDLEN)
	h, t := m.get(e1000.RDH), m.get(e1000.RDT)
	if n == 0 || h >= n || t >= n {
		return false
	}
	avail := int((t - h + n) % n)
	if need := (len(data) + bufSize - 1) / bufSize; avail < need {
		m.inc(e1000.MPC)
		m.inc(e1000.RNBC)
		m.cause(e1000.ICR_RXO)
		return false
	}
	base := ringBase(m.get(e1000.RDBAL), m.get(e1000.RDBAH))
	for off := 0; off < len(data); {
		h := m.get(e1000.RDH)
		desc, ok := m.fetch(m.rxCache, base, h)
		mem := m.dma(base+uint64(h)*e1000.DescSize, e1000.DescSize)
		if !ok || mem == nil {
			return false
		}
		chunk := min(bufSize, len(data)-off)
		if addr := e1000.RxDesc(desc).Addr(); addr != 0 { // null buffers are skipped (QEMU)
			if b := m.dma(addr, chunk); b != nil {
				copy(b, data[off:off+chunk])
			}
		}
		off += chunk
		status, errs := e1000.RDESC_STATUS_DD, uint8(0)
		if off == len(data) {
			status |= e1000.RDESC_STATUS_EOP | e1000.RDESC_STATUS_IXSM
			if m.e1000e() {
				status, errs = m.rxChecksum(frame)
				status |= e1000.RDESC_STATUS_DD | e1000.RDESC_STATUS_EOP
			}
		}
		if m.e1000e() && m.get(e1000.RFCTL)&e1000.RFCTL_EXTEN != 0 {
			writeBackExtended(mem, uint16(chunk), status, errs)
		} else {
			e1000.RxDesc(mem).SetWriteBack(uint16(chunk), 0, errs)
			e1000.PublishWriteBack(mem, status)
		}
		m.reg(e1000.RDH, (h+1)%n)
	}
	m.inc(e1000.GPRC)
	cause := e1000.ICR_RXT0
	h, t = m.get(e1000.RDH), m.get(e1000.RDT)
	free := (t - h + n) % n
	shift := (rctl&e1000.RCTL_RDMTS_MASK)>>8 + 1
	if free*e1000.DescSize <= m.get(e1000.RDLEN)>>shift {
		cause |= e1000.ICR_RXDMT0
	}
	m.cause(cause)
	return true
}

// accept is the receive address filter (QEMU's e1000x_rx_group_filter; 13.5).
func (m *Model) accept(frame []byte, rctl uint32) bool {
	dst := frame[:6]
	switch {
	case [6]byte(dst) == [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}:
		return rctl&e1000.RCTL_BAM != 0
	case dst[0]&1 != 0:
		if rctl&e1000.RCTL_MPE != 0 {
			return true
		}
	case rctl&e1000.RCTL_UPE != 0:
		return true
	}
	for i := range e1000.RA_LEN {
		lo, hi := m.get(e1000.RAL(i)), m.get(e1000.RAH(i))
		if hi&e1000.RAH_AV == 0 {
			continue
		}
		ra := [6]byte{byte(lo), byte(lo >> 8), byte(lo >> 16), byte(lo >> 24), byte(hi), byte(hi >> 8)}
		if ra == [6]byte(dst) {
			return true
		}
	}
	// Multicast table, MO = 00b: bits 47:36 of the address (13.5.1).
	shift := [4]uint{4, 3, 2, 0}[(rctl&e1000.RCTL_MO_MASK)>>e1000.RCTL_MO_SHIFT]
	h := (uint32(dst[5])<<8 | uint32(dst[4])) >> shift & 0xFFF
	return m.get(e1000.MTA+4*(h>>5))&(1<<(h&31)) != 0
}

// rxBufSize decodes RCTL.BSIZE/BSEX (13.4.22).
func rxBufSize(rctl uint32) int {
	size := [4]int{2048, 1024, 512, 256}[(rctl&e1000.RCTL_BSIZE_MASK)>>16]
	if rctl&e1000.RCTL_BSEX != 0 && size != 2048 {
		size *= 16
	}
	return size
}

// writeBackExtended writes an extended receive descriptor's write-back
// (the 82574 datasheet's extended format; QEMU's e1000e_write_ext_rx_descr):
// MRQ and RSS hash or IP id in bytes 0-7, the status and error bits in the
// dword at byte 8 (errors in its top byte), the length at byte 12.
func writeBackExtended(desc []byte, length uint16, status, errs uint8) {
	clear(desc)
	binary.LittleEndian.PutUint32(desc[8:], uint32(status)|uint32(errs)<<24)
	binary.LittleEndian.PutUint16(desc[12:], length)
}

// rxChecksum is the 82574's receive checksum offload as QEMU 7.2 does it
// without a vnet header (e1000e_build_rx_metadata, e1000e_verify_csum_in_sw):
// for an IPv4 frame, with RXCSUM.IPOFLD the header checksum is checked (IPCS,
// and IPE if wrong); with RXCSUM.TUOFLD, for TCP or UDP that is not a
// fragment and (UDP) carries a checksum, the transport checksum is (TCPCS,
// UDPCS for UDP, and TCPE if wrong).
func (m *Model) rxChecksum(frame []byte) (status, errs uint8) {
	rxcsum := m.get(e1000.RXCSUM)
	if len(frame) < 14+20 {
		return 0, 0
	}
	var proto uint8
	var l4 []byte
	var pseudo uint32
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		ip := frame[14:]
		ihl := int(ip[0]&0xF) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[0]>>4 != 4 || ihl < 20 || total < ihl || total > len(ip) {
			return 0, 0
		}
		if rxcsum&e1000.RXCSUM_IPOFLD != 0 {
			status |= e1000.RDESC_STATUS_IPCS
			if sum(ip[:ihl], 0) != 0xFFFF {
				errs |= e1000.RDESC_ERRORS_IPE
			}
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3FFF != 0 { // a fragment
			return status, errs
		}
		proto, l4 = ip[9], ip[ihl:total]
		pseudo = uint32(sum(ip[12:20], 0))
	case 0x86DD: // no extension headers: the model's IPv6 is that much
		ip := frame[14:]
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if len(ip) < 40 || ip[0]>>4 != 6 || 40+plen > len(ip) {
			return 0, 0
		}
		proto, l4 = ip[6], ip[40:40+plen]
		pseudo = uint32(sum(ip[8:40], 0))
	default:
		return 0, 0
	}
	if rxcsum&e1000.RXCSUM_TUOFLD == 0 {
		return status, errs
	}
	switch {
	case proto == 6 && len(l4) >= 20:
		status |= e1000.RDESC_STATUS_TCPCS
	case proto == 17 && len(l4) >= 8 && binary.BigEndian.Uint16(l4[6:]) != 0:
		status |= e1000.RDESC_STATUS_TCPCS | e1000.RDESC_STATUS_UDPCS
	default:
		return status, errs
	}
	if sum(l4, pseudo+uint32(proto)+uint32(len(l4))) != 0xFFFF {
		errs |= e1000.RDESC_ERRORS_TCPE
	}
	return status, errs
}

// sum is the 16-bit one's complement sum of b, folded, added to s.
func sum(b []byte, s uint32) uint16 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	return uint16(s)
}
