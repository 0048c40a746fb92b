package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"

	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// scalePanel is one small plot of the scale SVG: a figure of each point
// against its role count, one line per node count.
type scalePanel struct {
	title string
	value func(scenario.ScaleResult) float64
}

var scalePanels = []scalePanel{
	{"every role moved, p99 (ms)", func(p scenario.ScaleResult) float64 { return p.AllMovedMs.P99 }},
	{"Raft entries per failover, p50", func(p scenario.ScaleResult) float64 { return p.RaftEntries.P50 }},
	{"reconcile pass in the failover, p50 (ms)", func(p scenario.ScaleResult) float64 { return p.ReconcileMs.P50 }},
	{"leader CPU in the failover, p50 (% core)", func(p scenario.ScaleResult) float64 { return p.LeaderCPUFailPct.P50 }},
	{"idle CPU per agent, p50 (% core)", func(p scenario.ScaleResult) float64 { return p.CPUIdlePct.P50 }},
	{"idle lease datagrams/s (cluster), p50", func(p scenario.ScaleResult) float64 { return p.LeasePerSecIdle.P50 }},
}

// scaleColors are the lines' colours, by node count's order.
var scaleColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}

const (
	panelW, panelH = 340, 220
	padL, padR     = 56, 16
	padT, padB     = 30, 36
	cols           = 3
)

// scaleSVG draws the run's panels in a grid, x the role count on a log
// scale, with a legend of the node counts. The output depends only on run.
func scaleSVG(run scaleRun) string {
	var nodeCounts, roleCounts []int
	var points []scenario.ScaleResult // the measured ones: a point whose first trial failed has no figures
	for _, p := range run.Points {
		if len(p.Trials) > 0 {
			points = append(points, p)
		}
	}
	run.Points = points
	for _, p := range run.Points {
		if !slices.Contains(nodeCounts, p.Nodes) {
			nodeCounts = append(nodeCounts, p.Nodes)
		}
		if !slices.Contains(roleCounts, p.Roles) {
			roleCounts = append(roleCounts, p.Roles)
		}
	}
	slices.Sort(nodeCounts)
	slices.Sort(roleCounts)
	if len(roleCounts) == 0 {
		roleCounts = []int{1}
	}
	rows := (len(scalePanels) + cols - 1) / cols
	w, h := cols*panelW, rows*panelH+40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="8" y="18" font-size="13">harbormaster-lab scale: crash of the node holding most roles, profile %s, %d trial(s) per point; x: roles (log)</text>`+"\n",
		html.EscapeString(run.Profile), run.Trials)
	for i, n := range nodeCounts {
		x := w - 90*(len(nodeCounts)-i)
		fmt.Fprintf(&b, `<line x1="%d" y1="14" x2="%d" y2="14" stroke="%s" stroke-width="2"/><text x="%d" y="18">%d nodes</text>`+"\n",
			x, x+16, scaleColors[i%len(scaleColors)], x+20, n)
	}
	xmin, xmax := math.Log10(float64(roleCounts[0])), math.Log10(float64(roleCounts[len(roleCounts)-1]))
	if xmax == xmin {
		xmax = xmin + 1
	}
	for k, pn := range scalePanels {
		ox, oy := (k%cols)*panelW, 30+(k/cols)*panelH
		ymax := 0.0
		for _, p := range run.Points {
			ymax = max(ymax, pn.value(p))
		}
		ymax = niceCeil(ymax)
		px := func(roles int) float64 {
			return float64(ox+padL) + (math.Log10(float64(roles))-xmin)/(xmax-xmin)*float64(panelW-padL-padR)
		}
		py := func(v float64) float64 {
			return float64(oy+panelH-padB) - v/ymax*float64(panelH-padT-padB)
		}
		fmt.Fprintf(&b, `<g><text x="%d" y="%d" font-size="12">%s</text>`+"\n", ox+padL, oy+padT-10, html.EscapeString(pn.title))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n",
			ox+padL, oy+padT, panelW-padL-padR, panelH-padT-padB)
		for _, frac := range []float64{0, 0.5, 1} {
			y := py(frac * ymax)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
				ox+padL, y, ox+panelW-padR, y, ox+padL-4, y+4, trimFloat(frac*ymax))
		}
		for _, r := range roleCounts {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", px(r), oy+panelH-padB+14, r)
		}
		for i, n := range nodeCounts {
			var pts []string
			for _, p := range run.Points {
				if p.Nodes == n {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.Roles), py(pn.value(p))))
				}
			}
			c := scaleColors[i%len(scaleColors)]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
			for _, pt := range pts {
				x, y, _ := strings.Cut(pt, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", x, y, c)
			}
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
