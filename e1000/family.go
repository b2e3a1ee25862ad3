package e1000

import "keepnet/drivers/netdev"

var _ netdev.Device = (*Dev)(nil)

// Family is the 8254x as a netdev family: the supported parts of Devices
// (QEMU's 82540EM, 8086:100e, first), quiesced by Quiesce and driven by
// Dev with the default Config; under QEMU its statistics registers are
// running totals (Config.StickyCounters).
func Family() netdev.Family {
	var ids []netdev.PCIID
	for _, d := range Devices {
		if d.Supported {
			ids = append(ids, netdev.PCIID{Vendor: d.Vendor, Device: d.ID})
		}
	}
	return netdev.Family{
		Name:      "e1000",
		IDs:       ids,
		RingBytes: RingBytes(Config{}),
		Quiesce:   func(r netdev.Regs) error { return Quiesce(r, nil) },
		Open: func(r netdev.Regs, rings netdev.Region, p netdev.Platform) (netdev.Device, error) {
			d, err := New(r, rings, Config{StickyCounters: p.QEMU})
			if err != nil {
				return nil, err
			}
			return d, nil
		},
	}
}
