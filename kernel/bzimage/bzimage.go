// Package bzimage extracts the uncompressed kernel (vmlinux) from an x86
// bzImage, so QEMU can boot it through its PVH entry point.
//
// Why: a bzImage decompresses itself before the kernel starts. Debian's is
// xz-compressed, and under TCG that takes about two seconds, close to half
// the appliance's boot. QEMU boots an ELF vmlinux that carries a PVH entry
// note (CONFIG_PVH) directly, with no decompression and no real-mode setup.
//
// The bzImage layout (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel
// Header"): the setup code takes (setup_sects+1) 512-byte sectors; the
// protected-mode code follows, and within it the compressed payload lies at
// payload_offset for payload_length bytes (boot protocol 2.08 and later).
package bzimage

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/klauspost/compress/zstd"
)

// Setup header fields (boot.rst).
const (
	offSetupSects    = 0x1f1 // u8: size of the setup code in 512-byte sectors, minus one
	offHeaderMagic   = 0x202 // u32: "HdrS"
	offVersion       = 0x206 // u16: boot protocol version
	offPayloadOffset = 0x248 // u32: from the start of the protected-mode code
	offPayloadLength = 0x24c // u32
	headerMagic      = 0x53726448
	minVersion       = 0x0208 // payload_offset/length exist from 2.08 on
)

// xenElfnotePhys32Entry is the ELF note (owner "Xen") holding the PVH entry
// point; QEMU boots an ELF kernel through it.
const xenElfnotePhys32Entry = 18

// ErrNoPVH means the kernel has no PVH entry point and must be booted as a
// bzImage.
var ErrNoPVH = errors.New("kernel has no PVH entry note (CONFIG_PVH); boot the bzImage")

// Payload returns the compressed payload of a bzImage.
func Payload(img []byte) ([]byte, error) {
	if len(img) < offPayloadLength+4 || binary.LittleEndian.Uint32(img[offHeaderMagic:]) != headerMagic {
		return nil, errors.New("not a bzImage (no HdrS setup header)")
	}
	if v := binary.LittleEndian.Uint16(img[offVersion:]); v < minVersion {
		return nil, fmt.Errorf("boot protocol %d.%02d is older than 2.08", v>>8, v&0xff)
	}
	sects := int(img[offSetupSects])
	if sects == 0 {
		sects = 4
	}
	start := (sects+1)*512 + int(binary.LittleEndian.Uint32(img[offPayloadOffset:]))
	end := start + int(binary.LittleEndian.Uint32(img[offPayloadLength:]))
	if start >= end || end > len(img) {
		return nil, fmt.Errorf("payload [%d, %d) lies outside the %d-byte image", start, end, len(img))
	}
	return img[start:end], nil
}

// Extract returns the vmlinux ELF inside a bzImage, checked to carry a PVH
// entry note. xz payloads (which use the x86 BCJ filter) are decompressed by
// the xz program; gzip and zstd in process.
func Extract(img []byte) ([]byte, error) {
	p, err := Payload(img)
	if err != nil {
		return nil, err
	}
	var out []byte
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		out, err = io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("gzip payload: %w", err)
		}
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		if out, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("zstd payload: %w", err)
		}
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		cmd := exec.Command("xz", "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(p)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if out, err = cmd.Output(); err != nil {
			return nil, fmt.Errorf("xz payload (needs the xz program): %v: %s", err, stderr.String())
		}
	default:
		return nil, fmt.Errorf("payload compression % x not supported (gzip, xz and zstd are)", p[:min(len(p), 6)])
	}
	if err := checkPVH(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkPVH verifies that b is an ELF kernel with a PVH entry note.
func checkPVH(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("decompressed payload is not an ELF kernel: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return err
		}
		if hasNote(data, "Xen", xenElfnotePhys32Entry, f.ByteOrder) {
			return nil
		}
	}
	return ErrNoPVH
}

// hasNote walks ELF notes: namesz, descsz, type (u32 each), then the name
// and the descriptor, each padded to 4 bytes.
func hasNote(data []byte, owner string, typ uint32, bo binary.ByteOrder) bool {
	align := func(n uint32) uint32 { return (n + 3) &^ 3 }
	for len(data) >= 12 {
		namesz, descsz, t := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
		data = data[12:]
		if uint64(align(namesz))+uint64(align(descsz)) > uint64(len(data)) {
			return false
		}
		name := string(bytes.TrimRight(data[:namesz], "\x00"))
		if name == owner && t == typ {
			return true
		}
		data = data[align(namesz)+align(descsz):]
	}
	return false
}
