package e1000

// VendorIntel is Intel's PCI vendor ID.
const VendorIntel uint16 = 0x8086

// Device describes one PCI function this package knows.
type Device struct {
	Vendor, ID uint16
	Name       string
	// Supported is true for the parts the driver core is written and tested
	// for. The others are listed so that the binder can say why it skips them.
	Supported bool
	// Note says what differs from the 82540EM, for the listed-only parts.
	Note string
}

// Devices is the device table: QEMU's 82540EM first (DESIGN.md, "The
// driver"), the next parts listed with what they need.
var Devices = []Device{
	{VendorIntel, 0x100E, "82540EM Gigabit Ethernet Controller (desktop; QEMU -device e1000)", true, ""},
	{VendorIntel, 0x1015, "82540EM Gigabit Ethernet Controller (LOM)", true, "same MAC as 0x100E"},
	{VendorIntel, 0x100F, "82545EM Gigabit Ethernet Controller (copper; QEMU e1000-82545em)", false,
		"same register map, EERD and legacy descriptors as the 82540EM; PCI-X bus and dual-port " +
			"variants (0x1010) untested, so not yet claimed"},
	{VendorIntel, 0x10D3, "82574L Gigabit Network Connection (QEMU -device e1000e)", false,
		"different manual (82574 datasheet): EERD has DONE at bit 1 and ADDR at 15:2, MSI-X, " +
			"extended RX descriptors (RFCTL), CTRL.GIO_MASTER_DISABLE before reset, IAM auto-mask; " +
			"legacy rings still work but reset and EEPROM paths need their own code"},
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
