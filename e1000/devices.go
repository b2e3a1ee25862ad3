package e1000

// VendorIntel is Intel's PCI vendor ID.
const VendorIntel uint16 = 0x8086

// Device describes one PCI function this package knows.
type Device struct {
	Vendor, ID uint16
	Name       string
	// Supported is true for the parts the driver core is written for: the
	// family drives them. The others are listed so that the binder can say
	// why it skips them.
	Supported bool
	// Tested is true for the supported parts a QEMU model of which the
	// integration tests drive (qemu/itest, TestNICModels; `keepnet up
	// --nic`). A supported part that is not Tested is written from the
	// datasheet only: the driver takes it only when asked
	// (keepnet.nic.untested=1).
	Tested bool
	// Note says what differs from the 82540EM.
	Note string
	// Variant is the part's EERD layout, reset steps and own registers
	// (variant.go); nil for a part the driver does not drive.
	Variant *Variant
}

// Devices is the device table: QEMU's 82540EM first (DESIGN.md, "The
// driver"), then the other 8254x parts the same code drives — the register
// map, the legacy descriptors and the reset sequence of the 8254x manual
// are theirs too — then the 82574 parts, which the same code drives with
// the differences their Variant holds.
var Devices = []Device{
	{VendorIntel, 0x100E, "82540EM Gigabit Ethernet Controller (desktop; QEMU -device e1000)", true, true, "", Variant8254x},
	{VendorIntel, 0x1015, "82540EM Gigabit Ethernet Controller (LOM)", true, false, "same MAC as 0x100E; no QEMU model", Variant8254x},
	{VendorIntel, 0x100F, "82545EM Gigabit Ethernet Controller (copper; QEMU e1000-82545em)", true, true,
		"same register map, EERD and legacy descriptors as the 82540EM; a PCI-X part", Variant8254x},
	{VendorIntel, 0x1011, "82545EM Gigabit Ethernet Controller (fiber)", true, false,
		"the 82545EM with a SerDes instead of the PHY: link by the SerDes, no QEMU model", Variant8254x},
	{VendorIntel, 0x100C, "82544GC Gigabit Ethernet Controller (copper; QEMU e1000-82544gc)", true, true,
		"no EERD (EEPROM words only by bit-banging EECD, 13.4.3): the MAC comes from RAL0/RAH0, " +
			"which the part loads from the EEPROM at reset", Variant8254x},
	{VendorIntel, 0x100D, "82544GC Gigabit Ethernet Controller (LOM)", true, false, "as 0x100C; no QEMU model", Variant8254x},
	{VendorIntel, 0x10D3, "82574L Gigabit Network Connection (QEMU -device e1000e)", true, true,
		"its own datasheet (Intel 317694): EERD has DONE at bit 1 and ADDR at 15:2; GIO master disable " +
			"before the reset, EECD.AUTO_RD after it; ICR clears on read only with CTRL_EXT.IAME; " +
			"legacy receive descriptors with RFCTL.EXTEN clear; RXCSUM; TARC0.ENABLE; " +
			"MSI-X unused (INTx through uio)", Variant82574},
	{VendorIntel, 0x10F6, "82574LA Gigabit Network Connection", true, false,
		"the 82574L's register map and NVM; no QEMU model", Variant82574},
}

// Lookup finds vendor:device in Devices.
func Lookup(vendor, device uint16) (Device, bool) {
	for _, d := range Devices {
		if d.Vendor == vendor && d.ID == device {
			return d, true
		}
	}
	return Device{}, false
}
