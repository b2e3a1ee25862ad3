package report

import (
	"bytes"
	"flag"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, math.NaN()},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 5}, 5},
	} {
		in := slices.Clone(tc.xs)
		got := Median(in)
		if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
		if !slices.Equal(in, tc.xs) {
			t.Errorf("Median(%v) reordered its argument to %v", tc.xs, in)
		}
	}
}

func bulk() *Comparison {
	c := &Comparison{
		Title: "TCP bulk transfer", Unit: "Mbit/s", GroupBy: "direction",
		Groups: []string{"download", "upload"}, Stacks: [2]string{"keepnet", "linux"},
		Date:  time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		Accel: "tcg", HostCPUs: 2, GuestCPUs: 2,
		Notes: []string{"200 MB down, 100 MB up."},
	}
	for _, s := range []struct {
		group, stack string
		v            float64
	}{
		{"download", "linux", 470}, {"upload", "linux", 310.4},
		{"download", "keepnet", 150.2}, {"upload", "keepnet", 88.25},
		{"download", "linux", 480}, {"upload", "linux", 300},
		{"download", "keepnet", 160}, {"upload", "keepnet", 9.5},
		{"download", "linux", 475}, {"upload", "linux", 312},
		{"download", "keepnet", 140}, {"upload", "keepnet", 90},
	} {
		c.Add(s.group, s.stack, s.v)
	}
	return c
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := bulk().Markdown(&b, "bench.png"); err != nil {
		t.Fatal(err)
	}
	want := `# TCP bulk transfer: keepnet against linux

| direction | keepnet (Mbit/s) | linux (Mbit/s) | keepnet/linux | runs |
| --- | ---: | ---: | ---: | ---: |
| download | 150 | 475 | 0.32 | 3 |
| upload | 88.2 | 310 | 0.28 | 3 |

Medians of the runs. Taken 2026-01-02 15:04 UTC with QEMU accel tcg, 2 vCPUs per guest, on 2 host CPUs.
200 MB down, 100 MB up.

Every run, in the order taken (Mbit/s):

| direction | stack | runs |
| --- | --- | --- |
| download | keepnet | 150, 160, 140 |
| download | linux | 470, 480, 475 |
| upload | keepnet | 88.2, 9.50, 90.0 |
| upload | linux | 310, 300, 312 |

![TCP bulk transfer](bench.png)
`
	if got := b.String(); got != want {
		t.Errorf("Markdown() =\n%s\nwant\n%s", got, want)
	}
}

// A stack with no samples or a different count of runs shows as such.
func TestTableMissing(t *testing.T) {
	c := bulk()
	c.Samples[Key{"upload", "linux"}] = c.Samples[Key{"upload", "linux"}][:2]
	delete(c.Samples, Key{"download", "linux"})
	var b bytes.Buffer
	c.Table(&b)
	for _, row := range []string{"| download | 150 | – | – | 3 / 0 |", "| upload | 88.2 | 305 | 0.29 | 3 / 2 |"} {
		if !strings.Contains(b.String(), row+"\n") {
			t.Errorf("Table() =\n%s\nwant a row %q", b.String(), row)
		}
	}
}

func TestPlot(t *testing.T) {
	var b bytes.Buffer
	if err := bulk().WritePNG(&b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatalf("png.Decode of the plot: %v", err)
	}
	if got, want := img.Bounds(), image.Rect(0, 0, Width, Height); got != want {
		t.Errorf("plot bounds = %v, want %v", got, want)
	}
	// Not blank: a fair share of the pixels is drawn, and both stacks'
	// colours (dots and median lines) and the text's ink appear.
	drawn := 0
	seen := map[color.RGBA]bool{}
	for y := 0; y < Height; y++ {
		for x := 0; x < Width; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			if c != white {
				drawn++
			}
			seen[c] = true
		}
	}
	if drawn < Width*Height/20 {
		t.Errorf("plot has %d non-white pixels of %d, want at least 5%%", drawn, Width*Height)
	}
	for _, c := range []color.RGBA{colors[0], colors[1], ink} {
		if !seen[c] {
			t.Errorf("plot has no pixel of colour %v", c)
		}
	}
}

// An empty comparison still draws its axes and does not divide by zero.
func TestPlotEmpty(t *testing.T) {
	img := (&Comparison{Title: "nothing", Unit: "Mbit/s"}).Plot()
	if img.Bounds().Dx() != Width {
		t.Errorf("empty plot width = %d, want %d", img.Bounds().Dx(), Width)
	}
}

func TestSave(t *testing.T) {
	md := filepath.Join(t.TempDir(), "out", "bench.md")
	p, err := bulk().Save(md, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSuffix(md, ".md") + "-tcp.png"; p != want {
		t.Errorf("Save(%q, tcp) = %q, want %q", md, p, want)
	}
	text, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(text), "](bench-tcp.png)") || !strings.HasPrefix(string(text), "<!-- begin tcp -->\n# TCP bulk") {
		t.Errorf("%s = %q, %v; want the section tcp with a link to bench-tcp.png", md, text, err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("png.Decode(%s): %v", p, err)
	}
}

// Each benchmark rewrites its own section and leaves the others.
func TestWriteSection(t *testing.T) {
	md := filepath.Join(t.TempDir(), "bench.md")
	for _, step := range []struct {
		name, body, want string
	}{
		{"tcp", "# TCP\nfirst\n", "<!-- begin tcp -->\n# TCP\nfirst\n<!-- end tcp -->\n"},
		{"boot", "# Boot\n", "<!-- begin tcp -->\n# TCP\nfirst\n<!-- end tcp -->\n\n<!-- begin boot -->\n# Boot\n<!-- end boot -->\n"},
		{"tcp", "# TCP\nsecond, no newline", "<!-- begin tcp -->\n# TCP\nsecond, no newline\n<!-- end tcp -->\n\n<!-- begin boot -->\n# Boot\n<!-- end boot -->\n"},
		{"boot", "", "<!-- begin tcp -->\n# TCP\nsecond, no newline\n<!-- end tcp -->\n\n<!-- begin boot -->\n<!-- end boot -->\n"},
	} {
		if err := WriteSection(md, step.name, []byte(step.body)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(md); string(got) != step.want {
			t.Errorf("after WriteSection(%s, %q): file =\n%s\nwant\n%s", step.name, step.body, got, step.want)
		}
	}
	for _, bad := range []string{"", "a-->b", "a\nb"} {
		if err := WriteSection(md, bad, nil); err == nil {
			t.Errorf("WriteSection(%q) = nil, want an error", bad)
		}
	}
}

func TestSeriesMarkdown(t *testing.T) {
	s := &Series{
		Title: "Recovery after a kill", Unit: "ms", RowBy: "killed", Rows: []string{"ip", "store"},
		How:  map[string]string{"ip": "longest silence of a 5 ms ping", "store": "kill to running again"},
		Date: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), Accel: "tcg", HostCPUs: 2, GuestCPUs: 2,
		Notes: []string{"One boot per round."},
	}
	s.Add("ip", 140)
	s.Add("ip", 131.5)
	s.Add("ip", 148)
	var b bytes.Buffer
	if err := s.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	want := `# Recovery after a kill

| killed | median (ms) | min | max | runs | measured as |
| --- | ---: | ---: | ---: | ---: | --- |
| ip | 140 | 132 | 148 | 3 | longest silence of a 5 ms ping |
| store | – | – | – | 0 | kill to running again |

Taken 2026-01-02 15:04 UTC with QEMU accel tcg, 2 vCPUs, on 2 host CPUs.
One boot per round.

Every run, in the order taken (ms):

| killed | runs |
| --- | --- |
| ip | 140, 132, 148 |
| store |  |
`
	if got := b.String(); got != want {
		t.Errorf("Markdown() =\n%s\nwant\n%s", got, want)
	}
}

// Every glyph fits in five columns.
func TestFont(t *testing.T) {
	for r, g := range glyphs {
		for i, row := range g {
			if row > 0x1F {
				t.Errorf("glyph %q row %d = %#x, wider than 5 pixels", r, i, row)
			}
		}
	}
	if got, want := textWidth("ab", 2), (2*advance-1)*2; got != want {
		t.Errorf("textWidth(%q, 2) = %d, want %d", "ab", got, want)
	}
}

var sample = flag.String("sample", "", "write the sample report and plot to this .md path")

// TestWriteSample writes the sample plot and report to a directory for a
// look: go test ./qemu/report -run WriteSample -sample /tmp/x/bench.md
func TestWriteSample(t *testing.T) {
	if *sample == "" {
		t.Skip("no -sample path")
	}
	if _, err := bulk().Save(*sample, "tcp"); err != nil {
		t.Fatal(err)
	}
}
