package report

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Series holds the samples of a benchmark that measures one stack, one
// quantity per row, each measured its own way: the recovery gap after a
// kill, per component.
type Series struct {
	Title string            // "Recovery after a kill"
	Unit  string            // of the samples: "ms"
	RowBy string            // what a row is, the first column's heading: "killed"
	Rows  []string          // in the order the table shows them
	How   map[string]string // per row, what was measured

	// Samples are in the order they were taken; Add appends.
	Samples map[string][]float64

	Date      time.Time
	Accel     string   // QEMU's accelerator: "tcg" or "kvm"
	HostCPUs  int      // CPUs of the host QEMU ran on
	GuestCPUs int      // virtual CPUs of the guest
	Notes     []string // one line each under the table
}

// Add records one sample of row.
func (s *Series) Add(row string, v float64) {
	if s.Samples == nil {
		s.Samples = map[string][]float64{}
	}
	s.Samples[row] = append(s.Samples[row], v)
}

// Median is the median of a row's samples; NaN if it has none.
func (s *Series) Median(row string) float64 { return Median(s.Samples[row]) }

// Markdown writes the report: a heading, a table with each row's median,
// smallest and largest sample and what was measured, the setting and notes,
// and every sample in the order taken.
func (s *Series) Markdown(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n", s.Title)
	fmt.Fprintf(&b, "| %s | median (%s) | min | max | runs | measured as |\n", s.RowBy, s.Unit)
	b.WriteString("| --- | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range s.Rows {
		xs := s.Samples[r]
		lo, hi := "–", "–"
		if len(xs) > 0 {
			lo, hi = number(slices.Min(xs)), number(slices.Max(xs))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s |\n", r, number(s.Median(r)), lo, hi, len(xs), s.How[r])
	}
	fmt.Fprintf(&b, "\nTaken %s with QEMU accel %s, %d vCPUs, on %d host CPUs.\n",
		s.Date.UTC().Format("2006-01-02 15:04 UTC"), s.Accel, s.GuestCPUs, s.HostCPUs)
	for _, n := range s.Notes {
		b.WriteString(n + "\n")
	}
	fmt.Fprintf(&b, "\nEvery run, in the order taken (%s):\n\n", s.Unit)
	fmt.Fprintf(&b, "| %s | runs |\n| --- | --- |\n", s.RowBy)
	for _, r := range s.Rows {
		var vs []string
		for _, v := range s.Samples[r] {
			vs = append(vs, number(v))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", r, strings.Join(vs, ", "))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Save writes the report as the section name of the markdown file at
// mdPath (see WriteSection).
func (s *Series) Save(mdPath, name string) error {
	var b bytes.Buffer
	s.Markdown(&b)
	return WriteSection(mdPath, name, b.Bytes())
}
