// Package svgplot draws line charts as self-contained inline SVG: no
// scripts, no external fonts or stylesheets, so a page that embeds one
// works offline (the dashboard, the simulation report). Text is escaped.
package svgplot

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Series is one line: Y[i] at X[i]. Non-finite points are skipped.
type Series struct {
	Name  string
	X, Y  []float64
	Color string // CSS colour; empty picks from a palette
}

// Chart describes a chart.
type Chart struct {
	Title, XLabel, YLabel string
	Width, Height         int // pixels; default 560 × 280
	// YMin and YMax fix the y range when YMax > YMin; otherwise it is
	// fitted to the data.
	YMin, YMax float64
	// ID, if set, becomes the svg element's id (tests find charts by it).
	ID string
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// Write draws the chart with its series to w.
func Write(w io.Writer, c Chart, series ...Series) error {
	if c.Width <= 0 {
		c.Width = 560
	}
	if c.Height <= 0 {
		c.Height = 280
	}
	const left, right, top, bottom = 64.0, 16.0, 34.0, 64.0
	pw, ph := float64(c.Width)-left-right, float64(c.Height)-top-bottom
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	points := 0
	for _, s := range series {
		for i := range min(len(s.X), len(s.Y)) {
			x, y := s.X[i], s.Y[i]
			if !finite(x) || !finite(y) {
				continue
			}
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
			points++
		}
	}
	if points == 0 {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if c.YMax > c.YMin {
		ymin, ymax = c.YMin, c.YMax
	}
	if xmax == xmin {
		xmin, xmax = xmin-0.5, xmax+0.5
	}
	if ymax == ymin {
		ymin, ymax = ymin-0.5, ymax+0.5
	}
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return top + ph - (y-ymin)/(ymax-ymin)*ph }
	var b strings.Builder
	id := ""
	if c.ID != "" {
		id = fmt.Sprintf(` id="%s"`, esc(c.ID))
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg"%s width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12" role="img" aria-label="%s">`,
		id, c.Width, c.Height, c.Width, c.Height, esc(c.Title))
	fmt.Fprintf(&b, `<title>%s</title><rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`, esc(c.Title), c.Width, c.Height)
	fmt.Fprintf(&b, `<text x="%g" y="20" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`, left+pw/2, esc(c.Title))
	// Grid and ticks.
	for _, t := range ticks(ymin, ymax, 5) {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`,
			left, y, left+pw, y, left-6, y, fmtTick(t))
	}
	for _, t := range ticks(xmin, xmax, 6) {
		x := px(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#ddd"/><text x="%.1f" y="%g" text-anchor="middle">%s</text>`,
			x, top, x, top+ph, x, top+ph+16, fmtTick(t))
	}
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#333"/>`, left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`, left+pw/2, top+ph+34, esc(c.XLabel))
	fmt.Fprintf(&b, `<text x="14" y="%g" text-anchor="middle" transform="rotate(-90 14 %g)">%s</text>`, top+ph/2, top+ph/2, esc(c.YLabel))
	// Lines.
	for i, s := range series {
		col := s.Color
		if col == "" {
			col = palette[i%len(palette)]
		}
		var pts []string
		for j := range min(len(s.X), len(s.Y)) {
			if finite(s.X[j]) && finite(s.Y[j]) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[j]), py(math.Max(ymin, math.Min(ymax, s.Y[j])))))
			}
		}
		if len(pts) == 1 {
			fmt.Fprintf(&b, `<circle class="series" data-series="%s" cx="%s" cy="%s" r="3" fill="%s"/>`, esc(s.Name),
				strings.Split(pts[0], ",")[0], strings.Split(pts[0], ",")[1], esc(col))
		} else if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline class="series" data-series="%s" data-points="%d" fill="none" stroke="%s" stroke-width="2" points="%s"/>`,
				esc(s.Name), len(pts), esc(col), strings.Join(pts, " "))
		}
		// Legend entry, along the bottom.
		lx := left + float64(i)*150
		ly := float64(c.Height) - 10
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="3"/><text x="%g" y="%g" dominant-baseline="middle">%s</text>`,
			lx, ly, lx+18, ly, esc(col), lx+24, ly, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	_, err := io.WriteString(w, b.String())
	return err
}

// String is Write into a string.
func String(c Chart, series ...Series) string {
	var b strings.Builder
	_ = Write(&b, c, series...)
	return b.String()
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func esc(s string) string { return html.EscapeString(s) }

// ticks returns about n round values covering [lo, hi] (Heckbert's "nice
// numbers", Graphics Gems 1990).
func ticks(lo, hi float64, n int) []float64 {
	span := nice(hi-lo, false)
	step := nice(span/float64(max(1, n-1)), true)
	start := math.Ceil(lo/step) * step
	var out []float64
	for v := start; v <= hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
		if len(out) > 50 {
			break
		}
	}
	return out
}

func nice(x float64, round bool) float64 {
	if x <= 0 || !finite(x) {
		return 1
	}
	e := math.Floor(math.Log10(x))
	f := x / math.Pow(10, e)
	var nf float64
	switch {
	case round && f < 1.5:
		nf = 1
	case round && f < 3:
		nf = 2
	case round && f < 7:
		nf = 5
	case round:
		nf = 10
	case f <= 1:
		nf = 1
	case f <= 2:
		nf = 2
	case f <= 5:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, e)
}

func fmtTick(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
