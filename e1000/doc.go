// Package e1000 is everything Intel PRO/1000 (8254x) and 82574L specific in
// keepnet: register offsets and bit fields, descriptor layouts, the device
// table, and the driver core — reset and initialisation, the receive and
// transmit rings, interrupts, link state and counters. The authority is the
// PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's
// Manual (Intel 317453, "the manual"); every constant names its section.
// The 82574L (QEMU's e1000e) keeps the 8254x register map, legacy and
// context descriptors; what differs — its EEPROM read register, reset
// steps, interrupt acknowledgement, receive checksum and queue enable — is
// a Variant (variant.go), chosen by PCI ID from Devices, and its registers
// are named after its own datasheet (Intel 317694) at the end of regs.go.
//
// The core has no operating-system dependencies and speaks the types of the
// device-neutral driver framework, drivers/netdev: Dev is a netdev.Device,
// and Family is what the driver process finds in its registry for the PCI
// IDs listed in Devices. It talks to the device only through netdev.Regs
// (BAR0 mapped by drivers/pci, or the model in e1000/model), to DMA memory
// through netdev.Region and netdev.Buffer (host view plus bus address), and
// to time through an injected Sleep. The driver process (drivers/nic) binds
// the PCI function, maps the BAR and the pools, waits for interrupts and
// calls Dev through netdev.Device; tests run the same Dev against
// e1000/model in milliseconds.
//
// # Names
//
// Registers and fields are spelled as in the manual, in capitals, with an
// underscore where the manual writes a dot: CTRL.RST is CTRL_RST, RCTL.BSIZE
// 2048 is RCTL_BSIZE_2048, the DD bit of a receive descriptor's STATUS is
// RDESC_STATUS_DD. This breaks Go's MixedCaps convention on purpose: these
// names are looked up in the manual (and in Linux's and Minix's drivers,
// which spell them the same way), and grepping "CTRL_RST" should find the
// manual's "CTRL.RST" without translation. Everything that is not a manual
// name (Dev, PostRX, ...) is ordinary Go.
//
// # Rings
//
// Both rings keep one descriptor empty, so head == tail means empty (3.2.6,
// 3.4). PostRX and Transmit only fill descriptors; FlushRX and FlushTX tell
// the device with one tail write per batch (MMIO writes are the expensive
// part). PollRX and PollTX harvest descriptors whose DD bit the device set,
// in ring order. Every buffer handed to the device comes back exactly once:
// through PollRX/PollTX, or in the netdev.Forgotten list of Reset.
//
// # Restart protocol
//
// A driver process that starts — first boot or after a crash — trusts
// nothing the device holds:
//
//  0. Quiesce (the Family's Quiesce) stops the device's DMA before the
//     driver process says hello to init, after which the previous
//     generation's pools may be freed.
//  1. New lays out the rings in DMA memory; Reset then resets the device and
//     rewrites every ring and control register (see Reset for the steps and
//     for QEMU's and real hardware's quirks: QEMU does not really reset,
//     real parts cache descriptors). After Reset the device owns no buffer.
//  2. Every buffer the previous driver had posted is forgotten. The crashed
//     process's Dev is gone, so its lists are gone too; what survives is in
//     the caller's tables: the driver process tells ip which TX requests
//     were never acknowledged, ip resubmits them (a frame the device had
//     already sent goes out twice: "a few duplicates"), and ip refills the
//     RX ring from its pool. A Reset of a live Dev (a device that stopped
//     receiving) returns the same information in Forgotten.
//  3. The pools the old driver used stay mapped and are not freed until the
//     reset has happened (the supervisor holds them), so no DMA ever lands
//     in freed memory.
//
// On QEMU the first RCTL write pauses receive for one second; Reset avoids
// rewriting an unchanged RCTL so that a restart does not pay it again.
package e1000
