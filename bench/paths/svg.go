package paths

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Chart is a horizontal grouped bar chart: one group of bars per Groups
// entry, one bar per Series entry in every group.
type Chart struct {
	Title string
	Unit  string
	// Log uses a base-10 logarithmic axis (values <= 0 are not drawn).
	Log    bool
	Groups []string
	Series []string
	// Values[g][s] is series s in group g; NaN (or a missing entry) draws
	// no bar and says "n/a".
	Values [][]float64
}

// palette has one colour per series (repeated beyond its length). Never written.
var palette = [...]string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// Chart geometry, in pixels.
const (
	chartWidth   = 960
	chartLabelW  = 170 // group labels
	chartValueW  = 90  // value text right of the longest bar
	chartBarH    = 11
	chartGroupGp = 12
	chartTop     = 40
	chartLegendH = 18
	// chartMaxBars bounds the drawing (groups x series).
	chartMaxBars = 4096
)

func (c Chart) value(g, s int) float64 {
	if g >= len(c.Values) || s >= len(c.Values[g]) {
		return math.NaN()
	}
	v := c.Values[g][s]
	if math.IsInf(v, 0) || (c.Log && v <= 0) || (!c.Log && v < 0) {
		return math.NaN()
	}
	return v
}

// SVG renders the chart as a standalone SVG document. It never fails: an
// empty or oversized chart renders its title and a note.
func (c Chart) SVG() []byte {
	var b strings.Builder
	ng, ns := len(c.Groups), len(c.Series)
	if ng*ns > chartMaxBars {
		ng, ns = 0, 0
	}
	legendRows := (ns + 4) / 5
	plotTop := chartTop + legendRows*chartLegendH + 8
	height := plotTop + ng*(ns*chartBarH+chartGroupGp) + 40
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", 10, esc(c.Title))
	if ng == 0 || ns == 0 {
		fmt.Fprintf(&b, `<text x="10" y="%d">no data</text>`+"\n</svg>\n", plotTop)
		return []byte(b.String())
	}
	// Legend.
	for s, name := range c.Series[:ns] {
		x, y := 10+(s%5)*190, chartTop+(s/5)*chartLegendH
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, y-9, palette[s%len(palette)], x+14, y, esc(name))
	}
	// Scale.
	lo, hi := math.Inf(1), 0.0
	for g := range ng {
		for s := range ns {
			if v := c.value(g, s); !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	plotW := float64(chartWidth - chartLabelW - chartValueW)
	var scale func(v float64) float64
	var ticks []float64
	if c.Log {
		if hi == 0 {
			lo, hi = 1, 10
		}
		l0, l1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if l1 <= l0 {
			l1 = l0 + 1
		}
		scale = func(v float64) float64 { return (math.Log10(v) - l0) / (l1 - l0) * plotW }
		for e := l0; e <= l1; e++ {
			ticks = append(ticks, math.Pow(10, e))
		}
	} else {
		if hi == 0 {
			hi = 1
		}
		step := niceStep(hi / 5)
		top := math.Ceil(hi/step) * step
		scale = func(v float64) float64 { return v / top * plotW }
		for t := 0.0; t <= top+step/2; t += step {
			ticks = append(ticks, t)
		}
	}
	bottom := height - 30
	for _, t := range ticks {
		x := float64(chartLabelW) + scale(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n",
			x, plotTop-4, x, bottom, x, bottom+14, esc(num(t)))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n",
		chartLabelW+int(plotW/2), bottom+27, esc(c.Unit))
	// Bars.
	y := plotTop
	for g := range ng {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-weight="bold">%s</text>`+"\n",
			chartLabelW-6, y+ns*chartBarH/2+4, esc(c.Groups[g]))
		for s := range ns {
			v := c.value(g, s)
			if math.IsNaN(v) {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#999">n/a</text>`+"\n", chartLabelW+2, y+chartBarH-2)
			} else {
				w := math.Max(1, scale(v))
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %s</title></rect>`+
					`<text x="%.1f" y="%d" fill="#333">%s</text>`+"\n",
					chartLabelW, y, w, chartBarH-1, palette[s%len(palette)], esc(c.Series[s]), esc(num(v)),
					float64(chartLabelW)+w+3, y+chartBarH-2, esc(num(v)))
			}
			y += chartBarH
		}
		y += chartGroupGp
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// num formats a value compactly: 12, 3.4, 0.05, 12k, 3.4M.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return trimZero(fmt.Sprintf("%.2f", v))
	case a == 0:
		return "0"
	}
	return trimZero(fmt.Sprintf("%.3f", v))
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func esc(s string) string { return html.EscapeString(s) }
