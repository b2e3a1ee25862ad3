package ctl

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"keepnet/drivers/netdev"
	"keepnet/drivers/nic"
	"keepnet/servers/ip"
)

// NICs reads what the driver and ip really publish: their own types,
// marshalled, so that a renamed field fails here.
func TestNICs(t *testing.T) {
	drv := nic.Stats{Generation: 2, PCI: "0000:00:03.0", PCIID: "8086:100e", Family: "e1000", Backend: "vfio, INTx", MAC: "525400123456", LinkUp: true,
		Counters: nic.Counters{Resets: 1}, Device: netdev.Stats{RxFrames: 10, RxBytes: 1000, TxFrames: 20, TxBytes: 2000}}
	ips := ip.Stats{Ifaces: []ip.IfaceStats{{Driver: "e1000.0", Addr: "10.0.2.15/24"}}}
	raw := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	st := Status{Components: []Component{
		{Name: "store"},
		{Name: "e1000.0", Stats: raw(drv)},
		{Name: "ip", Stats: raw(ips)},
		{Name: "tcp", Stats: json.RawMessage(`{"Generation":1}`)},
	}}
	want := []NIC{{Name: "e1000.0", PCIID: "8086:100e", MAC: "52:54:00:12:34:56", Addr: "10.0.2.15/24", LinkUp: true, Generation: 2,
		RxBytes: 1000, TxBytes: 2000, RxFrames: 10, TxFrames: 20, Resets: 1, Family: "e1000", PCIAddr: "0000:00:03.0", Backend: "vfio, INTx"}}
	if diff := cmp.Diff(want, st.NICs()); diff != "" {
		t.Errorf("NICs() (-want +got):\n%s", diff)
	}
}
