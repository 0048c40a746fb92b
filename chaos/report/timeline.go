package report

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Geometry of a run page, in CSS pixels. The page is PageWidth wide, so a
// screenshot is too; the SVG grows downwards with the number of lanes.
const (
	// PageWidth is the width of every page and of its screenshot.
	PageWidth = 1280
	svgWidth  = PageWidth - 40
	labelW    = 190 // lane labels, left of the plot
	plotX     = labelW + 10
	plotW     = svgWidth - plotX - 20
	axisH     = 22 // tick labels above the lanes
	faultRowH = 15 // one row of fault labels
	markRowH  = 18 // the row of violation markers
	laneH     = 20 // a lane when the run has few roles
	// compactAfter is the number of roles beyond which lanes shrink to
	// compactLaneH so that a scale run (200 roles) stays one page a person
	// can scroll.
	compactAfter = 30
	compactLaneH = 10
	charW        = 6.2 // width of a label character at 11 px, for packing
)

// Colours: one per node (red is kept for violations), grey hatching for
// no holder.
var nodePalette = []string{
	"#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
	"#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939",
}

// px is a coordinate, printed with one decimal so a page is the same
// bytes for the same run on any machine.
type px float64

func (p px) String() string { return strconv.FormatFloat(float64(p), 'f', 1, 64) }

// secs prints milliseconds as seconds for people: "2.35 s".
func secs(ms float64) string { return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s" }

// scale maps milliseconds of a run onto the plot, clamped to it.
type scale struct{ durMS float64 }

func (s scale) x(ms float64) px {
	ms = math.Max(0, math.Min(ms, s.durMS))
	return px(plotX + ms/s.durMS*plotW)
}

// width is the width of [from, to], at least one pixel so that a short
// span stays visible.
func (s scale) width(from, to float64) px {
	return px(math.Max(1, float64(s.x(to)-s.x(from))))
}

type tickView struct {
	X     px
	Label string
}

// ticks returns the time axis: a tick every step, the step chosen from
// 1-2-5 seconds (or tenths) so that there are at most about 12.
func ticks(s scale) []tickView {
	steps := []float64{100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000}
	step := steps[len(steps)-1]
	for _, c := range steps {
		if s.durMS/c <= 12 {
			step = c
			break
		}
	}
	var out []tickView
	for ms := 0.0; ms <= s.durMS+1e-9; ms += step {
		out = append(out, tickView{X: s.x(ms), Label: strconv.FormatFloat(ms/1000, 'f', -1, 64) + " s"})
	}
	return out
}

// colours assigns each node seen as a holder or leader a colour, in name
// order, so the same nodes get the same colours on every page of a run.
type colours map[string]string

func nodeColours(r Run) colours {
	seen := map[string]bool{}
	add := func(spans []Span) {
		for _, sp := range spans {
			for _, n := range strings.Split(sp.Holder, "+") {
				if n != "" {
					seen[n] = true
				}
			}
		}
	}
	for _, l := range r.Roles {
		add(l.Spans)
	}
	add(r.Leaders)
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	c := colours{}
	for i, n := range names {
		if i < len(nodePalette) {
			c[n] = nodePalette[i]
			continue
		}
		// Past the palette: hues spread over 40..320 degrees, away from red.
		c[n] = fmt.Sprintf("hsl(%d,55%%,45%%)", 40+(i*47)%280)
	}
	return c
}

type legendView struct{ Name, Colour string }

func (c colours) legend() []legendView {
	out := make([]legendView, 0, len(c))
	for n, col := range c {
		out = append(out, legendView{Name: n, Colour: col})
	}
	slices.SortFunc(out, func(a, b legendView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

type spanView struct {
	X, W   px
	Class  string // span, span vacant or span dual
	Fill   string
	Holder string
	Epoch  uint64
	Label  string // drawn inside the bar when it fits
	Title  string // the tooltip
}

// spanViews draws spans as bars; epochName is "epoch" or "term".
func spanViews(s scale, c colours, spans []Span, epochName string, compact bool) []spanView {
	out := make([]spanView, 0, len(spans))
	for _, sp := range spans {
		v := spanView{X: s.x(sp.FromMS), W: s.width(sp.FromMS, sp.ToMS), Holder: sp.Holder, Epoch: sp.Epoch}
		// Epoch 0 is unknown (a VIP's lane comes from the kernels, which
		// know no epochs): no epoch is shown then.
		ep, short := fmt.Sprintf(" %s %d", epochName, sp.Epoch), fmt.Sprintf(" %s%d", epochName[:1], sp.Epoch)
		if sp.Epoch == 0 {
			ep, short = "", ""
		}
		switch {
		case sp.Holder == "":
			v.Class, v.Fill = "span vacant", "url(#vacant)"
			v.Title = fmt.Sprintf("none %s-%s", secs(sp.FromMS), secs(sp.ToMS))
		case strings.Contains(sp.Holder, "+"):
			v.Class, v.Fill = "span dual", "#d00000"
			v.Title = fmt.Sprintf("TWO HOLDERS %s%s, %s-%s", sp.Holder, ep, secs(sp.FromMS), secs(sp.ToMS))
		default:
			v.Class, v.Fill = "span", c[sp.Holder]
			v.Title = fmt.Sprintf("%s%s, %s-%s", sp.Holder, ep, secs(sp.FromMS), secs(sp.ToMS))
		}
		if !compact && sp.Holder != "" {
			v.Label = fitLabel(v.W, sp.Holder+short, sp.Holder)
		}
		out = append(out, v)
	}
	return out
}

// fitLabel returns the longest of the labels that fits in width w, or "".
func fitLabel(w px, labels ...string) string {
	for _, l := range labels {
		if float64(len(l))*charW+6 <= float64(w) {
			return l
		}
	}
	return ""
}

type faultView struct {
	ID           int
	Kind         string
	Targets      string
	X, W         px
	Y, H         px // the band, from its label row to the last lane
	LabelX       px
	LabelY       px
	Label, Title string
}

// faultViews lays out fault bands and packs their labels into rows so that
// no two labels overlap; it returns the bands and the number of rows.
func faultViews(s scale, faults []Fault) ([]faultView, int) {
	order := make([]int, len(faults))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmpFloat(faults[a].FromMS, faults[b].FromMS)
	})
	var rowEnd []float64 // the right edge of each row's last label
	out := make([]faultView, len(faults))
	for _, i := range order {
		f := faults[i]
		v := faultView{ID: f.ID, Kind: f.Kind, Targets: strings.Join(f.Targets, ",")}
		v.X, v.W = s.x(f.FromMS), s.width(f.FromMS, f.ToMS)
		v.Label = strings.TrimSpace(f.Kind + " " + v.Targets)
		v.Title = fmt.Sprintf("fault %d: %s %s-%s", f.ID, v.Label, secs(f.FromMS), secs(f.ToMS))
		if f.Detail != "" {
			v.Title += ": " + f.Detail
		}
		end := float64(v.X) + math.Max(float64(v.W), float64(len(v.Label))*charW+4)
		row := slices.IndexFunc(rowEnd, func(e float64) bool { return e <= float64(v.X) })
		if row < 0 {
			row = len(rowEnd)
			rowEnd = append(rowEnd, 0)
		}
		rowEnd[row] = end
		v.LabelX, v.LabelY = v.X+2, px(axisH+row*faultRowH+11)
		v.Y = px(axisH + row*faultRowH)
		out[i] = v
	}
	return out, len(rowEnd)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
