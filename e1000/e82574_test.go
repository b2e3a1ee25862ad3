package e1000_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/e1000"
	"keepnet/e1000/model"
)

// The 82574L's reset, as QEMU 7.2's e1000e and a real part see it: the
// address through its EERD layout, the PCIe master disabled before the
// reset and enabled again after it, and the part's own registers written
// whatever they held.
func TestReset82574(t *testing.T) {
	for _, hw := range []bool{false, true} {
		t.Run(fmt.Sprintf("hardware=%v", hw), func(t *testing.T) {
			// NoRA: the address is in the EEPROM only, so a wrong EERD
			// layout finds none.
			r := newRig(t, model.Config{Hardware: hw, Part: model.Part82574L, NoRA: true}, e1000.Config{RxRing: 64, TxRing: 32, Variant: e1000.Variant82574})
			if got := r.dev.MAC(); got != testMAC {
				t.Errorf("MAC() = %x, want %x", got, testMAC)
			}
			if got := r.m.EEPROMReads(); got != 3 {
				t.Errorf("EEPROM words read through EERD = %d, want 3 (START bit 0, DONE bit 1, ADDR 15:2)", got)
			}
			for _, w := range []struct {
				name       string
				off        uint32
				mask, want uint32
			}{
				{"CTRL.GIO_MASTER_DISABLE", e1000.CTRL, e1000.CTRL_GIO_MASTER_DISABLE, 0},
				{"STATUS.GIO_MASTER_ENABLE", e1000.STATUS, e1000.STATUS_GIO_MASTER_ENABLE, e1000.STATUS_GIO_MASTER_ENABLE},
				{"CTRL_EXT.IAME", e1000.CTRL_EXT, e1000.CTRL_EXT_IAME, e1000.CTRL_EXT_IAME},
				{"IAM", e1000.IAM, ^uint32(0), 0},
				{"EIAC", e1000.EIAC, ^uint32(0), 0},
				{"RFCTL.EXTEN", e1000.RFCTL, e1000.RFCTL_EXTEN, 0},
				{"RXCSUM", e1000.RXCSUM, ^uint32(0), e1000.RXCSUM_IPOFLD | e1000.RXCSUM_TUOFLD},
				{"TARC0.ENABLE", e1000.TARC0, e1000.TARC0_ENABLE, e1000.TARC0_ENABLE},
				{"GCR bit 22", e1000.GCR, e1000.GCR_RSVD22, e1000.GCR_RSVD22},
				{"RCTL.DTYP", e1000.RCTL, e1000.RCTL_DTYP_MASK | e1000.RCTL_FLXBUF_MASK, 0},
				{"IMS", e1000.IMS, ^uint32(0), e1000.IntrHandled},
				{"RAH0", e1000.RAH0, ^uint32(0), 0x5634 | e1000.RAH_AV},
			} {
				if got := r.m.Peek(w.off) & w.mask; got != w.want {
					t.Errorf("%s = %#x, want %#x", w.name, got, w.want)
				}
			}
			at := func(f func(regWrite) bool) int { return slices.IndexFunc(r.regs.log, f) }
			master := at(func(w regWrite) bool { return w.off == e1000.CTRL && w.val&e1000.CTRL_GIO_MASTER_DISABLE != 0 })
			rst := at(func(w regWrite) bool { return w.off == e1000.CTRL && w.val&e1000.CTRL_RST != 0 })
			if master < 0 || rst < 0 || master > rst {
				t.Errorf("GIO master disable at write %d, CTRL.RST at %d: want the master disabled first", master, rst)
			}
		})
	}
}

// A previous driver of the 82574L — Linux's e1000e, say, which uses
// extended descriptors, auto-masks every cause and may stop the queue —
// left registers QEMU 7.2's CTRL.RST does not reset. Reset writes each of
// them: frames arrive in the legacy layout, frames leave, and reading ICR
// deasserts the interrupt without masking it.
func TestReset82574AfterForeignDriver(t *testing.T) {
	r := newRig(t, model.Config{Part: model.Part82574L}, e1000.Config{RxRing: 16, TxRing: 16, Variant: e1000.Variant82574})
	r.m.Write32(e1000.RFCTL, e1000.RFCTL_EXTEN)
	r.m.Write32(e1000.RXCSUM, e1000.RXCSUM_PCSD)
	r.m.Write32(e1000.CTRL_EXT, 0)
	r.m.Write32(e1000.IAM, ^uint32(0))
	r.m.Write32(e1000.TARC0, 0)
	r.start()

	cookies := r.fill()
	f := frame(testMAC, 7, 99) // odd length: misread as DD in the extended layout
	if !r.m.Deliver(f) {
		t.Fatal("Deliver = false")
	}
	if got := r.pollRX(); len(got) != 1 || got[0].cookie != cookies[0] || string(got[0].frame) != string(f) || got[0].bad {
		t.Errorf("PollRX = %+v, want the frame in buffer %#x, good", got, cookies[0])
	}
	if !r.m.Pending() {
		t.Fatal("no interrupt pending after a frame arrived")
	}
	if c := r.dev.Interrupts(); c&e1000.ICR_RXT0 == 0 {
		t.Errorf("Interrupts() = %#x, want RXT0", c)
	}
	if r.m.Pending() {
		t.Errorf("interrupt still asserted after Interrupts() (ICR %#x): reading ICR did not clear it", r.m.Peek(e1000.ICR))
	}
	if got := r.m.Peek(e1000.IMS); got != e1000.IntrHandled {
		t.Errorf("IMS after Interrupts() = %#x, want %#x (nothing auto-masked)", got, e1000.IntrHandled)
	}
	if _, ok := r.send(frame(bcast, 1, 64)); !ok {
		t.Fatal("send refused")
	}
	r.dev.FlushTX()
	if len(r.wire) != 1 {
		t.Errorf("%d frames on the wire, want 1 (TARC0.ENABLE)", len(r.wire))
	}
}

// The 8254x sequence on the 82574L is what the model must catch: EERD read
// in the 8254x layout never completes (the address comes only from the
// RAL0/RAH0 fallback, and without it there is none), and an ICR read leaves
// the line asserted.
func TestVariant8254xOn82574Fails(t *testing.T) {
	mem := make([]byte, 1<<16)
	m := model.New(model.Config{MAC: testMAC, Mem: mem, Part: model.Part82574L, NoRA: true})
	dev, err := e1000.New(m, netdev.Region{Mem: mem[:4096], Addr: 0}, e1000.Config{RxRing: 8, TxRing: 8, Sleep: func(time.Duration) {}, Variant: e1000.Variant8254x})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Reset(); !errors.Is(err, e1000.ErrNoMAC) {
		t.Errorf("Reset() with the 8254x EERD layout on the 82574L = %v, want %v", err, e1000.ErrNoMAC)
	}

	r := newRig(t, model.Config{Part: model.Part82574L}, e1000.Config{RxRing: 16, TxRing: 16, Variant: e1000.Variant8254x})
	r.fill()
	r.m.Deliver(frame(testMAC, 1, 100))
	r.dev.Interrupts()
	if !r.m.Pending() {
		t.Error("with the 8254x sequence an ICR read deasserted the 82574L's interrupt; the model should keep it (no IAME)")
	}
}

// udpFrame is an Ethernet + IPv4 + UDP frame to testMAC with correct
// checksums.
func udpFrame(payload string) []byte {
	f := make([]byte, 42+len(payload))
	copy(f, testMAC[:])
	copy(f[6:], []byte{0x02, 0, 0, 0, 0, 1})
	f[12], f[13] = 0x08, 0x00
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	ip[8], ip[9] = 64, 17
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum16(ip, 0)))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], 7)
	binary.BigEndian.PutUint16(udp[2:], 40000)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	ph := sum16(ip[12:20], 17+uint32(len(udp)))
	binary.BigEndian.PutUint16(udp[6:], ^uint16(sum16(udp, ph)))
	return f
}

// The 82574L checks receive checksums (RXCSUM): a frame whose IPv4 header
// or UDP checksum is wrong is counted (RxBadChecksum) and comes out of
// PollRX unchecked, for ip and the transports to drop (QEMU's e1000e
// flags good IPv6 fragments too: rx.go). The 8254x model reports IXSM
// (checksums not checked): ip's own checks are all there is.
func TestRxChecksum(t *testing.T) {
	good := udpFrame("checksummed")
	badUDP := udpFrame("checksummed")
	badUDP[len(badUDP)-1] ^= 0xFF
	badIP := udpFrame("checksummed")
	badIP[14+8]-- // TTL: the header checksum no longer holds
	for _, p := range parts {
		t.Run(p.name, func(t *testing.T) {
			r := newRig(t, model.Config{Part: p.model}, e1000.Config{RxRing: 16, TxRing: 16, Variant: p.variant})
			r.fill()
			for _, tc := range []struct {
				name  string
				frame []byte
				bad   bool
			}{
				{"good", good, false},
				{"UDP checksum wrong", badUDP, false},
				{"IPv4 header checksum wrong", badIP, false},
			} {
				if !r.m.Deliver(tc.frame) {
					t.Fatalf("%s: Deliver = false", tc.name)
				}
				got := r.pollRX() // the frame, padded to 60 bytes
				if len(got) != 1 || got[0].bad != tc.bad || !bytes.HasPrefix(got[0].frame, tc.frame) {
					t.Errorf("%s: PollRX = %+v, want the frame with bad = %v", tc.name, got, tc.bad)
				}
			}
			wantBad := uint64(0)
			if p.model == model.Part82574L {
				wantBad = 2
			}
			if s := r.dev.Stats(); s.RxErrors != 0 || s.RxBadChecksum != wantBad || s.RxFrames != 3 {
				t.Errorf("Stats() = %+v, want 3 frames, %d with a bad checksum, no RxErrors (checksum errors are not frame errors)", s, wantBad)
			}
		})
	}
}
