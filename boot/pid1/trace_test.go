package pid1

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// A trace's text goes back whole when it fits, and otherwise loses its
// oldest events, never the header, until it does.
func TestGzipWithin(t *testing.T) {
	header := "# tracer: nop\n#\n"
	var body strings.Builder
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		fmt.Fprintf(&body, "  nic-150 [000] d..2. %d.%06d: sched_switch: x=%x\n", i, r.IntN(1e6), r.Uint64())
	}
	text := []byte(header + body.String())
	unzip := func(b []byte) string {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	whole, err := gzipWithin(text, 1<<30)
	if err != nil || unzip(whole) != string(text) {
		t.Fatalf("gzipWithin with room: %v, text changed", err)
	}
	limit := len(whole) / 3
	cut, err := gzipWithin(text, limit)
	if err != nil || len(cut) > limit {
		t.Fatalf("gzipWithin(%d) = %d bytes, %v", limit, len(cut), err)
	}
	got := unzip(cut)
	if !strings.HasPrefix(got, header) || !strings.HasSuffix(string(text), got[len(header):]) || len(got) >= len(text) {
		t.Errorf("cut text: %d of %d bytes, header kept %v, a tail of the events %v", len(got), len(text),
			strings.HasPrefix(got, header), strings.HasSuffix(string(text), got[len(header):]))
	}
	if _, err := gzipWithin([]byte(header), 10); err == nil {
		t.Error("gzipWithin: a header that cannot fit: no error")
	}
}
