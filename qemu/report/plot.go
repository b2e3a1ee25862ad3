package report

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strings"
)

// The plot's size in pixels, and the scale of its text (each pixel of the
// 5x7 font drawn as a 2x2 square: 10x14 pixels a character).
const (
	Width, Height = 800, 480
	textScale     = 2
	lineH         = (glyphRows + 1) * textScale
)

var (
	white  = color.RGBA{0xFF, 0xFF, 0xFF, 0xFF}
	ink    = color.RGBA{0x22, 0x22, 0x22, 0xFF}
	grey   = color.RGBA{0x77, 0x77, 0x77, 0xFF}
	grid   = color.RGBA{0xE4, 0xE4, 0xE4, 0xFF}
	colors = [2]color.RGBA{
		{0x1F, 0x77, 0xB4, 0xFF}, // Stacks[0]: blue
		{0xE6, 0x7E, 0x10, 0xFF}, // Stacks[1]: orange
	}
)

// WritePNG encodes Plot as a PNG.
func (c *Comparison) WritePNG(w io.Writer) error {
	return png.Encode(w, c.Plot())
}

// Plot draws the comparison, Width by Height pixels: per group, one bar per
// stack up to its median (the figure written above it), a dot for every
// sample, left to right in the order taken, and under the group's name the
// ratio of the medians. The y axis starts at zero.
func (c *Comparison) Plot() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, Width, Height))
	fill(img, img.Bounds(), white)

	const margin = 16
	title := fmt.Sprintf("%s: %s against %s", c.Title, c.Stacks[0], c.Stacks[1])
	drawText(img, margin, margin, clip(title, Width-2*margin), textScale, ink)
	sub := fmt.Sprintf("%s, %d vCPUs, %s", c.Accel, c.GuestCPUs, c.Date.UTC().Format("2006-01-02"))

	// The legend, right-aligned on the second line.
	y := margin + lineH + 6
	x := Width - margin
	for i := len(c.Stacks) - 1; i >= 0; i-- {
		x -= textWidth(c.Stacks[i], textScale)
		drawText(img, x, y, c.Stacks[i], textScale, ink)
		x -= glyphH*textScale + 6
		fill(img, image.Rect(x, y, x+glyphH*textScale, y+glyphH*textScale), colors[i])
		x -= 20
	}
	drawText(img, margin, y, clip(sub, x-2*margin), textScale, grey)

	// The plot area, and the y axis: a round step giving about five ticks.
	left, right := margin+7*advance*textScale, Width-margin
	top, bottom := y+2*lineH+16, Height-margin-2*lineH-8
	peak := 0.0
	for _, vs := range c.Samples {
		for _, v := range vs {
			peak = math.Max(peak, v)
		}
	}
	step := niceStep(peak / 5)
	ymax := math.Max(step, math.Ceil(peak*1.08/step)*step)
	py := func(v float64) int { return bottom - int(math.Round(v/ymax*float64(bottom-top))) }
	decimals := max(0, -int(math.Floor(math.Log10(step))))
	for k := 0; float64(k)*step <= ymax+step/1e6; k++ {
		v := float64(k) * step
		ty := py(v)
		fill(img, image.Rect(left, ty, right, ty+1), grid)
		label := fmt.Sprintf("%.*f", decimals, v)
		drawText(img, left-8-textWidth(label, textScale), ty-glyphH*textScale/2, label, textScale, grey)
	}
	drawText(img, margin, top-lineH-10, c.Unit, textScale, grey)
	fill(img, image.Rect(left, top, left+1, bottom+1), ink)
	fill(img, image.Rect(left, bottom, right, bottom+1), ink)

	if len(c.Groups) == 0 {
		return img
	}
	slot := (right - left) / len(c.Groups)
	barW, gap := slot*28/100, slot*6/100
	for gi, g := range c.Groups {
		mid := left + gi*slot + slot/2
		for si, s := range c.Stacks {
			x0 := mid - gap/2 - barW
			if si == 1 {
				x0 = mid + gap/2
			}
			vs := c.Samples[Key{g, s}]
			med := Median(vs)
			if math.IsNaN(med) {
				continue
			}
			light := mix(colors[si], white, 0.3)
			fill(img, image.Rect(x0, py(med), x0+barW, bottom), light)
			fill(img, image.Rect(x0, py(med)-1, x0+barW, py(med)+2), colors[si])
			high := med
			for i, v := range vs {
				high = math.Max(high, v)
				dot(img, x0+barW*(i+1)/(len(vs)+1), py(v), 5, colors[si])
			}
			label := number(med)
			drawText(img, x0+(barW-textWidth(label, textScale))/2, py(high)-8-glyphH*textScale, label, textScale, ink)
		}
		name := clip(g, slot-8)
		drawText(img, mid-textWidth(name, textScale)/2, bottom+10, name, textScale, ink)
		r := clip(fmt.Sprintf("%s/%s %s", c.Stacks[0], c.Stacks[1], ratio(c.Ratio(g))), slot-8)
		drawText(img, mid-textWidth(r, textScale)/2, bottom+10+lineH, r, textScale, grey)
	}
	return img
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5} {
		if x <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// clip shortens s to fit in width pixels of text.
func clip(s string, width int) string {
	r := []rune(s)
	for len(r) > 0 && textWidth(string(r), textScale) > width {
		r = r[:len(r)-1]
	}
	if len(r) < len([]rune(s)) && len(r) > 0 {
		r[len(r)-1] = '.'
	}
	return strings.TrimSpace(string(r))
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

// dot draws a filled disc of radius r with a white rim, so that dots that
// overlap stay countable.
func dot(img *image.RGBA, cx, cy, r int, c color.RGBA) {
	for y := -r - 1; y <= r+1; y++ {
		for x := -r - 1; x <= r+1; x++ {
			switch d := x*x + y*y; {
			case d <= r*r:
				img.SetRGBA(cx+x, cy+y, c)
			case d <= (r+1)*(r+1):
				img.SetRGBA(cx+x, cy+y, white)
			}
		}
	}
}

// mix is a with weight w over b.
func mix(a, b color.RGBA, w float64) color.RGBA {
	m := func(x, y uint8) uint8 { return uint8(math.Round(w*float64(x) + (1-w)*float64(y))) }
	return color.RGBA{m(a.R, b.R), m(a.G, b.G), m(a.B, b.B), 0xFF}
}
