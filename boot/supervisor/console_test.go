package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("y", MaxLine)
	tests := []struct {
		name   string
		writes []string
		want   []string // console lines, after Flush
	}{
		{"one line", []string{"hello\n"}, []string{"a: hello"}},
		{"two in one write", []string{"one\ntwo\n"}, []string{"a: one", "a: two"}},
		{"line across writes", []string{"he", "l", "lo\nwor", "ld\n"}, []string{"a: hello", "a: world"}},
		{"empty line", []string{"\n"}, []string{"a: "}},
		{"partial flushed", []string{"no newline"}, []string{"a: no newline"}},
		{"exactly MaxLine", []string{long + "\n"}, []string{"a: " + long}},
		{"MaxLine in pieces", []string{long[:100], long[100:], "\n"}, []string{"a: " + long}},
		{"MaxLine+1", []string{long + "z\n"}, []string{"a: " + long, "a: z"}},
		{"2*MaxLine unterminated", []string{long, long}, []string{"a: " + long, "a: " + long}},
		{"long then short", []string{long + long + "zz", "\nok\n"}, []string{"a: " + long, "a: " + long, "a: zz", "a: ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := &syncBuffer{}
			w := &lineWriter{con: &console{w: buf}, prefix: "a"}
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v, want %d, nil", len(s), n, err, len(s))
				}
			}
			w.Flush()
			if got := buf.lines(""); !slices.Equal(got, tt.want) {
				t.Errorf("Write(%q) lines = %q, want %q", tt.writes, got, tt.want)
			}
			if buf.writes != len(tt.want) {
				t.Errorf("Write(%q) made %d console writes, want one per line (%d)", tt.writes, buf.writes, len(tt.want))
			}
		})
	}
}

// TestConsoleLinesWhole writes from many components at once, byte by byte;
// every console line must still be one component's whole line.
func TestConsoleLinesWhole(t *testing.T) {
	buf := &syncBuffer{}
	con := &console{w: buf}
	const writers, lines = 8, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			w := &lineWriter{con: con, prefix: fmt.Sprint(i)}
			line := []byte(strings.Repeat(fmt.Sprint(i), 20) + "\n")
			for range lines {
				for j := range line {
					w.Write(line[j : j+1])
				}
			}
		})
	}
	wg.Wait()
	got := buf.lines("")
	if len(got) != writers*lines {
		t.Fatalf("console has %d lines, want %d", len(got), writers*lines)
	}
	for _, l := range got {
		prefix, rest, ok := strings.Cut(l, ": ")
		if !ok || rest != strings.Repeat(prefix, 20) {
			t.Errorf("console line %q, want prefix: 20 times the prefix", l)
		}
	}
}
