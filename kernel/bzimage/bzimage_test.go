package bzimage

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// fakeBzImage builds a minimal image: setup header, then payload at
// payload_offset within the protected-mode code.
func fakeBzImage(payload []byte) []byte {
	const sects = 3
	img := make([]byte, (sects+1)*512+64+len(payload))
	img[offSetupSects] = sects
	binary.LittleEndian.PutUint32(img[offHeaderMagic:], headerMagic)
	binary.LittleEndian.PutUint16(img[offVersion:], 0x020f)
	binary.LittleEndian.PutUint32(img[offPayloadOffset:], 64)
	binary.LittleEndian.PutUint32(img[offPayloadLength:], uint32(len(payload)))
	copy(img[(sects+1)*512+64:], payload)
	return img
}

func TestPayload(t *testing.T) {
	want := []byte("compressed kernel goes here")
	got, err := Payload(fakeBzImage(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Payload = %q, %v; want %q", got, err, want)
	}
	bad := fakeBzImage(want)
	binary.LittleEndian.PutUint32(bad[offPayloadLength:], 1<<30)
	if _, err := Payload(bad); err == nil {
		t.Error("Payload with a length past the end succeeded")
	}
	if _, err := Payload([]byte("MZ not a kernel")); err == nil {
		t.Error("Payload of garbage succeeded")
	}
}

func TestExtractRejectsNonELF(t *testing.T) {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte("not an ELF file at all"))
	zw.Close()
	if _, err := Extract(fakeBzImage(z.Bytes())); err == nil {
		t.Error("Extract of a gzip payload that is not ELF succeeded")
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		n := append([]byte(name), 0)
		binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(len(n)), uint32(len(desc)), typ})
		b.Write(n)
		b.Write(make([]byte, (4-len(n)%4)%4))
		b.Write(desc)
		b.Write(make([]byte, (4-len(desc)%4)%4))
		return b.Bytes()
	}
	notes := append(note("GNU", 3, []byte{1, 2, 3, 4, 5}), note("Xen", 18, []byte{0, 0, 0, 1})...)
	if !hasNote(notes, "Xen", 18, binary.LittleEndian) {
		t.Error("hasNote missed the Xen PHYS32_ENTRY note")
	}
	if hasNote(notes, "Xen", 5, binary.LittleEndian) {
		t.Error("hasNote found a note type that is not there")
	}
	if hasNote(notes[:20], "Xen", 18, binary.LittleEndian) {
		t.Error("hasNote read past a truncated note")
	}
}

// Debian's kernel, when `make kernel` fetched it: xz payload with BCJ, PVH note.
func TestExtractDebianKernel(t *testing.T) {
	img, err := os.ReadFile("../../images/kernel/bzImage")
	if err != nil {
		if os.Getenv("KEEPNET_ITEST") == "1" {
			t.Fatal("images/kernel/bzImage missing: run 'make kernel'")
		}
		t.Skip("no kernel fetched (make kernel)")
	}
	vmlinux, err := Extract(img)
	if errors.Is(err, ErrNoPVH) {
		t.Skip("this kernel has no PVH entry")
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(vmlinux) < len(img) || !bytes.HasPrefix(vmlinux, []byte("\x7fELF")) {
		t.Errorf("Extract gave %d bytes starting % x, want an ELF larger than the %d-byte bzImage", len(vmlinux), vmlinux[:4], len(img))
	}
}
