package e1000

import (
	"testing"

	"keepnet/drivers/netdev"
)

// The context descriptor of each offload (3.3.5): where the checksums
// start, sit and end, and TUCMD's IP (IPv4), TCP and TSE bits. An Ethernet
// header is 14 bytes, IPv4's 20, IPv6's 40; the TCP checksum is 16 bytes
// into its header, UDP's 6. Over IPv6 TUCMD.IP is clear and the IP
// checksum fields are zero: there is no header checksum, and the data
// descriptors ask for none (no IXSM).
func TestOffloadContext(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int
		o         netdev.Offload
		want      TxContext
		wantPOPTS uint8
	}{
		{"TCP/IPv4", 1514, netdev.Offload{L3: 14, L4: 34, TCP: true},
			TxContext{IPCSS: 14, IPCSO: 24, IPCSE: 33, TUCSS: 34, TUCSO: 50, TUCMD: TDESC_TUCMD_IP | TDESC_TUCMD_TCP},
			TDESC_POPTS_TXSM},
		{"UDP/IPv4", 600, netdev.Offload{L3: 14, L4: 34},
			TxContext{IPCSS: 14, IPCSO: 24, IPCSE: 33, TUCSS: 34, TUCSO: 40, TUCMD: TDESC_TUCMD_IP},
			TDESC_POPTS_TXSM},
		{"TSO/IPv4", 10054, netdev.Offload{L3: 14, L4: 34, TCP: true, MSS: 1448, HdrLen: 66},
			TxContext{IPCSS: 14, IPCSO: 24, IPCSE: 33, TUCSS: 34, TUCSO: 50, PAYLEN: 10054 - 66, HDRLEN: 66, MSS: 1448,
				TUCMD: TDESC_TUCMD_IP | TDESC_TUCMD_TCP | TDESC_TUCMD_TSE},
			TDESC_POPTS_TXSM | TDESC_POPTS_IXSM},
		{"UDP/IPv6", 600, netdev.Offload{L3: 14, L4: 54, IPv6: true},
			TxContext{IPCSS: 14, TUCSS: 54, TUCSO: 60},
			TDESC_POPTS_TXSM},
		{"TCP/IPv6", 1514, netdev.Offload{L3: 14, L4: 54, TCP: true, IPv6: true},
			TxContext{IPCSS: 14, TUCSS: 54, TUCSO: 70, TUCMD: TDESC_TUCMD_TCP},
			TDESC_POPTS_TXSM},
		{"TSO/IPv6", 20086, netdev.Offload{L3: 14, L4: 54, TCP: true, IPv6: true, MSS: 1428, HdrLen: 86},
			TxContext{IPCSS: 14, TUCSS: 54, TUCSO: 70, PAYLEN: 20000, HDRLEN: 86, MSS: 1428,
				TUCMD: TDESC_TUCMD_TCP | TDESC_TUCMD_TSE},
			TDESC_POPTS_TXSM},
	} {
		c, popts := offloadContext(tc.n, tc.o)
		if c != tc.want || popts != tc.wantPOPTS {
			t.Errorf("%s: offloadContext(%d, %+v) = %+v, POPTS %#x; want %+v, %#x", tc.name, tc.n, tc.o, c, popts, tc.want, tc.wantPOPTS)
		}
		// What goes into the ring reads back the same, with DEXT set.
		var d [16]byte
		TxContextDesc(d[:]).Set(c)
		want := c
		want.TUCMD |= TDESC_TUCMD_DEXT
		if got := TxContextDesc(d[:]).Context(); got != want {
			t.Errorf("%s: descriptor reads back %+v, want %+v", tc.name, got, want)
		}
	}
}

// What each variant offers, with the reasons in variant.go: checksums both
// ways on both families where QEMU 7.2 gets them right, TSO over IPv4
// only, and receive checksums trusted on the 82574 only.
func TestVariantOffloads(t *testing.T) {
	v4 := netdev.FeatureChecksum | netdev.FeatureTSO
	for _, tc := range []struct {
		v          *Variant
		want       netdev.Features
		rxChecksum bool
	}{
		{Variant8254x, v4 | netdev.FeatureChecksum6 | netdev.FeatureUDPChecksum6, false},
		{Variant82574, v4 | netdev.FeatureChecksum6, true},
	} {
		if tc.v.Offloads != tc.want || tc.v.RxChecksum != tc.rxChecksum {
			t.Errorf("%s: Offloads %b, RxChecksum %v; want %b, %v", tc.v.Name, tc.v.Offloads, tc.v.RxChecksum, tc.want, tc.rxChecksum)
		}
	}
}
