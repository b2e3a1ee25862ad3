// Package report turns the samples of a benchmark that compares two network
// stacks in the same QEMU configuration (keepnet's own against Linux's) into
// a markdown report and a PNG plot, and a benchmark that measures one stack
// (Series: the recovery gaps per component) into a table. `make bench`
// writes one report, images/out/bench.md, a section per benchmark
// (WriteSection): qemu/itest's BenchmarkTCPBulk and BenchmarkForward
// (each with the guest's CPU per MB, BenchmarkTCPBulk also with its context
// switches per MB), BenchmarkUDPRate, BenchmarkRequestRates (HTTP and
// ping, with the guest's CPU per thousand requests and context switches
// per request), BenchmarkBootToReady,
// BenchmarkRecovery and BenchmarkRelayCost.
//
// It uses only the standard library: the plot is drawn pixel by pixel with
// image/draw and a 5x7 bitmap font (font.go).
package report

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Comparison holds the samples of one benchmark taken on two stacks, per
// group (for bulk TCP, the direction of the transfer), and where and when
// they were taken.
type Comparison struct {
	Title   string    // "TCP bulk transfer"
	Unit    string    // of the samples: "Mbit/s"
	GroupBy string    // what a group is, the first column's heading: "direction"
	Groups  []string  // in the order the table and the plot show them
	Stacks  [2]string // the ratio reported is Stacks[0] over Stacks[1]

	// Samples are in the order they were taken; Add appends.
	Samples map[Key][]float64

	Date      time.Time
	Accel     string   // QEMU's accelerator: "tcg" or "kvm"
	HostCPUs  int      // CPUs of the host QEMU ran on
	GuestCPUs int      // virtual CPUs of each guest
	Notes     []string // one line each under the table: what was measured, and how
}

// Key names one series of samples.
type Key struct{ Group, Stack string }

// Add records one sample.
func (c *Comparison) Add(group, stack string, v float64) {
	if c.Samples == nil {
		c.Samples = map[Key][]float64{}
	}
	k := Key{group, stack}
	c.Samples[k] = append(c.Samples[k], v)
}

// Median is the median of a series; NaN if it has no samples.
func (c *Comparison) Median(group, stack string) float64 {
	return Median(c.Samples[Key{group, stack}])
}

// Ratio is the median of Stacks[0] over the median of Stacks[1] for a group;
// NaN if either has no samples or the second is zero.
func (c *Comparison) Ratio(group string) float64 {
	a, b := c.Median(group, c.Stacks[0]), c.Median(group, c.Stacks[1])
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// Median returns the median of xs (the mean of the middle two for an even
// count), or NaN for none. xs is not reordered.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Table writes the table of medians: one row per group with both stacks'
// medians, their ratio and the number of runs.
func (c *Comparison) Table(w io.Writer) error {
	var b bytes.Buffer
	a, z := c.Stacks[0], c.Stacks[1]
	fmt.Fprintf(&b, "| %s | %s (%s) | %s (%s) | %s/%s | runs |\n", c.GroupBy, a, c.Unit, z, c.Unit, a, z)
	b.WriteString("| --- | ---: | ---: | ---: | ---: |\n")
	for _, g := range c.Groups {
		na, nz := len(c.Samples[Key{g, a}]), len(c.Samples[Key{g, z}])
		runs := fmt.Sprint(na)
		if nz != na {
			runs = fmt.Sprintf("%d / %d", na, nz)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", g, number(c.Median(g, a)), number(c.Median(g, z)), ratio(c.Ratio(g)), runs)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Markdown writes the whole report: a heading, the table of medians, the
// setting (date, accelerator, CPUs) and notes, every sample in the order
// taken, and an image link to plot if it is not empty.
func (c *Comparison) Markdown(w io.Writer, plot string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s: %s against %s\n\n", c.Title, c.Stacks[0], c.Stacks[1])
	c.Table(&b)
	fmt.Fprintf(&b, "\nMedians of the runs. Taken %s with QEMU accel %s, %d vCPUs per guest, on %d host CPUs.\n",
		c.Date.UTC().Format("2006-01-02 15:04 UTC"), c.Accel, c.GuestCPUs, c.HostCPUs)
	for _, n := range c.Notes {
		b.WriteString(n + "\n")
	}
	fmt.Fprintf(&b, "\nEvery run, in the order taken (%s):\n\n", c.Unit)
	fmt.Fprintf(&b, "| %s | stack | runs |\n| --- | --- | --- |\n", c.GroupBy)
	for _, g := range c.Groups {
		for _, s := range c.Stacks {
			var vs []string
			for _, v := range c.Samples[Key{g, s}] {
				vs = append(vs, number(v))
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", g, s, strings.Join(vs, ", "))
		}
	}
	if plot != "" {
		fmt.Fprintf(&b, "\n![%s](%s)\n", c.Title, plot)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Save writes the report as the section name of the markdown file at
// mdPath (see WriteSection: the file's other sections stay) and the plot
// beside it, named after both: images/out/bench.md and "tcp" give
// images/out/bench-tcp.png. It creates the directory if needed and returns
// the plot's path.
func (c *Comparison) Save(mdPath, name string) (pngPath string, err error) {
	pngPath = strings.TrimSuffix(mdPath, filepath.Ext(mdPath)) + "-" + name + ".png"
	if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
		return "", err
	}
	var p bytes.Buffer
	if err := c.WritePNG(&p); err != nil {
		return "", err
	}
	if err := os.WriteFile(pngPath, p.Bytes(), 0o644); err != nil {
		return "", err
	}
	var md bytes.Buffer
	c.Markdown(&md, filepath.Base(pngPath))
	if err := WriteSection(mdPath, name, md.Bytes()); err != nil {
		return "", err
	}
	return pngPath, nil
}

// number formats a sample with three significant figures or so.
func number(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "–"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}
