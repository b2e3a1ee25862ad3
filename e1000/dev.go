package e1000

import (
	"errors"
	"fmt"
	"time"

	"keepnet/drivers/netdev"
)

// Config parameterises a Dev. Zero values select the defaults.
type Config struct {
	// RxRing and TxRing are the descriptor counts: multiples of 8 (RDLEN and
	// TDLEN are multiples of 128 bytes, 13.4.27, 13.4.38), at least 8.
	// Default 256.
	RxRing, TxRing int
	// RxBufSize is the receive buffer size programmed in RCTL.BSIZE/BSEX
	// (13.4.22): 256, 512, 1024, 2048, 4096, 8192 or 16384. Default 2048,
	// which holds a maximum 1518-byte frame in one descriptor. Every posted
	// buffer must be at least this long.
	RxBufSize int
	// ITR is the minimum interval between interrupts in 256 ns units
	// (13.4.18) until SetInterruptInterval sets another. 0 selects
	// DefaultITR; a negative value disables throttling.
	ITR int
	// StickyCounters says the statistics registers do not clear when read.
	// The manual says they do (13.7); QEMU's e1000 keeps MPC and RNBC as
	// running totals. The binder sets it when it runs under QEMU.
	StickyCounters bool
	// Sleep waits; the few waits of the reset sequence go through it so tests
	// never sleep (STYLE item 6). Default time.Sleep.
	Sleep func(time.Duration)
	// Variant is the part: its EERD layout, reset steps and own registers
	// (variant.go). Default Variant8254x.
	Variant *Variant
}

// Defaults.
const (
	DefaultRing      = 256
	DefaultRxBufSize = 2048
	// DefaultITR throttles to about 8000 interrupts/s (1e9 / (8000*256)),
	// the moderation Intel's drivers default to; polling while busy does the
	// rest. The driver process replaces it by the load's
	// (SetInterruptInterval, drivers/nic's moderation).
	DefaultITR = 488
)

// IntrHandled is the set of interrupt causes the driver enables (13.4.20):
// transmit write-back, link change, receive timer, receive descriptors low
// and receiver overrun.
const IntrHandled = ICR_TXDW | ICR_LSC | ICR_RXT0 | ICR_RXDMT0 | ICR_RXO

// Waits and bounds of the reset sequence.
const (
	// quiesceDelay lets DMA in flight finish after TX is disabled and the
	// RX ring is emptied, before the global reset; Linux's e1000_reset_hw
	// waits 10 ms at the same point for the 8254x.
	quiesceDelay = 10 * time.Millisecond
	// resetDelay is the wait after setting CTRL.RST before touching the
	// device again: the reset reloads from the EEPROM (5.6); Linux waits 5 ms
	// on the 82540/82545.
	resetDelay = 5 * time.Millisecond
	// resetPolls bounds the wait for CTRL.RST to self-clear (13.4.1).
	resetPolls    = 100
	resetPollWait = 100 * time.Microsecond
	// eerdPolls bounds the wait for EERD.DONE (5.3.1, 13.4.4). A word takes
	// a few tens of microseconds on a Microwire EEPROM.
	eerdPolls    = 1000
	eerdPollWait = 5 * time.Microsecond
)

// Errors of New and Reset; they are wrapped with context.
var (
	ErrConfig       = errors.New("invalid configuration")
	ErrResetTimeout = errors.New("CTRL.RST did not clear")
	ErrNoMAC        = errors.New("no valid MAC address in the EEPROM or RAL0/RAH0")
)

// Dev drives one 8254x or 82574 function (Config.Variant) through its registers (netdev.Regs: BAR0
// mapped by drivers/pci, or the model in e1000/model) and two descriptor
// rings; it is the family's netdev.Device. It is not safe for concurrent
// use: the driver process calls it from one goroutine (interrupt wait,
// poll, post, flush). Its Stats survive Reset.
type Dev struct {
	regs  netdev.Regs
	sleep func(time.Duration)
	cfg   Config
	v     *Variant
	rctl  uint32 // the RCTL value Reset programs

	mac [6]byte
	// mcast are the multicast groups the receive filter lets in
	// (SetMulticast); Reset programs them again.
	mcast [][6]byte

	rx ring
	// rxBufs[i] is the buffer posted in RX descriptor i.
	rxBufs []netdev.Buffer
	// rxDiscard is set between a descriptor without EOP and the end of its
	// frame: those buffers are returned empty and the frame is counted once.
	rxDiscard bool

	tx     ring
	txBufs []txSlot
	// ctx is the checksum context last loaded, if ctxLoaded: a context
	// stays in the device until another replaces it (3.3.5), so a frame
	// whose offload has the same shape (every segment and ACK of a
	// connection) needs no context descriptor of its own — half the
	// descriptors per frame, as FreeBSD's em keeps its last offload. A
	// segmentation context is never kept: its PAYLEN is the frame's, and
	// QEMU's e1000e holds one context for both kinds.
	ctx       TxContext
	ctxLoaded bool

	// itr is the ITR value Reset programs: Config.ITR, then what
	// SetInterruptInterval set.
	itr uint32

	stats             netdev.Stats
	lastMPC, lastRNBC uint32 // last raw values, for StickyCounters
}

// txSlot is a queued frame, kept at the index of its first descriptor.
type txSlot struct {
	buf  netdev.Buffer
	n    int
	span uint32 // descriptors the frame uses (a context descriptor and data, or one legacy)
}

// ring is a descriptor ring's memory and the driver's indices into it.
// Descriptors [next, tail) are owned by the device; written is the tail the
// device was last told (RDT/TDT). One slot stays empty so that head == tail
// means empty (3.2.6, 3.4).
type ring struct {
	mem                 []byte
	addr                uint64
	n                   uint32
	next, tail, written uint32
}

func (r *ring) desc(i uint32) []byte { return r.mem[i*DescSize : (i+1)*DescSize] }
func (r *ring) used() uint32         { return (r.tail - r.next + r.n) % r.n }
func (r *ring) unwritten() uint32    { return (r.tail - r.written + r.n) % r.n } // filled, the device not yet told
func (r *ring) told() uint32         { return (r.written - r.next + r.n) % r.n } // the device's, not yet harvested
func (r *ring) full() bool           { return r.used() == r.n-1 }
func (r *ring) inc(i uint32) uint32  { return (i + 1) % r.n }
func (r *ring) bytes() uint32        { return r.n * DescSize }

// RingBytes is the size of the rings Region New needs for cfg: the RX ring
// followed by the TX ring.
func RingBytes(cfg Config) int {
	cfg = cfg.withDefaults()
	return (cfg.RxRing + cfg.TxRing) * DescSize
}

func (c Config) withDefaults() Config {
	if c.RxRing == 0 {
		c.RxRing = DefaultRing
	}
	if c.TxRing == 0 {
		c.TxRing = DefaultRing
	}
	if c.RxBufSize == 0 {
		c.RxBufSize = DefaultRxBufSize
	}
	if c.ITR == 0 {
		c.ITR = DefaultITR
	}
	if c.Sleep == nil {
		c.Sleep = time.Sleep
	}
	if c.Variant == nil {
		c.Variant = Variant8254x
	}
	return c
}

// bsize maps a buffer size to RCTL.BSIZE/BSEX (13.4.22, Table 13-67).
func bsize(n int) (uint32, bool) {
	switch n {
	case 256:
		return RCTL_BSIZE_256, true
	case 512:
		return RCTL_BSIZE_512, true
	case 1024:
		return RCTL_BSIZE_1024, true
	case 2048:
		return RCTL_BSIZE_2048, true
	case 4096:
		return RCTL_BSEX | RCTL_BSIZE_4096, true
	case 8192:
		return RCTL_BSEX | RCTL_BSIZE_8192, true
	case 16384:
		return RCTL_BSEX | RCTL_BSIZE_16384, true
	}
	return 0, false
}

// New checks cfg and lays the rings out in rings; it does not touch the
// device. Call Reset before anything else.
func New(regs netdev.Regs, rings netdev.Region, cfg Config) (*Dev, error) {
	cfg = cfg.withDefaults()
	for _, r := range []struct {
		name string
		n    int
	}{{"RxRing", cfg.RxRing}, {"TxRing", cfg.TxRing}} {
		// LEN is RDLEN/TDLEN bits 19:7 (13.4.27, 13.4.38).
		if r.n < 8 || r.n%8 != 0 || r.n*DescSize > 0xFFF80 {
			return nil, fmt.Errorf("e1000: %s = %d, want a multiple of 8 in [8, 65528]: %w", r.name, r.n, ErrConfig)
		}
	}
	bs, ok := bsize(cfg.RxBufSize)
	if !ok {
		return nil, fmt.Errorf("e1000: RxBufSize = %d, want 256, 512, ..., 16384: %w", cfg.RxBufSize, ErrConfig)
	}
	if cfg.ITR > int(ITR_INTERVAL_MASK) {
		return nil, fmt.Errorf("e1000: ITR = %d, want at most %d: %w", cfg.ITR, ITR_INTERVAL_MASK, ErrConfig)
	}
	need := RingBytes(cfg)
	if len(rings.Mem) < need {
		return nil, fmt.Errorf("e1000: rings region of %d bytes, need %d: %w", len(rings.Mem), need, ErrConfig)
	}
	// Descriptor rings must start on a 16-byte boundary (13.4.25: RDBAL
	// bits 3:0 are zero; 13.4.36); 128 is better for the cache line.
	if rings.Addr%16 != 0 || !aligned(rings.Mem, 16) {
		return nil, fmt.Errorf("e1000: rings at bus address %#x are not 16-byte aligned: %w", rings.Addr, ErrConfig)
	}
	rxBytes := cfg.RxRing * DescSize
	d := &Dev{
		regs:  regs,
		sleep: cfg.Sleep,
		cfg:   cfg,
		v:     cfg.Variant,
		rctl:  RCTL_EN | RCTL_BAM | RCTL_SECRC | RCTL_LBM_NONE | RCTL_RDMTS_HALF | bs,
		rx: ring{
			mem:  rings.Mem[:rxBytes:rxBytes],
			addr: rings.Addr,
			n:    uint32(cfg.RxRing),
		},
		tx: ring{
			mem:  rings.Mem[rxBytes:need:need],
			addr: rings.Addr + uint64(rxBytes),
			n:    uint32(cfg.TxRing),
		},
		rxBufs: make([]netdev.Buffer, cfg.RxRing),
		txBufs: make([]txSlot, cfg.TxRing),
	}
	if cfg.ITR > 0 {
		d.itr = uint32(cfg.ITR)
	}
	return d, nil
}

// Reset brings the device to a known state and rebuilds both rings, whatever
// state a previous driver left: the general configuration (14.3), receive
// (14.4) and transmit (14.5) initialisation. It returns, in Forgotten, every
// buffer this Dev had posted; the device will not touch them again.
//
// It rewrites every ring and control register itself, because QEMU's e1000
// only clears CTRL.RST and resets nothing, and it resets the device because
// real parts cache descriptors (3.2.6, 3.4) and would DMA into buffers a
// crashed driver had posted. The steps:
//
//  1. Mask all interrupts (IMC, 13.4.21); disable the transmitter (TCTL.EN=0).
//  2. Empty the RX ring by writing RDH = RDT, without touching RCTL (below),
//     so the device stops taking descriptors; on the 82574 disable its PCIe
//     master (Variant.MasterDisable); wait for DMA in flight.
//  3. Global reset: set CTRL.RST, wait, poll until it clears (13.4.1); on
//     the 82574 wait for EECD.AUTO_RD and its PHY (Variant.AutoReadDone).
//  4. Mask interrupts again and clear ICR: the reset may leave causes pending.
//  5. CTRL: SLU and ASDE set; LRST, PHY_RST, ILOS, FRCSPD, FRCDPLX, VME and
//     flow control clear (14.3); FCAL, FCAH, FCT, FCTTV = 0 (no flow control);
//     then the part's own registers (Variant.Setup: the 82574's interrupt
//     acknowledgement, descriptor format, checksum offload, queue enable).
//  6. MAC address from the EEPROM through EERD (5.3.1), else RAL0/RAH0;
//     program RAL0/RAH0 with AV, clear the other 15 entries and the MTA.
//  7. RX: zero the ring memory; RDBAL/RDBAH/RDLEN; RDH = RDT; RDTR = RADV = 0
//     (13.4.30 recommends ITR instead); RCTL = EN | BAM | SECRC | BSIZE,
//     last (14.4).
//  8. TX: zero the ring memory; TDBAL/TDBAH/TDLEN; TDH = TDT = 0; TIPG for
//     copper (13.4.34); TIDV, TADV; TCTL = EN | PSP | CT | COLD (14.5).
//  9. ITR (13.4.18), the interval last set (SetInterruptInterval: a
//     restarted driver, or a reset by the watchdog, keeps the moderation
//     the load chose); read MPC and RNBC; clear ICR; IMS = IntrHandled.
//
// RX ring indices: after a real reset RDH = RDT = 0. On QEMU they keep the
// last driver's value x; Reset adopts x as the ring's starting index (the
// ring is circular; nothing requires 0) when x fits the ring, because moving
// RDH and RDT to 0 one write at a time would open a window where RDH != RDT
// over descriptors nobody posted. Only when x does not fit (the ring shrank)
// does Reset disable the receiver to move them.
//
// RCTL is written only when it does not already hold the value Reset wants:
// QEMU's e1000 pauses receive for one second after every RCTL write
// (set_rx_control arms flush_queue_timer; e1000_can_receive refuses frames
// until it fires). After a real reset RCTL reads 0 and is always written; on
// a QEMU restart it still holds the previous driver's identical value, and
// skipping the write saves a one-second receive gap. The first start on QEMU
// pays it.
func (d *Dev) Reset() (netdev.Forgotten, error) {
	f := d.forget()
	r := d.regs

	if err := Quiesce(r, d.v, d.sleep); err != nil {
		return f, err
	}

	// 5. General configuration (14.3). GIO_MASTER_DISABLE is the 82574's
	// (reserved, written 0, on the 8254x): QEMU's e1000e keeps it across
	// CTRL.RST, and the part does no DMA while it is set.
	ctrl := r.Read32(CTRL)
	ctrl &^= CTRL_LRST | CTRL_PHY_RST | CTRL_ILOS | CTRL_FRCSPD | CTRL_FRCDPLX |
		CTRL_VME | CTRL_RFCE | CTRL_TFCE | CTRL_RST | CTRL_GIO_MASTER_DISABLE
	ctrl |= CTRL_SLU | CTRL_ASDE
	r.Write32(CTRL, ctrl)
	for _, reg := range []uint32{FCAL, FCAH, FCT, FCTTV} {
		r.Write32(reg, 0)
	}
	if d.v.Setup != nil {
		d.v.Setup(r)
	}

	// 6. Address filters.
	mac, err := d.readMAC()
	if err != nil {
		return f, fmt.Errorf("e1000: reset: %w", err)
	}
	d.mac = mac
	for i := RA_LEN - 1; i >= 1; i-- {
		r.Write32(RAH(i), 0) // clear high (AV) first (13.5.3)
		r.Write32(RAL(i), 0)
	}
	r.Write32(RAL0, uint32(mac[0])|uint32(mac[1])<<8|uint32(mac[2])<<16|uint32(mac[3])<<24)
	r.Write32(RAH0, uint32(mac[4])|uint32(mac[5])<<8|RAH_AV) // low first (13.5.3)
	d.writeMTA()

	// 7. Receive (14.4).
	start := r.Read32(RDT)
	if start >= d.rx.n || r.Read32(RDH) != start {
		// Cannot adopt the old index: stop the receiver to move it.
		r.Write32(RCTL, r.Read32(RCTL)&^RCTL_EN)
		start = 0
	}
	clear(d.rx.mem)
	r.Write32(RDBAL, uint32(d.rx.addr))
	r.Write32(RDBAH, uint32(d.rx.addr>>32))
	r.Write32(RDLEN, d.rx.bytes())
	r.Write32(RDH, start)
	r.Write32(RDT, start)
	d.rx.next, d.rx.tail, d.rx.written = start, start, start
	r.Write32(RDTR, 0)
	r.Write32(RADV, 0)
	if r.Read32(RCTL) != d.rctl {
		r.Write32(RCTL, d.rctl)
	}

	// 8. Transmit (14.5). TCTL.EN is clear, so TDH/TDT can move freely.
	clear(d.tx.mem)
	r.Write32(TDBAL, uint32(d.tx.addr))
	r.Write32(TDBAH, uint32(d.tx.addr>>32))
	r.Write32(TDLEN, d.tx.bytes())
	r.Write32(TDH, 0)
	r.Write32(TDT, 0)
	d.tx.next, d.tx.tail, d.tx.written = 0, 0, 0
	r.Write32(TIPG, TIPG_IPGT_COPPER<<TIPG_IPGT_SHIFT|
		TIPG_IPGR1_IEEE<<TIPG_IPGR1_SHIFT|TIPG_IPGR2_IEEE<<TIPG_IPGR2_SHIFT)
	// The driver never sets TDESC.CMD.IDE, so TIDV and TADV are idle; TIDV
	// must not be 0 (13.4.41), TADV 0 disables the absolute timer (13.4.44).
	r.Write32(TIDV, 1)
	r.Write32(TADV, 0)
	r.Write32(TCTL, TCTL_EN|TCTL_PSP|
		TCTL_CT_DEFAULT<<TCTL_CT_SHIFT|TCTL_COLD_FULL_DUPLEX<<TCTL_COLD_SHIFT)

	// 9. Interrupt moderation and enable.
	r.Write32(ITR, d.itr)
	d.baselineCounters()
	r.Read32(ICR)
	r.Write32(IMS, IntrHandled)
	return f, nil
}

// Quiesce stops the device's DMA and resets it (steps 1-4 of Reset), with
// no rings: what a restarted driver does before anything else, because until
// then the device may still own buffers its predecessor posted, in pools
// that are freed once the driver says hello (kernel/wiring). It masks
// interrupts, disables transmit, empties the receive ring (RDH = RDT) so no
// frame is written anywhere, and issues a global reset (on real hardware
// that also drops the descriptors the device cached; QEMU's e1000 only
// clears the bit). RCTL is not written: see Reset. v is the part (nil:
// Variant8254x): the 82574 also disables its PCIe master before the reset
// and waits for its NVM after it.
func Quiesce(r netdev.Regs, v *Variant, sleep func(time.Duration)) error {
	if sleep == nil {
		sleep = time.Sleep
	}
	if v == nil {
		v = Variant8254x
	}
	// 1-2. Quiesce.
	r.Write32(IMC, IMC_ALL)
	r.Write32(TCTL, 0)
	r.Write32(RDH, r.Read32(RDT))
	v.disableMaster(r, sleep)
	sleep(quiesceDelay)

	// 3. Global reset.
	r.Write32(CTRL, r.Read32(CTRL)|CTRL_RST)
	sleep(resetDelay)
	cleared := false
	for range resetPolls {
		if r.Read32(CTRL)&CTRL_RST == 0 {
			cleared = true
			break
		}
		sleep(resetPollWait)
	}
	if !cleared {
		return fmt.Errorf("e1000: reset: %w after %v", ErrResetTimeout, resetDelay+resetPolls*resetPollWait)
	}
	if err := v.afterReset(r, sleep); err != nil {
		return err
	}

	// 4. Interrupts off again; causes cleared by reading ICR.
	r.Write32(IMC, IMC_ALL)
	r.Read32(ICR)
	return nil
}

// forget drops every posted buffer and returns their cookies.
func (d *Dev) forget() netdev.Forgotten {
	var f netdev.Forgotten
	for i := d.rx.next; i != d.rx.tail; i = d.rx.inc(i) {
		f.RX = append(f.RX, d.rxBufs[i].Cookie)
		d.rxBufs[i] = netdev.Buffer{}
	}
	for i := d.tx.next; i != d.tx.tail; {
		s := d.txBufs[i]
		f.TX = append(f.TX, s.buf.Cookie)
		d.txBufs[i] = txSlot{}
		i = (i + max(s.span, 1)) % d.tx.n
	}
	d.rx.next, d.rx.written = d.rx.tail, d.rx.tail
	d.tx.next, d.tx.written = d.tx.tail, d.tx.tail
	d.rxDiscard = false
	d.ctxLoaded = false // a reset device holds none
	return f
}

// readMAC reads the station address from EEPROM words 0-2 through EERD
// (5.3.1, 13.4.4; Table 5-2: low byte first). When EERD never completes it
// falls back to RAL0/RAH0, which the device loads from the EEPROM at reset
// (13.5.2): the 82544GC/EI has no EERD at all, and the 82541xx/82547 put
// DONE at bit 1 (as the 82574L, whose Variant says so), so a part this
// table does not know yet still gets its address.
func (d *Dev) readMAC() ([6]byte, error) {
	var mac [6]byte
	ok := true
	for w := range 3 {
		v, done := d.readEEPROM(uint32(EEPROM_ETHERNET_ADDR + w))
		if !done {
			ok = false
			break
		}
		mac[2*w], mac[2*w+1] = byte(v), byte(v>>8)
	}
	if ok && validMAC(mac) {
		return mac, nil
	}
	lo, hi := d.regs.Read32(RAL0), d.regs.Read32(RAH0)
	if hi&RAH_AV != 0 {
		mac = [6]byte{byte(lo), byte(lo >> 8), byte(lo >> 16), byte(lo >> 24), byte(hi), byte(hi >> 8)}
		if validMAC(mac) {
			return mac, nil
		}
	}
	return mac, ErrNoMAC
}

// readEEPROM reads one 16-bit EEPROM word with a bounded poll of EERD.DONE,
// where the part keeps it (Variant.EERDDone, EERDAddrShift).
func (d *Dev) readEEPROM(word uint32) (uint16, bool) {
	d.regs.Write32(EERD, word<<d.v.EERDAddrShift|EERD_START)
	for range eerdPolls {
		v := d.regs.Read32(EERD)
		if v&d.v.EERDDone != 0 {
			return uint16(v >> EERD_DATA_SHIFT), true
		}
		d.sleep(eerdPollWait)
	}
	return 0, false
}

// validMAC rejects the all-zero address and group addresses.
func validMAC(m [6]byte) bool {
	return m != [6]byte{} && m[0]&1 == 0
}

// MAC is the station address Reset read and programmed.
func (d *Dev) MAC() [6]byte { return d.mac }

// RxBufSize is Config.RxBufSize: the least length of a buffer PostRX takes.
func (d *Dev) RxBufSize() int { return d.cfg.RxBufSize }

// Features are the offloads TransmitOffload does: TCP and UDP checksum
// insertion (3.3.5) and TCP segmentation (3.3.6) over IPv4 on every part,
// over IPv6 what the variant says (Variant.Offloads).
func (d *Dev) Features() netdev.Features { return d.v.Offloads }

// LinkUp reports STATUS.LU (13.4.2).
func (d *Dev) LinkUp() bool { return d.regs.Read32(STATUS)&STATUS_LU != 0 }

// Interrupts reads and so clears ICR (13.4.17): the causes since the last
// read. Reading it also acknowledges the interrupt line.
func (d *Dev) Interrupts() uint32 { return d.regs.Read32(ICR) }

// SetInterruptInterval programs the least interval between two interrupts
// (netdev.Moderator): ITR in 256 ns units (13.4.18), at most
// ITR_INTERVAL_MASK units (16.8 ms); 0 throttles nothing. Reset programs
// it again, so the interval outlives a device reset.
//
// What the device does with it. The manual's ITR is a minimum
// inter-interrupt interval: an interrupt raised after a quiet period longer
// than the interval goes out at once, later ones wait for the interval to
// pass. QEMU follows that, each model its own way (hw/net/e1000.c and
// e1000e_core.c):
//   - e1000 (8254x): a rising edge of the line raises it at once and arms
//     a mitigation timer for the interval; edges before it fires are held
//     and raised together when it fires. The interval is the least of ITR
//     and (only when RDTR is not zero) RADV, but never below 500 units
//     (128 µs, "7813 interrupts/s"): ITR 0, and any value below 500,
//     gives 128 µs windows.
//   - e1000e (82574): an interrupt is raised at once unless the ITR timer
//     runs; raising it arms the timer for ITR units, and what came while
//     it ran is raised when it fires. ITR 0 throttles nothing.
//
// The driver does not use the receive delay timers (RDTR = RADV = 0): on
// real parts they delay even the first frame after a quiet period.
func (d *Dev) SetInterruptInterval(iv time.Duration) {
	units := min(iv/(256*time.Nanosecond), time.Duration(ITR_INTERVAL_MASK))
	d.itr = uint32(max(units, 0))
	d.regs.Write32(ITR, d.itr)
}

// EnableInterrupts unmasks IntrHandled (IMS, 13.4.20).
func (d *Dev) EnableInterrupts() { d.regs.Write32(IMS, IntrHandled) }

// DisableInterrupts masks every interrupt (IMC, 13.4.21), for polling.
func (d *Dev) DisableInterrupts() { d.regs.Write32(IMC, IMC_ALL) }

// Stats returns the counters, reading MPC and RNBC from the device.
func (d *Dev) Stats() netdev.Stats {
	d.readCounters()
	return d.stats
}

func (d *Dev) readCounters() {
	mpc, rnbc := d.regs.Read32(MPC), d.regs.Read32(RNBC)
	if d.cfg.StickyCounters {
		// Running totals: count the increase (a decrease means the device
		// was really reset; then the value is all new).
		d.stats.RxMissed += uint64(delta(d.lastMPC, mpc))
		d.stats.RxNoBuffer += uint64(delta(d.lastRNBC, rnbc))
		d.lastMPC, d.lastRNBC = mpc, rnbc
		return
	}
	d.stats.RxMissed += uint64(mpc)
	d.stats.RxNoBuffer += uint64(rnbc)
}

// baselineCounters starts counting afresh: it reads MPC and RNBC, which
// clears them on real parts and gives the running totals' base under QEMU.
// Misses from before the reset belong to no one and are not counted.
func (d *Dev) baselineCounters() {
	d.lastMPC, d.lastRNBC = d.regs.Read32(MPC), d.regs.Read32(RNBC)
}

func delta(last, now uint32) uint32 {
	if now < last {
		return now
	}
	return now - last
}

// Progress reads what the driver's watchdog compares: the transmit and
// receive heads (TDH 13.4.39, RDH 13.4.28) against the tails last written,
// STATUS.LU, and the missed-packet counters MPC and RNBC (13.7).
func (d *Dev) Progress() netdev.Progress {
	d.readCounters()
	txHead, rxHead := d.regs.Read32(TDH), d.regs.Read32(RDH)
	return netdev.Progress{
		TxPending: int((d.tx.written - txHead + d.tx.n) % d.tx.n),
		TxHead:    txHead,
		RxPosted:  int((d.rx.written - rxHead + d.rx.n) % d.rx.n),
		RxHead:    rxHead,
		RxMissed:  d.stats.RxMissed + d.stats.RxNoBuffer,
		LinkUp:    d.LinkUp(),
	}
}

// SetMulticast makes the receive filter let in frames to exactly the
// groups given (and the broadcast and station addresses, as always); the
// next Reset keeps them. The filter is the Multicast Table Array: a hash
// of the address, so a group sharing a bit with one of these comes in too
// and the stack above drops it.
func (d *Dev) SetMulticast(groups [][6]byte) {
	d.mcast = append(d.mcast[:0], groups...)
	d.writeMTA()
}

// writeMTA programs the Multicast Table Array with d.mcast's bits.
func (d *Dev) writeMTA() {
	var mta [MTA_LEN]uint32
	for _, g := range d.mcast {
		h := mtaHash(g)
		mta[h>>5] |= 1 << (h & 31)
	}
	for i, v := range mta {
		d.regs.Write32(MTA+4*uint32(i), v)
	}
}

// mtaHash is the Multicast Table Array bit of address a with RCTL.MO = 00b,
// the offset Reset leaves: address bits 47:36, i.e. the upper nibble of
// byte 4 and all of byte 5 (13.5.1).
func mtaHash(a [6]byte) uint32 {
	return (uint32(a[4])>>4 | uint32(a[5])<<4) & 0xFFF
}
