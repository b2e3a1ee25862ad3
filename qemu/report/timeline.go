package report

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
)

// Timeline is a quantity over time with events marked on it: a download's
// throughput during a fault-injection campaign (qemu/campaign), each fault a
// vertical line — the paper's crash-at-high-bitrate figures.
type Timeline struct {
	Title, Sub string
	Unit       string    // of Y
	X, Y       []float64 // X in seconds, increasing
	Marks      []Mark
}

// Mark is one event on a timeline.
type Mark struct {
	X     float64 // seconds
	Label string  // drawn at the top of the line when there is room
	// Strong marks are drawn red (a fault that crashed a component), the
	// others grey.
	Strong bool
}

var red = color.RGBA{0xD6, 0x27, 0x28, 0xFF}

// WritePNG encodes Plot as a PNG.
func (t *Timeline) WritePNG(w io.Writer) error { return png.Encode(w, t.Plot()) }

// Plot draws the timeline, Width by Height pixels: the series as a line,
// each mark as a vertical line. Both axes start at zero.
func (t *Timeline) Plot() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, Width, Height))
	fill(img, img.Bounds(), white)
	const margin = 16
	drawText(img, margin, margin, clip(t.Title, Width-2*margin), textScale, ink)
	drawText(img, margin, margin+lineH+6, clip(t.Sub, Width-2*margin), textScale, grey)

	left, right := margin+7*advance*textScale, Width-margin
	top, bottom := margin+3*lineH+22, Height-margin-2*lineH-8
	peak, end := 0.0, 0.0
	for i := range t.Y {
		peak, end = math.Max(peak, t.Y[i]), math.Max(end, t.X[i])
	}
	for _, m := range t.Marks {
		end = math.Max(end, m.X)
	}
	step := niceStep(peak / 5)
	ymax := math.Max(step, math.Ceil(peak*1.08/step)*step)
	xstep := niceStep(end / 8)
	xmax := math.Max(xstep, math.Ceil(end/xstep)*xstep)
	py := func(v float64) int { return bottom - int(math.Round(v/ymax*float64(bottom-top))) }
	px := func(s float64) int { return left + int(math.Round(s/xmax*float64(right-left))) }

	decimals := max(0, -int(math.Floor(math.Log10(step))))
	for k := 0; float64(k)*step <= ymax+step/1e6; k++ {
		v := float64(k) * step
		fill(img, image.Rect(left, py(v), right, py(v)+1), grid)
		label := fmt.Sprintf("%.*f", decimals, v)
		drawText(img, left-8-textWidth(label, textScale), py(v)-glyphH*textScale/2, label, textScale, grey)
	}
	for k := 0; float64(k)*xstep <= xmax+xstep/1e6; k++ {
		s := float64(k) * xstep
		label := fmt.Sprintf("%gs", s)
		drawText(img, px(s)-textWidth(label, textScale)/2, bottom+8, label, textScale, grey)
	}
	drawText(img, margin, top-lineH-8, t.Unit, textScale, grey)

	lastLabel := math.MinInt
	for _, m := range t.Marks {
		c := grey
		if m.Strong {
			c = red
		}
		x := px(m.X)
		fill(img, image.Rect(x, top, x+1, bottom), mix(c, white, 0.7))
		if w := textWidth(m.Label, 1); x-w/2 > lastLabel+4 && m.Label != "" {
			drawText(img, x-w/2, top-glyphRows-2, m.Label, 1, c)
			lastLabel = x + w/2
		}
	}
	for i := 1; i < len(t.X); i++ {
		line(img, px(t.X[i-1]), py(t.Y[i-1]), px(t.X[i]), py(t.Y[i]), colors[0])
	}
	fill(img, image.Rect(left, top, left+1, bottom+1), ink)
	fill(img, image.Rect(left, bottom, right, bottom+1), ink)
	return img
}

// line draws a two-pixel-wide segment from (x0, y0) to (x1, y1).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	n := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= n; i++ {
		x := x0 + (x1-x0)*i/n
		y := y0 + (y1-y0)*i/n
		fill(img, image.Rect(x, y, x+2, y+2), c)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
