package e1000

// Register offsets in BAR0 (memory-mapped, 32-bit accesses only; 13.3 and
// Table 13-2 of the 8254x Software Developer's Manual). Names follow the
// manual letter for letter; see the package doc for the naming scheme.
const (
	// CTRL is the Device Control Register (13.4.1).
	CTRL uint32 = 0x00000
	// STATUS is the Device Status Register (13.4.2).
	STATUS uint32 = 0x00008
	// EECD is the EEPROM/Flash Control & Data Register (13.4.3).
	EECD uint32 = 0x00010
	// EERD is the EEPROM Read Register (13.4.4).
	EERD uint32 = 0x00014
	// CTRL_EXT is the Extended Device Control Register (13.4.6).
	CTRL_EXT uint32 = 0x00018
	// MDIC is the MDI Control Register (13.4.7).
	MDIC uint32 = 0x00020
	// FCAL is the Flow Control Address Low register (13.4.8).
	FCAL uint32 = 0x00028
	// FCAH is the Flow Control Address High register (13.4.9).
	FCAH uint32 = 0x0002C
	// FCT is the Flow Control Type register (13.4.10).
	FCT uint32 = 0x00030
	// VET is the VLAN Ether Type register (13.4.11).
	VET uint32 = 0x00038
	// ICR is the Interrupt Cause Read Register, cleared by reading (13.4.17).
	ICR uint32 = 0x000C0
	// ITR is the Interrupt Throttling Register (13.4.18).
	ITR uint32 = 0x000C4
	// ICS is the Interrupt Cause Set Register (13.4.19).
	ICS uint32 = 0x000C8
	// IMS is the Interrupt Mask Set/Read Register (13.4.20).
	IMS uint32 = 0x000D0
	// IMC is the Interrupt Mask Clear Register (13.4.21).
	IMC uint32 = 0x000D8
	// RCTL is the Receive Control Register (13.4.22).
	RCTL uint32 = 0x00100
	// FCTTV is the Flow Control Transmit Timer Value register (13.4.12).
	FCTTV uint32 = 0x00170
	// TCTL is the Transmit Control Register (13.4.33).
	TCTL uint32 = 0x00400
	// TIPG is the Transmit IPG Register (13.4.34).
	TIPG uint32 = 0x00410
	// RDBAL is the Receive Descriptor Base Address Low register (13.4.25).
	RDBAL uint32 = 0x02800
	// RDBAH is the Receive Descriptor Base Address High register (13.4.26).
	RDBAH uint32 = 0x02804
	// RDLEN is the Receive Descriptor Length register, in bytes (13.4.27).
	RDLEN uint32 = 0x02808
	// RDH is the Receive Descriptor Head register (13.4.28).
	RDH uint32 = 0x02810
	// RDT is the Receive Descriptor Tail register (13.4.29).
	RDT uint32 = 0x02818
	// RDTR is the Receive Delay Timer Register (13.4.30).
	RDTR uint32 = 0x02820
	// RADV is the Receive Interrupt Absolute Delay Timer (13.4.31).
	RADV uint32 = 0x0282C
	// TDBAL is the Transmit Descriptor Base Address Low register (13.4.36).
	TDBAL uint32 = 0x03800
	// TDBAH is the Transmit Descriptor Base Address High register (13.4.37).
	TDBAH uint32 = 0x03804
	// TDLEN is the Transmit Descriptor Length register, in bytes (13.4.38).
	TDLEN uint32 = 0x03808
	// TDH is the Transmit Descriptor Head register (13.4.39).
	TDH uint32 = 0x03810
	// TDT is the Transmit Descriptor Tail register (13.4.40).
	TDT uint32 = 0x03818
	// TIDV is the Transmit Interrupt Delay Value register (13.4.41).
	TIDV uint32 = 0x03820
	// TADV is the Transmit Absolute Interrupt Delay Value register (13.4.44).
	TADV uint32 = 0x0382C

	// MTA is the first of the 128 Multicast Table Array registers
	// MTA[127:0] at 05200h-053FCh (13.5.1).
	MTA uint32 = 0x05200
	// MTA_LEN is the number of MTA registers (13.5.1).
	MTA_LEN = 128
	// RAL0 is Receive Address Low for entry 0; entry n is at RAL0+8n (13.5.2).
	RAL0 uint32 = 0x05400
	// RAH0 is Receive Address High for entry 0; entry n is at RAH0+8n (13.5.3).
	RAH0 uint32 = 0x05404
	// RA_LEN is the number of receive address (RAL/RAH) pairs (13.5.2).
	RA_LEN = 16

	// MPC is the Missed Packets Count statistic (13.7.5).
	MPC uint32 = 0x04010
	// GPRC is the Good Packets Received Count statistic (13.7.27).
	GPRC uint32 = 0x04074
	// GPTC is the Good Packets Transmitted Count statistic (13.7.30).
	GPTC uint32 = 0x04080
	// RNBC is the Receive No Buffers Count statistic (13.7.33).
	RNBC uint32 = 0x040A0
)

// RAL returns the offset of Receive Address Low n (13.5.2).
func RAL(n int) uint32 { return RAL0 + 8*uint32(n) }

// RAH returns the offset of Receive Address High n (13.5.3).
func RAH(n int) uint32 { return RAH0 + 8*uint32(n) }

// CTRL bits (13.4.1, Table 13-3).
const (
	CTRL_FD      uint32 = 1 << 0  // full duplex
	CTRL_LRST    uint32 = 1 << 3  // link reset
	CTRL_ASDE    uint32 = 1 << 5  // auto-speed detection enable
	CTRL_SLU     uint32 = 1 << 6  // set link up
	CTRL_ILOS    uint32 = 1 << 7  // invert loss-of-signal
	CTRL_FRCSPD  uint32 = 1 << 11 // force speed
	CTRL_FRCDPLX uint32 = 1 << 12 // force duplex
	CTRL_RST     uint32 = 1 << 26 // device reset, self-clearing
	CTRL_RFCE    uint32 = 1 << 27 // receive flow control enable
	CTRL_TFCE    uint32 = 1 << 28 // transmit flow control enable
	CTRL_VME     uint32 = 1 << 30 // VLAN mode enable
	CTRL_PHY_RST uint32 = 1 << 31 // PHY reset
)

// STATUS bits (13.4.2, Table 13-5).
const (
	STATUS_FD uint32 = 1 << 0 // full duplex
	STATUS_LU uint32 = 1 << 1 // link up
)

// EERD fields of the 82540EM/82545EM (13.4.4, Table 13-7). The 82541xx,
// 82547GI/EI and 82574L use DONE at bit 1 and ADDR at 15:2 instead.
const (
	EERD_START      uint32 = 1 << 0 // start read
	EERD_DONE       uint32 = 1 << 4 // read done
	EERD_ADDR_SHIFT        = 8      // ADDR is bits 15:8
	EERD_DATA_SHIFT        = 16     // DATA is bits 31:16
)

// EEPROM word addresses (5.6, Table 5-2).
const (
	EEPROM_ETHERNET_ADDR = 0x00 // words 00h-02h: Ethernet address, low byte first
)

// Interrupt cause bits, shared by ICR, ICS, IMS and IMC (13.4.17-13.4.21,
// Table 13-63).
const (
	ICR_TXDW   uint32 = 1 << 0  // transmit descriptor written back
	ICR_TXQE   uint32 = 1 << 1  // transmit queue empty
	ICR_LSC    uint32 = 1 << 2  // link status change
	ICR_RXSEQ  uint32 = 1 << 3  // receive sequence error
	ICR_RXDMT0 uint32 = 1 << 4  // receive descriptor minimum threshold reached
	ICR_RXO    uint32 = 1 << 6  // receiver overrun
	ICR_RXT0   uint32 = 1 << 7  // receiver timer interrupt
	ICR_MDAC   uint32 = 1 << 9  // MDI/O access complete
	ICR_RXCFG  uint32 = 1 << 10 // receiving /C/ ordered sets
	ICR_GPI0   uint32 = 1 << 11 // general purpose interrupt (SDP6)
	ICR_TXDLOW uint32 = 1 << 15 // transmit descriptor low threshold hit
	ICR_SRPD   uint32 = 1 << 16 // small receive packet detected

	// IMC_ALL masks every interrupt when written to IMC (13.4.21).
	IMC_ALL uint32 = 0xFFFFFFFF
)

// ITR_INTERVAL_MASK is the throttling interval, in units of 256 ns (13.4.18).
const ITR_INTERVAL_MASK uint32 = 0xFFFF

// RCTL bits and fields (13.4.22, Table 13-67).
const (
	RCTL_EN          uint32 = 1 << 1  // receiver enable
	RCTL_SBP         uint32 = 1 << 2  // store bad packets
	RCTL_UPE         uint32 = 1 << 3  // unicast promiscuous
	RCTL_MPE         uint32 = 1 << 4  // multicast promiscuous
	RCTL_LPE         uint32 = 1 << 5  // long packet enable
	RCTL_LBM_NONE    uint32 = 0 << 6  // no loopback
	RCTL_RDMTS_HALF  uint32 = 0 << 8  // RXDMT0 when 1/2 of RDLEN is free
	RCTL_RDMTS_QUART uint32 = 1 << 8  // ... 1/4
	RCTL_RDMTS_EIGTH uint32 = 2 << 8  // ... 1/8
	RCTL_RDMTS_MASK  uint32 = 3 << 8  // RDMTS field
	RCTL_MO_MASK     uint32 = 3 << 12 // multicast offset field
	RCTL_MO_SHIFT           = 12
	RCTL_BAM         uint32 = 1 << 15 // broadcast accept mode
	RCTL_BSIZE_2048  uint32 = 0 << 16 // with BSEX=0
	RCTL_BSIZE_1024  uint32 = 1 << 16 // with BSEX=0
	RCTL_BSIZE_512   uint32 = 2 << 16 // with BSEX=0
	RCTL_BSIZE_256   uint32 = 3 << 16 // with BSEX=0
	RCTL_BSIZE_16384 uint32 = 1 << 16 // with BSEX=1
	RCTL_BSIZE_8192  uint32 = 2 << 16 // with BSEX=1
	RCTL_BSIZE_4096  uint32 = 3 << 16 // with BSEX=1
	RCTL_BSIZE_MASK  uint32 = 3 << 16 // BSIZE field
	RCTL_VFE         uint32 = 1 << 18 // VLAN filter enable
	RCTL_DPF         uint32 = 1 << 22 // discard pause frames
	RCTL_PMCF        uint32 = 1 << 23 // pass MAC control frames
	RCTL_BSEX        uint32 = 1 << 25 // buffer size extension (BSIZE x16)
	RCTL_SECRC       uint32 = 1 << 26 // strip Ethernet CRC
)

// TCTL bits and fields (13.4.33, Table 13-76).
const (
	TCTL_EN         uint32 = 1 << 1 // transmit enable
	TCTL_PSP        uint32 = 1 << 3 // pad short packets
	TCTL_CT_SHIFT          = 4      // collision threshold, bits 11:4
	TCTL_CT_MASK    uint32 = 0xFF << TCTL_CT_SHIFT
	TCTL_COLD_SHIFT        = 12 // collision distance, bits 21:12
	TCTL_COLD_MASK  uint32 = 0x3FF << TCTL_COLD_SHIFT
	TCTL_SWXOFF     uint32 = 1 << 22 // software XOFF transmission
	TCTL_RTLC       uint32 = 1 << 24 // re-transmit on late collision

	// TCTL_CT_DEFAULT is the collision threshold Table 13-76 recommends
	// (0Fh); it only has meaning in half duplex.
	TCTL_CT_DEFAULT uint32 = 0x0F
	// TCTL_COLD_FULL_DUPLEX is the collision distance Table 13-76
	// recommends for full duplex (64-byte time, 40h; half duplex: 200h).
	TCTL_COLD_FULL_DUPLEX uint32 = 0x40
)

// TIPG fields (13.4.34, Table 13-77) and the IEEE 802.3 values the table
// gives for 10/100/1000BASE-T copper parts such as the 82540EM.
const (
	TIPG_IPGT_SHIFT  = 0  // bits 9:0
	TIPG_IPGR1_SHIFT = 10 // bits 19:10
	TIPG_IPGR2_SHIFT = 20 // bits 29:20

	TIPG_IPGT_COPPER uint32 = 10 // "the value that should be programmed into IPGT is 10"
	TIPG_IPGR1_IEEE  uint32 = 8  // 2/3 of IPGR2 plus overhead; half duplex only
	TIPG_IPGR2_IEEE  uint32 = 6  // half duplex only
)

// RAH bits (13.5.3, Table 13-91).
const (
	RAH_AV uint32 = 1 << 31 // address valid
)

// Registers and fields of the 82574L that the 8254x manual does not have,
// or lays out differently. Their authority is the 82574 GbE Controller
// Datasheet (Intel 317694, "the 82574 datasheet"), chapter 10 (register
// descriptions); names follow it and Linux's e1000e (defines.h, regs.h),
// which spell them the same way. QEMU's model of the part is
// hw/net/e1000e_core.c.
const (
	// EERD_82574 fields: START at bit 0, DONE at bit 1, the word address
	// at bits 15:2 (the 82574 datasheet, EERD; Linux's E1000_EERW_*), where
	// the 82540EM has DONE at bit 4 and the address at 15:8.
	EERD_82574_DONE       uint32 = 1 << 1
	EERD_82574_ADDR_SHIFT        = 2

	// CTRL_GIO_MASTER_DISABLE stops the part issuing new PCIe master
	// requests (DMA); STATUS_GIO_MASTER_ENABLE clears once none is pending.
	// The datasheet asks for both before a software reset (Linux's
	// e1000e_disable_pcie_master). Bit 2 of CTRL is reserved on the 8254x.
	CTRL_GIO_MASTER_DISABLE  uint32 = 1 << 2
	STATUS_GIO_MASTER_ENABLE uint32 = 1 << 19

	// EECD_AUTO_RD says the part has finished reading its NVM after a
	// reset (Linux's e1000e_get_auto_rd_done polls it).
	EECD_AUTO_RD uint32 = 1 << 9

	// CTRL_EXT_IAME is interrupt acknowledge auto-mask enable: with it, a
	// read of ICR while an interrupt is asserted clears ICR and masks the
	// IMS bits set in IAM. Without it (and with IMS not zero) the 82574
	// leaves ICR as it was on a read, and the INTx line stays asserted.
	CTRL_EXT_IAME uint32 = 1 << 27
	// CTRL_EXT_RSVD22 and CTRL_EXT_RSVD23 are bits Linux's
	// e1000_initialize_hw_bits_82571 sets (22) and clears (23) on the 82574.
	CTRL_EXT_RSVD22 uint32 = 1 << 22
	CTRL_EXT_RSVD23 uint32 = 1 << 23

	// ICR_ASSERTED (INT_ASSERTED, bit 31) is set in ICR while the part
	// asserts its interrupt; ICR_ACK (bit 17) is "receive ACK frame".
	ICR_ASSERTED uint32 = 1 << 31
	ICR_ACK      uint32 = 1 << 17

	// IAM is the Interrupt Acknowledge Auto-Mask register: the IMS bits a
	// read of ICR clears when CTRL_EXT.IAME is set.
	IAM uint32 = 0x000E0
	// EIAC is the Extended Interrupt Auto Clear register (MSI-X only).
	EIAC uint32 = 0x000DC

	// RFCTL is the Receive Filter Control register. RFCTL_EXTEN selects
	// the extended receive descriptors: clear, the part uses the legacy
	// layout of RxDesc (QEMU: e1000e_rx_use_legacy_descriptor).
	RFCTL       uint32 = 0x05008
	RFCTL_EXTEN uint32 = 1 << 15

	// RXCSUM is the Receive Checksum Control register: IPOFLD and TUOFLD
	// have the part check IPv4 header and TCP/UDP checksums and report
	// them in the descriptor (IPCS, TCPCS, UDPCS; errors IPE, TCPE); PCSD
	// replaces the packet checksum by the RSS hash (extended descriptors
	// only).
	RXCSUM        uint32 = 0x05000
	RXCSUM_IPOFLD uint32 = 1 << 8
	RXCSUM_TUOFLD uint32 = 1 << 9
	RXCSUM_PCSD   uint32 = 1 << 13

	// RCTL_DTYP_MASK is the receive descriptor type (RCTL bits 11:10; 00b
	// legacy or extended as RFCTL says, 01b packet split); QEMU sizes the
	// buffers from PSRCTL when it is not zero. RCTL_FLXBUF_MASK (30:27)
	// is the flexible buffer size; zero means RCTL.BSIZE.
	RCTL_DTYP_MASK   uint32 = 3 << 10
	RCTL_FLXBUF_MASK uint32 = 0xF << 27

	// TARC0 is the Transmit Arbitration Count register of queue 0.
	// TARC0_ENABLE (bit 10) enables the queue: QEMU's e1000e sends nothing
	// from a queue without it. Linux sets bit 26 and clears 30:27.
	TARC0             uint32 = 0x03840
	TARC0_ENABLE      uint32 = 1 << 10
	TARC0_RSVD26      uint32 = 1 << 26
	TARC0_RSVD30_27   uint32 = 0xF << 27
	TXDCTL            uint32 = 0x03828
	TXDCTL_COUNT_DESC uint32 = 1 << 22 // Linux's e1000_initialize_hw_bits_82571

	// GCR is the PCIe control register; Linux sets its bit 22 on the
	// 82574. GCR2 bit 0 is the workaround of the 82574 errata for
	// unreliable PCIe completions (Linux, same function).
	GCR        uint32 = 0x05B00
	GCR_RSVD22 uint32 = 1 << 22
	GCR2       uint32 = 0x05B64
	GCR2_ERR   uint32 = 1 << 0
)
