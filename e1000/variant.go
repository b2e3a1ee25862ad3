package e1000

import (
	"fmt"
	"time"

	"keepnet/drivers/netdev"
)

// Variant is what differs between the parts Dev drives, written as data
// and a few hooks rather than copies of the driver: the 8254x parts of the
// manual, and the 82574L (QEMU's e1000e), whose register map, legacy
// descriptors, context descriptors and TSO are the 8254x's but whose EEPROM
// read register, reset sequence and interrupt acknowledgement are not.
// Devices says which variant each PCI ID is.
type Variant struct {
	// Name is the variant's name in logs: "8254x", "82574".
	Name string

	// EERDDone and EERDAddrShift are where EERD keeps its DONE bit and
	// the word address (START is bit 0 and DATA bits 31:16 on every part).
	EERDDone      uint32
	EERDAddrShift int

	// MasterDisable: before the reset, set CTRL.GIO_MASTER_DISABLE and
	// wait for STATUS.GIO_MASTER_ENABLE to clear, so that no DMA is in
	// flight on the PCIe link when the MAC resets (PCIe parts).
	MasterDisable bool
	// AutoReadDone: after the reset, wait for EECD.AUTO_RD (the part has
	// reloaded its NVM), then ResetSettle (its PHY configuration from the
	// NVM), before touching the part.
	AutoReadDone bool
	ResetSettle  time.Duration

	// Setup writes the part's own registers after the reset and the
	// general configuration, before the address filters and the rings:
	// bits the datasheet asks for, interrupt acknowledgement, the
	// receive descriptor format and checksum offload. nil for none.
	Setup func(r netdev.Regs)

	// Offloads are what the part does on transmit (Dev.Features):
	// checksum insertion and TCP segmentation over IPv4 on every part,
	// and over IPv6 what QEMU 7.2's model of it does right.
	Offloads netdev.Features
	// RxChecksum: the part verifies TCP/UDP checksums (and the IPv4
	// header's) on receive and says so in the descriptor (RXCSUM,
	// RDESC.STATUS TCPCS/UDPCS/IPCS, ERRORS TCPE/IPE); PollRX passes it
	// on. Without it PollRX reports no checksum verified, whatever the
	// status bits say.
	RxChecksum bool
}

// What QEMU 7.2's models do with checksums, read in its hw/net/e1000.c,
// e1000e_core.c and net_tx_pkt.c, and what the variants below take of it:
//
//   - e1000 (8254x), transmit: putsum sums from TUCSS to TUCSE (or the end)
//     into TUCSO whatever the family, and writes a sum of zero as 0xFFFF
//     (net_checksum_finish_nozero): TCP and UDP checksum insertion work
//     over IPv6, and a UDP checksum is never sent as zero.
//   - e1000, TCP segmentation over IPv6 (TUCMD.IP clear): xmit_seg writes
//     the frame's length less IPCSS into the payload length (IPCSS+4),
//     which counts the 40-byte IPv6 header too: every segment claims 40
//     bytes more than it carries, and a receiver drops it as truncated.
//     No TSO over IPv6 on the 8254x.
//   - e1000, receive: every descriptor is written back with IXSM set
//     (e1000_receive_iov), TCPCS and IPCS never: it verifies nothing, so
//     the 8254x variant trusts no status bit and ip and the transports
//     check every checksum themselves.
//   - e1000e (82574), transmit: net_tx_pkt recomputes the TCP/UDP checksum
//     itself with the IPv4 or IPv6 pseudo-header (net_tx_pkt_do_sw_csum,
//     IPv6 since QEMU 5.1), but with net_checksum_finish: a UDP sum of
//     zero goes out as zero, which IPv4 reads as "no checksum" and IPv6
//     forbids. So TCP over IPv6 yes, UDP over IPv6 no (sent checksummed in
//     software).
//   - e1000e, TCP segmentation over IPv6: without a virtio-net header on
//     the back end (the stream back end keepnet's relay uses) QEMU 7.2
//     "segments" by IP fragmentation (net_tx_pkt_do_sw_fragmentation; TCP
//     segmentation came in QEMU 8.0), written for IPv4. No TSO over IPv6.
//   - e1000e, receive: with RXCSUM.TUOFLD it verifies the TCP or UDP
//     checksum over IPv4 and IPv6 (net_rx_pkt_validate_l4_csum, not of
//     IPv4 fragments, not of a UDP datagram sent without one) and sets
//     TCPCS (and UDPCS) with TCPE if wrong; with IPOFLD the IPv4 header's,
//     IPCS and IPE. An IPv6 fragment it checks as if it were the whole
//     datagram: good fragments come with TCPE, so a checksum error is only
//     a hint (PollRX counts it and hands the frame up unchecked). With a
//     virtio-net header back end (tap) it trusts the host's flags instead
//     of computing. The 82574 variant passes what it verified on.

// offloads4 are what every part does over IPv4: TCP/UDP checksum
// insertion and TCP segmentation.
var offloads4 = netdev.FeatureChecksum | netdev.FeatureTSO

// Variant8254x is the 8254x of the manual: 82540EM, 82545EM, 82544GC.
var Variant8254x = &Variant{
	Name:          "8254x",
	EERDDone:      EERD_DONE,
	EERDAddrShift: EERD_ADDR_SHIFT,
	Offloads:      offloads4 | netdev.FeatureChecksum6 | netdev.FeatureUDPChecksum6,
}

// Variant82574 is the 82574L (Linux's e1000e, e1000_82574; QEMU's
// e1000e). The sequence is Linux's e1000_reset_hw_82571 and
// e1000_initialize_hw_bits_82571 for the 82574, less what keepnet does not
// use (the PHY, manageability, MSI-X), and what QEMU 7.2's model needs:
//
//   - EERD has DONE at bit 1 and the address at 15:2.
//   - The reset is preceded by GIO master disable and followed by the wait
//     for EECD.AUTO_RD and 25 ms for the PHY to load its configuration.
//   - Interrupts: CTRL_EXT.IAME with IAM = 0, so that reading ICR while the
//     interrupt is asserted clears it (deasserting INTx) and masks nothing
//     (the driver process masks the line, not IMS); EIAC = 0 (MSI-X only).
//     Without IAME, QEMU 7.2's e1000e does not clear ICR on a read while
//     IMS is not zero (e1000e_mac_icr_read), and the line never drops.
//   - Receive: RFCTL.EXTEN clear (legacy descriptors, the layout of
//     RxDesc), RCTL.DTYP zero (Dev never sets it); RXCSUM = IPOFLD|TUOFLD
//     with PCSD clear, so the descriptor reports the checksums it verified
//     (IPCS, TCPCS, UDPCS) and those it found wrong (IPE, TCPE).
//   - Transmit: TARC0.ENABLE, without which QEMU's e1000e does not send.
//
// QEMU 7.2's e1000e does not reset on CTRL.RST (it reloads RAL0/RAH0 from
// the permanent address and nothing else; the full software reset came in
// QEMU 8.0), so every register above is written, never assumed at its
// reset value.
var Variant82574 = &Variant{
	Name:          "82574",
	EERDDone:      EERD_82574_DONE,
	EERDAddrShift: EERD_82574_ADDR_SHIFT,
	MasterDisable: true,
	AutoReadDone:  true,
	ResetSettle:   25 * time.Millisecond, // Linux: msleep(25) for the 82573/82574/82583
	Setup:         setup82574,
	Offloads:      offloads4 | netdev.FeatureChecksum6,
	RxChecksum:    true,
}

func setup82574(r netdev.Regs) {
	r.Write32(CTRL_EXT, r.Read32(CTRL_EXT)&^CTRL_EXT_RSVD23|CTRL_EXT_RSVD22|CTRL_EXT_IAME)
	r.Write32(IAM, 0)
	r.Write32(EIAC, 0)
	r.Write32(GCR, r.Read32(GCR)|GCR_RSVD22)
	r.Write32(GCR2, r.Read32(GCR2)|GCR2_ERR)
	r.Write32(TXDCTL, r.Read32(TXDCTL)|TXDCTL_COUNT_DESC)
	r.Write32(TARC0, r.Read32(TARC0)&^TARC0_RSVD30_27|TARC0_RSVD26|TARC0_ENABLE)
	r.Write32(RFCTL, 0)
	r.Write32(RXCSUM, RXCSUM_IPOFLD|RXCSUM_TUOFLD)
}

// Waits of the 82574's reset.
const (
	// masterPolls bounds the wait for STATUS.GIO_MASTER_ENABLE to clear
	// (Linux: 800 polls of 100 us).
	masterPolls    = 800
	masterPollWait = 100 * time.Microsecond
	// autoReadPolls bounds the wait for EECD.AUTO_RD (Linux: 10 ms).
	autoReadPolls    = 100
	autoReadPollWait = 100 * time.Microsecond
)

// ErrAutoRead: the part did not finish reading its NVM after the reset.
var ErrAutoRead = fmt.Errorf("EECD.AUTO_RD did not set")

// disableMaster stops new DMA before the reset. A part that does not
// report the master disabled is reset anyway, as Linux does: the reset is
// what stops it.
func (v *Variant) disableMaster(r netdev.Regs, sleep func(time.Duration)) {
	if !v.MasterDisable {
		return
	}
	r.Write32(CTRL, r.Read32(CTRL)|CTRL_GIO_MASTER_DISABLE)
	for range masterPolls {
		if r.Read32(STATUS)&STATUS_GIO_MASTER_ENABLE == 0 {
			return
		}
		sleep(masterPollWait)
	}
}

// afterReset waits for the part to reload its NVM and PHY configuration.
func (v *Variant) afterReset(r netdev.Regs, sleep func(time.Duration)) error {
	if !v.AutoReadDone {
		return nil
	}
	done := false
	for range autoReadPolls {
		if r.Read32(EECD)&EECD_AUTO_RD != 0 {
			done = true
			break
		}
		sleep(autoReadPollWait)
	}
	if !done {
		return fmt.Errorf("e1000: %s reset: %w after %v", v.Name, ErrAutoRead, autoReadPolls*autoReadPollWait)
	}
	sleep(v.ResetSettle)
	return nil
}
