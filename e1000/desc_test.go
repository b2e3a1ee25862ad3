package e1000

import (
	"testing"
)

// TestRegisterOffsets checks the constants against the manual's register
// summary (Table 13-2), written out again by hand.
func TestRegisterOffsets(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uint32
		want uint32
	}{
		{"CTRL", CTRL, 0x0000}, {"STATUS", STATUS, 0x0008}, {"EECD", EECD, 0x0010},
		{"EERD", EERD, 0x0014}, {"ICR", ICR, 0x00C0}, {"ITR", ITR, 0x00C4},
		{"ICS", ICS, 0x00C8}, {"IMS", IMS, 0x00D0}, {"IMC", IMC, 0x00D8},
		{"RCTL", RCTL, 0x0100}, {"TCTL", TCTL, 0x0400}, {"TIPG", TIPG, 0x0410},
		{"RDBAL", RDBAL, 0x2800}, {"RDLEN", RDLEN, 0x2808}, {"RDH", RDH, 0x2810},
		{"RDT", RDT, 0x2818}, {"RDTR", RDTR, 0x2820}, {"RADV", RADV, 0x282C},
		{"TDBAL", TDBAL, 0x3800}, {"TDLEN", TDLEN, 0x3808}, {"TDH", TDH, 0x3810},
		{"TDT", TDT, 0x3818}, {"TIDV", TIDV, 0x3820}, {"TADV", TADV, 0x382C},
		{"MTA", MTA, 0x5200}, {"RAL(1)", RAL(1), 0x5408}, {"RAH(15)", RAH(15), 0x547C},
		{"MPC", MPC, 0x4010}, {"RNBC", RNBC, 0x40A0},
		{"CTRL_RST", CTRL_RST, 0x04000000}, {"RCTL_SECRC", RCTL_SECRC, 0x04000000},
		{"RCTL_BAM", RCTL_BAM, 0x8000}, {"ICR_RXT0", ICR_RXT0, 0x80},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func TestDescriptorViews(t *testing.T) {
	b := make([]byte, DescSize)
	for i := range b {
		b[i] = 0xAA
	}
	rx := RxDesc(b)
	rx.SetAddr(0x1122334455667788)
	if got := rx.Addr(); got != 0x1122334455667788 {
		t.Errorf("RxDesc.Addr() = %#x, want %#x", got, uint64(0x1122334455667788))
	}
	if rx.Status() != 0 || rx.Length() != 0 || rx.Errors() != 0 {
		t.Errorf("RxDesc after SetAddr: status %#x length %d errors %#x, want zeros", rx.Status(), rx.Length(), rx.Errors())
	}
	rx.SetWriteBack(1514, RDESC_STATUS_DD|RDESC_STATUS_EOP, RDESC_ERRORS_IPE)
	if got := [4]byte(b[8:12]); got != [4]byte{0xea, 0x05, 0, 0} {
		t.Errorf("RX length bytes = %x, want ea050000 (little-endian 1514)", got)
	}
	if uint8(loadWriteBack(b)) != RDESC_STATUS_DD|RDESC_STATUS_EOP || uint8(loadWriteBack(b)>>8) != RDESC_ERRORS_IPE {
		t.Errorf("loadWriteBack = %#x, want status 0x03, errors 0x40", loadWriteBack(b))
	}

	tx := TxDesc(make([]byte, DescSize))
	tx.Set(0x1000, 60, TDESC_CMD_EOP|TDESC_CMD_RS)
	if got := [4]byte(tx[8:12]); got != [4]byte{60, 0, 0, 0x09} {
		t.Errorf("TX length/CSO/CMD bytes = %x, want 3c000009", got)
	}
	if tx.IsExtended() {
		t.Error("legacy TxDesc.IsExtended() = true")
	}

	dd := TxDataDesc(make([]byte, DescSize))
	dd.Set(0x2000, 0x12345, TDESC_CMD_EOP, TDESC_POPTS_TXSM)
	if dd.DTALEN() != 0x12345 || !TxDesc(dd).IsExtended() || TxDesc(dd).DTYP() != DTYP_DATA || dd.DCMD()&TDESC_CMD_EOP == 0 {
		t.Errorf("TxDataDesc = %x: DTALEN %#x DTYP %d DCMD %#x", []byte(dd), dd.DTALEN(), TxDesc(dd).DTYP(), dd.DCMD())
	}
}

// FuzzContextDesc: decoding arbitrary bytes never panics, and Set(Context())
// reproduces the descriptor except DTYP and DEXT, which Set forces.
func FuzzContextDesc(f *testing.F) {
	f.Add(make([]byte, DescSize))
	f.Add([]byte{14, 24, 33, 0, 34, 50, 0, 0, 0xdc, 0x05, 0, 0x2f, 0, 54, 0xb4, 0x05})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < DescSize {
			return
		}
		in := TxContextDesc(b[:DescSize])
		c := in.Context()
		_ = RxDesc(b).Length() + uint16(RxDesc(b).Status()) + TxDesc(b).Length() + uint16(TxDataDesc(b).POPTS())
		out := TxContextDesc(make([]byte, DescSize))
		out.Set(c)
		want := append([]byte(nil), in...)
		want[10] = want[10]&0x0F | DTYP_CONTEXT<<4
		want[11] |= TDESC_TUCMD_DEXT
		want[12] = 0
		if string(out) != string(want) {
			t.Errorf("Set(Context(%x)) = %x, want %x", []byte(in), []byte(out), want)
		}
	})
}
