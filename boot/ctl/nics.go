package ctl

import (
	"encoding/json"
	"strings"
)

// NIC is one network interface as the status shows it: what its driver
// publishes (drivers/nic.Stats) with the address ip gives it
// (servers/ip.IfaceStats). Only the fields read here are decoded, by their
// Go names, the JSON both publish; nics_test.go keeps them in step.
type NIC struct {
	Name       string   `json:"name"`               // the driver component, e1000.0
	PCIID      string   `json:"pci_id,omitempty"`   // vendor:device, 8086:100e
	MAC        string   `json:"mac,omitempty"`      // 52:54:00:12:34:56
	Addr       string   `json:"addr,omitempty"`     // address/prefix; empty without ip's
	IPv6       []string `json:"ipv6,omitempty"`     // "address/prefix state", link-local first
	LinkUp     bool     `json:"link_up"`            //
	Generation int      `json:"generation"`         // the driver's
	RxBytes    uint64   `json:"rx_bytes"`           // by the device, since the driver's start
	TxBytes    uint64   `json:"tx_bytes"`           //
	RxFrames   uint64   `json:"rx_frames"`          //
	TxFrames   uint64   `json:"tx_frames"`          //
	Resets     uint64   `json:"resets"`             // device resets by this driver process
	Family     string   `json:"family,omitempty"`   // e1000
	PCIAddr    string   `json:"pci_addr,omitempty"` // 0000:00:03.0
	// Backend is how the driver reaches the device: uio (physical
	// addresses), or vfio with its interrupt (an IOMMU confines its DMA).
	Backend string `json:"backend,omitempty"`
}

// driverStats is the part of drivers/nic.Stats a NIC shows.
type driverStats struct {
	Generation  int
	PCI, PCIID  string
	Family, MAC string
	Backend     string
	LinkUp      bool
	Resets      uint64
	Device      struct{ RxFrames, RxBytes, TxFrames, TxBytes uint64 }
}

// ipStats is the part of servers/ip.Stats a NIC shows.
type ipStats struct {
	Ifaces []struct {
		Driver, Addr string
		IPv6         []string
	}
}

// NICs are the interfaces of the status: every component that publishes a
// driver's statistics (a PCI function), in table order, with its address
// from ip's. Empty on the Linux stack, whose interfaces publish nothing.
func (s Status) NICs() []NIC {
	addrs, addrs6 := map[string]string{}, map[string][]string{}
	if c, ok := s.Component("ip"); ok && len(c.Stats) > 0 {
		var ip ipStats
		if json.Unmarshal(c.Stats, &ip) == nil {
			for _, i := range ip.Ifaces {
				addrs[i.Driver], addrs6[i.Driver] = i.Addr, i.IPv6
			}
		}
	}
	var out []NIC
	for _, c := range s.Components {
		if len(c.Stats) == 0 {
			continue
		}
		var d driverStats
		if json.Unmarshal(c.Stats, &d) != nil || d.PCI == "" {
			continue
		}
		out = append(out, NIC{
			Name: c.Name, PCIID: d.PCIID, MAC: colonMAC(d.MAC), Addr: addrs[c.Name], IPv6: addrs6[c.Name], LinkUp: d.LinkUp,
			Generation: d.Generation, RxBytes: d.Device.RxBytes, TxBytes: d.Device.TxBytes,
			RxFrames: d.Device.RxFrames, TxFrames: d.Device.TxFrames, Resets: d.Resets,
			Family: d.Family, PCIAddr: d.PCI, Backend: d.Backend,
		})
	}
	return out
}

// colonMAC writes a MAC published as 12 hex digits with colons.
func colonMAC(hex string) string {
	if len(hex) != 12 || strings.Contains(hex, ":") {
		return hex
	}
	var b strings.Builder
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(hex[i : i+2])
	}
	return b.String()
}
