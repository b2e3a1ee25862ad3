package pf

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// # The rules in kept memory
//
// The rule text in force lives in a second piece of kept memory
// (RulesName), beside the state table, so that a restarted pf filters by
// the same rules at once, without a file or the store. It has one writer,
// init (WriteRules: the boot file before pf first starts, then each
// `keepnet pf load` after init parsed the text), and one reader, pf
// (ReadRules: at start, and whenever RulesStamp changes). The layout is
// two copies of rulesCopyBytes:
//
//	sum (4): CRC-32C of the rest of the copy up to the end of the text
//	length (4): of the text, at most MaxRulesText
//	stamp (8): grows by one per write, across both copies
//	text
//
// A write goes to the older copy: its stamp is cleared first, then the
// text and length are written, the stamp and sum last; the newer copy is
// untouched. A reader copies a copy out and checks its sum on what it
// copied: a copy read while it is being written fails and the reader
// takes the other one, so a reader sees a whole text or none, and never
// one the parser did not accept (init writes only parsed texts).

// Rules memory layout.
const (
	// RulesName is the kept memory that holds the rules (boot/pid1's pf
	// node); RulesBytes its size.
	RulesName  = "pf.rules"
	RulesBytes = 2 * rulesCopyBytes

	rulesCopyBytes  = 64 << 10
	rulesCopyHeader = 16
	// MaxRulesText is the longest rule text kept memory holds.
	MaxRulesText = rulesCopyBytes - rulesCopyHeader

	rcSum    = 0
	rcLen    = 4
	rcStamp  = 8
	rcText   = rulesCopyHeader
	rcCopies = 2
)

// StateName is the kept memory that holds the state table (boot/pid1's
// pf node); its size is MemBytes of the server's MaxStates.
const StateName = "pf.state"

// rulesCopy is copy c of mem.
func rulesCopy(mem []byte, c int) []byte { return mem[c*rulesCopyBytes : (c+1)*rulesCopyBytes] }

// WriteRules writes text into the rules memory mem (RulesBytes), as the
// newest copy. The text must be one Parse accepts: init parses it first.
func WriteRules(mem []byte, text string) error {
	if len(mem) < RulesBytes {
		return fmt.Errorf("pf: rules memory of %d bytes, want %d", len(mem), RulesBytes)
	}
	if len(text) > MaxRulesText {
		return fmt.Errorf("pf: a rule text of %d bytes; at most %d are kept", len(text), MaxRulesText)
	}
	stamps := [rcCopies]uint64{copyStamp(rulesCopy(mem, 0)), copyStamp(rulesCopy(mem, 1))}
	older := 0
	if stamps[1] < stamps[0] {
		older = 1
	}
	c := rulesCopy(mem, older)
	binary.LittleEndian.PutUint64(c[rcStamp:], 0)
	copy(c[rcText:], text)
	binary.LittleEndian.PutUint32(c[rcLen:], uint32(len(text)))
	binary.LittleEndian.PutUint64(c[rcStamp:], max(stamps[0], stamps[1])+1)
	binary.LittleEndian.PutUint32(c[rcSum:], crc32.Checksum(c[rcLen:rcText+len(text)], castagnoli))
	return nil
}

func copyStamp(c []byte) uint64 { return binary.LittleEndian.Uint64(c[rcStamp:]) }

// RulesStamp is the newest stamp in mem, checked by nothing: a cheap
// test, every pass of pf's loop, of whether init wrote since ReadRules.
func RulesStamp(mem []byte) uint64 {
	return max(copyStamp(rulesCopy(mem, 0)), copyStamp(rulesCopy(mem, 1)))
}

// ReadRules returns the newest whole text in mem and its stamp; ok is
// false if neither copy is whole (memory never written, or being written
// twice over while it was read: the caller tries again later).
func ReadRules(mem []byte) (text string, stamp uint64, ok bool) {
	if len(mem) < RulesBytes {
		return "", 0, false
	}
	for c := range rcCopies {
		t, st, good := readCopy(rulesCopy(mem, c))
		if good && st > stamp {
			text, stamp, ok = t, st, true
		}
	}
	return text, stamp, ok
}

// readCopy copies c out of shared memory, then checks what it copied.
func readCopy(c []byte) (string, uint64, bool) {
	var hdr [rulesCopyHeader]byte
	copy(hdr[:], c)
	n := binary.LittleEndian.Uint32(hdr[rcLen:])
	stamp := binary.LittleEndian.Uint64(hdr[rcStamp:])
	if stamp == 0 || n > MaxRulesText {
		return "", 0, false
	}
	text := make([]byte, n)
	copy(text, c[rcText:])
	sum := crc32.Update(crc32.Checksum(hdr[rcLen:], castagnoli), castagnoli, text)
	if sum != binary.LittleEndian.Uint32(hdr[rcSum:]) {
		return "", 0, false
	}
	return string(text), stamp, true
}
