package e1000

import (
	"fmt"

	"keepnet/drivers/netdev"
)

var (
	_ netdev.Device    = (*Dev)(nil)
	_ netdev.Moderator = (*Dev)(nil)
)

// Family is the Intel gigabit family as a netdev family: the supported
// parts of Devices (QEMU's 82540EM, 8086:100e, first; those not Tested
// marked so), quiesced by Quiesce and driven by Dev with the default Config
// and the Variant the PCI ID has in Devices; under QEMU the statistics
// registers are running totals (Config.StickyCounters).
func Family() netdev.Family {
	var ids []netdev.PCIID
	untested := map[netdev.PCIID]string{}
	for _, d := range Devices {
		if !d.Supported {
			continue
		}
		id := netdev.PCIID{Vendor: d.Vendor, Device: d.ID}
		ids = append(ids, id)
		if !d.Tested {
			untested[id] = d.Name
		}
	}
	return netdev.Family{
		Name:      "e1000",
		IDs:       ids,
		Untested:  untested,
		RingBytes: RingBytes(Config{}),
		Quiesce: func(r netdev.Regs, id netdev.PCIID) error {
			v, err := variant(id)
			if err != nil {
				return err
			}
			return Quiesce(r, v, nil)
		},
		Open: func(r netdev.Regs, id netdev.PCIID, rings netdev.Region, p netdev.Platform) (netdev.Device, error) {
			v, err := variant(id)
			if err != nil {
				return nil, err
			}
			d, err := New(r, rings, Config{StickyCounters: p.QEMU, Variant: v})
			if err != nil {
				return nil, err
			}
			return d, nil
		},
		TestHooks: map[string]func(netdev.Regs){
			HookStopTX: StopTX,
			HookStopRX: StopRX,
		},
	}
}

// variant is the Variant Devices gives id.
func variant(id netdev.PCIID) (*Variant, error) {
	d, ok := Lookup(id.Vendor, id.Device)
	if !ok || !d.Supported || d.Variant == nil {
		return nil, fmt.Errorf("e1000: PCI device %s is not one this family drives", id)
	}
	return d.Variant, nil
}

// Test hooks (netdev.Family.TestHooks): the device stops behind the
// driver's back, as a part with a wedged DMA engine would, for the
// driver's watchdog to notice.
const (
	HookStopTX = "stop-tx"
	HookStopRX = "stop-rx"
)

// StopTX clears TCTL.EN (13.4.33): the transmitter stops taking
// descriptors, TDH stays where it is.
func StopTX(r netdev.Regs) { r.Write32(TCTL, r.Read32(TCTL)&^TCTL_EN) }

// StopRX clears RCTL.EN (13.4.22): the receiver takes no frame. (QEMU's
// e1000 then leaves frames queued outside the device and counts no miss,
// so only a part that drops them shows a receive stall.)
func StopRX(r netdev.Regs) { r.Write32(RCTL, r.Read32(RCTL)&^RCTL_EN) }
