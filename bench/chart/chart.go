// Package chart draws the benchmark charts as PNG with the standard library
// only: a histogram (bars over a numeric axis), line charts (e.g. latency
// CDFs, one line per implementation) and categorical bar charts, each with
// axis ticks, grid, axis labels, a title and a legend.
package chart

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"
	"strings"
)

// Options are the labels and size of a chart.
type Options struct {
	Title  string
	XLabel string
	YLabel string
	Width  int // pixels; default 960
	Height int // pixels; default 600
	// YMin, YMax fix the y range of a line chart when YMax > YMin.
	YMin, YMax float64
	// XMax caps the x range of a line chart when > 0.
	XMax float64
	// Notes are extra lines printed under the title.
	Notes []string
	// LegendBottom puts a line chart's legend in the bottom-right corner
	// (the empty one of a CDF) instead of the top-right.
	LegendBottom bool
}

// Bar is one bar of a histogram: Count samples in [Lo, Hi).
type Bar struct {
	Lo, Hi float64
	Count  float64
}

// Series is one line of a line chart.
type Series struct {
	Name string
	X, Y []float64
}

// Category is one group of bars in a categorical chart: one value per
// series name (in the order of the names given to Bars).
type Category struct {
	Label  string
	Values []float64
}

var (
	white   = color.RGBA{255, 255, 255, 255}
	black   = color.RGBA{30, 30, 30, 255}
	grey    = color.RGBA{120, 120, 120, 255}
	grid    = color.RGBA{225, 225, 225, 255}
	barBlue = color.RGBA{70, 120, 190, 255}
	// Palette holds the colours of successive series.
	Palette = []color.RGBA{
		{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {255, 127, 14, 255},
		{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {23, 190, 207, 255},
	}
)

const scale = 2 // text scale: 10×14 pixel glyphs

type frame struct {
	img                 *image.RGBA
	left, right, top, b int // plot area: x in [left, right], y in [top, b]
	xmin, xmax          float64
	ymin, ymax          float64
}

func newFrame(o *Options) *frame {
	if o.Width <= 0 {
		o.Width = 960
	}
	if o.Height <= 0 {
		o.Height = 600
	}
	img := image.NewRGBA(image.Rect(0, 0, o.Width, o.Height))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)
	var notes []string
	for _, n := range o.Notes {
		notes = append(notes, wrap(n, (o.Width-40)/((glyphW+1)*scale))...)
	}
	lineH := textHeight(scale) + 8
	top := 24 + lineH*(1+len(notes)) + 10
	f := &frame{img: img, left: 100, right: o.Width - 30, top: top, b: o.Height - 80}
	drawText(img, (o.Width-textWidth(o.Title, scale))/2, 16, o.Title, black, scale)
	for i, n := range notes {
		drawText(img, (o.Width-textWidth(n, scale))/2, 16+lineH*(i+1)+4, n, grey, scale)
	}
	drawText(img, f.left+(f.right-f.left-textWidth(o.XLabel, scale))/2, o.Height-textHeight(scale)-12, o.XLabel, black, scale)
	drawTextVertical(img, 14, f.top+(f.b-f.top+textWidth(o.YLabel, scale))/2, o.YLabel, black, scale)
	return f
}

func (f *frame) px(x float64) int {
	if f.xmax == f.xmin {
		return f.left
	}
	return f.left + int(math.Round((x-f.xmin)/(f.xmax-f.xmin)*float64(f.right-f.left)))
}

func (f *frame) py(y float64) int {
	if f.ymax == f.ymin {
		return f.b
	}
	return f.b - int(math.Round((y-f.ymin)/(f.ymax-f.ymin)*float64(f.b-f.top)))
}

// axes draws grid lines, ticks and tick labels for both axes (numeric x
// when xTicks, otherwise only the y axis), then the axis lines.
func (f *frame) axes(xTicks bool) {
	yt := ticks(f.ymin, f.ymax, 6)
	for _, t := range yt {
		y := f.py(t)
		hline(f.img, f.left, f.right, y, grid)
		hline(f.img, f.left-6, f.left, y, black)
		l := formatTick(t, yt, f.ymax)
		drawText(f.img, f.left-10-textWidth(l, scale), y-textHeight(scale)/2, l, black, scale)
	}
	if xTicks {
		xt := ticks(f.xmin, f.xmax, 8)
		for _, t := range xt {
			x := f.px(t)
			vline(f.img, x, f.top, f.b, grid)
			vline(f.img, x, f.b, f.b+6, black)
			l := formatTick(t, xt, f.xmax)
			drawText(f.img, x-textWidth(l, scale)/2, f.b+12, l, black, scale)
		}
	}
	hline(f.img, f.left, f.right, f.b, black)
	hline(f.img, f.left, f.right, f.b+1, black)
	vline(f.img, f.left, f.top, f.b, black)
	vline(f.img, f.left-1, f.top, f.b, black)
}

func (f *frame) legend(names []string, bottom bool) {
	if len(names) == 0 {
		return
	}
	w := 0
	for _, n := range names {
		w = max(w, textWidth(n, scale))
	}
	x := f.right - w - 50
	y := f.top + 10
	if bottom {
		y = f.b - 10 - len(names)*(textHeight(scale)+10)
	}
	fillRect(f.img, x-10, y-8, w+58, len(names)*(textHeight(scale)+10)+8, white)
	rect(f.img, x-10, y-8, w+58, len(names)*(textHeight(scale)+10)+8, grey)
	for i, n := range names {
		c := Palette[i%len(Palette)]
		fillRect(f.img, x, y+i*(textHeight(scale)+10)+3, 28, 8, c)
		drawText(f.img, x+36, y+i*(textHeight(scale)+10), n, black, scale)
	}
}

func (f *frame) encode(w io.Writer) error { return png.Encode(w, f.img) }

// Histogram draws bars (e.g. latency bins) over a numeric x axis.
func Histogram(w io.Writer, o Options, bars []Bar) error {
	f := newFrame(&o)
	if len(bars) == 0 {
		f.xmin, f.xmax, f.ymin, f.ymax = 0, 1, 0, 1
		f.axes(true)
		return f.encode(w)
	}
	f.xmin, f.xmax = bars[0].Lo, bars[len(bars)-1].Hi
	var top float64
	for _, b := range bars {
		top = math.Max(top, b.Count)
	}
	f.ymin, f.ymax = 0, niceCeil(top*1.05)
	f.axes(true)
	for _, b := range bars {
		x0, x1 := f.px(b.Lo), f.px(b.Hi)
		y := f.py(b.Count)
		if x1-x0 > 2 {
			x1-- // a 1-pixel gap between bars
		}
		fillRect(f.img, x0+1, y, x1-x0, f.b-y, barBlue)
	}
	hline(f.img, f.left, f.right, f.b, black)
	return f.encode(w)
}

// Lines draws one line per series over numeric axes, with a legend.
func Lines(w io.Writer, o Options, series []Series) error {
	f := newFrame(&o)
	f.xmin, f.xmax = math.Inf(1), math.Inf(-1)
	f.ymin, f.ymax = math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for i := range s.X {
			f.xmin, f.xmax = math.Min(f.xmin, s.X[i]), math.Max(f.xmax, s.X[i])
			f.ymin, f.ymax = math.Min(f.ymin, s.Y[i]), math.Max(f.ymax, s.Y[i])
		}
	}
	if math.IsInf(f.xmin, 0) {
		f.xmin, f.xmax, f.ymin, f.ymax = 0, 1, 0, 1
	}
	if o.XMax > 0 && o.XMax < f.xmax {
		f.xmax = o.XMax
	}
	if o.YMax > o.YMin {
		f.ymin, f.ymax = o.YMin, o.YMax
	}
	f.xmin = niceFloor(f.xmin)
	f.xmax = niceCeil(f.xmax)
	if f.xmax <= f.xmin {
		f.xmax = f.xmin + 1
	}
	if f.ymax <= f.ymin {
		f.ymax = f.ymin + 1
	}
	f.axes(true)
	names := make([]string, len(series))
	clip := f.img.SubImage(image.Rect(f.left, f.top-1, f.right+1, f.b+1)).(*image.RGBA)
	for si, s := range series {
		names[si] = s.Name
		c := Palette[si%len(Palette)]
		for i := 1; i < len(s.X); i++ {
			line(clip, f.px(s.X[i-1]), f.py(s.Y[i-1]), f.px(s.X[i]), f.py(s.Y[i]), c)
		}
	}
	f.legend(names, o.LegendBottom)
	return f.encode(w)
}

// Bars draws grouped bars: one group per category, one bar per series.
func Bars(w io.Writer, o Options, seriesNames []string, cats []Category) error {
	f := newFrame(&o)
	var top float64
	for _, c := range cats {
		for _, v := range c.Values {
			top = math.Max(top, v)
		}
	}
	f.xmin, f.xmax = 0, float64(max(len(cats), 1))
	// Head room above the tallest bar for the legend row and value labels.
	legendH := textHeight(scale) + 16
	f.ymin, f.ymax = 0, niceCeil(top*float64(f.b-f.top)/float64(f.b-f.top-legendH-textHeight(scale)-8))
	if f.ymax == 0 {
		f.ymax = 1
	}
	f.axes(false)
	slot := float64(f.right-f.left) / f.xmax
	for ci, c := range cats {
		x0 := f.left + int(float64(ci)*slot+slot*0.1)
		bw := int(slot * 0.8 / float64(max(len(seriesNames), 1)))
		for si, v := range c.Values {
			y := f.py(v)
			fillRect(f.img, x0+si*bw, y, max(bw-2, 1), f.b-y, Palette[si%len(Palette)])
			if l := shortNumber(v); textWidth(l, scale) <= bw+8 {
				drawText(f.img, x0+si*bw+(bw-2-textWidth(l, scale))/2, y-textHeight(scale)-4, l, black, scale)
			} else if textWidth(l, 1) <= bw {
				drawText(f.img, x0+si*bw+(bw-2-textWidth(l, 1))/2, y-textHeight(1)-4, l, black, 1)
			}
		}
		l := c.Label
		drawText(f.img, f.left+int(float64(ci)*slot+slot/2)-textWidth(l, scale)/2, f.b+12, l, black, scale)
	}
	// The legend as one row along the top of the plot area.
	lx, ly := f.left+10, f.top+6
	for i, n := range seriesNames {
		fillRect(f.img, lx, ly+3, 24, 8, Palette[i%len(Palette)])
		drawText(f.img, lx+30, ly, n, black, scale)
		lx += 30 + textWidth(n, scale) + 24
	}
	return f.encode(w)
}

// shortNumber prints a bar's value: 3 significant digits, k or M.
func shortNumber(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', sig3(a/1e6), 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', sig3(a/1e3), 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', sig3(math.Abs(v)), 64)
}

func sig3(a float64) int {
	switch {
	case a >= 100:
		return 0
	case a >= 10:
		return 1
	}
	return 2
}

// wrap splits s into lines of at most n runes, at spaces when it can.
func wrap(s string, n int) []string {
	var out []string
	r := []rune(s)
	for len(r) > n && n > 0 {
		cut := n
		for i := n; i > n/2; i-- {
			if r[i] == ' ' {
				cut = i
				break
			}
		}
		out = append(out, strings.TrimSpace(string(r[:cut])))
		r = []rune(strings.TrimSpace(string(r[cut:])))
	}
	return append(out, string(r))
}

// ticks returns round values (1, 2 or 5 × 10^k apart) covering [lo, hi].
func ticks(lo, hi float64, n int) []float64 {
	if hi <= lo || n < 1 {
		return []float64{lo}
	}
	step := niceStep((hi - lo) / float64(n))
	var out []float64
	for t := math.Ceil(lo/step) * step; t <= hi+step*1e-9; t += step {
		out = append(out, math.Round(t/step)*step)
	}
	return out
}

func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch m := raw / p; {
	case m < 1.5:
		return p
	case m < 3.5:
		return 2 * p
	case m < 7.5:
		return 5 * p
	default:
		return 10 * p
	}
}

// niceCeil rounds v up to a round number (two significant steps).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 0
	}
	s := niceStep(v / 10)
	return math.Ceil(v/s) * s
}

func niceFloor(v float64) float64 {
	if v <= 0 {
		return math.Min(v, 0)
	}
	s := niceStep(v / 10)
	return math.Floor(v/s) * s
}

// formatTick labels tick v of an axis whose ticks are all (and whose
// largest value is top): as many decimals as the tick step needs, and a k
// or M suffix on every label of an axis that reaches 10 000 or 10 000 000.
func formatTick(v float64, all []float64, top float64) string {
	if v == 0 {
		return "0"
	}
	step := 1.0
	if len(all) > 1 {
		step = all[1] - all[0]
	}
	suffix := ""
	switch {
	case math.Abs(top) >= 1e7:
		v, step, suffix = v/1e6, step/1e6, "M"
	case math.Abs(top) >= 1e4:
		v, step, suffix = v/1e3, step/1e3, "k"
	}
	digits := 0
	if step < 1 {
		digits = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', min(digits, 6), 64) + suffix
}

func fillRect(img *image.RGBA, x, y, w, h int, c color.Color) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), &image.Uniform{c}, image.Point{}, draw.Src)
}

func rect(img *image.RGBA, x, y, w, h int, c color.Color) {
	hline(img, x, x+w, y, c)
	hline(img, x, x+w, y+h, c)
	vline(img, x, y, y+h, c)
	vline(img, x+w, y, y+h, c)
}

func hline(img *image.RGBA, x0, x1, y int, c color.Color) { fillRect(img, x0, y, x1-x0+1, 1, c) }
func vline(img *image.RGBA, x, y0, y1 int, c color.Color) { fillRect(img, x, y0, 1, y1-y0+1, c) }

// line draws a 2-pixel-wide segment (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		fillRect(img, x0, y0, 2, 2, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// String helps debugging: the plot area.
func (f *frame) String() string {
	return fmt.Sprintf("plot [%d,%d]×[%d,%d] x∈[%g,%g] y∈[%g,%g]", f.left, f.right, f.top, f.b, f.xmin, f.xmax, f.ymin, f.ymax)
}
