package report

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// laneView is one row of the timeline: a role (Role set), or the leader or
// outage lane (Name set).
type laneView struct {
	Role  string // the role's name; "" for the leader and outage lanes
	Name  string // data-lane: role, leader or outages
	Kind  string
	Label string
	Y, H  px // the lane
	BarY  px // the bars inside it
	BarH  px
	TextY px
	Spans []spanView
	Moves []moveView
}

type moveView struct {
	Class  string // move, or move flap
	Points string // a triangle pointing down at the lane
	Title  string
	AtMS   float64
}

type violationView struct {
	Invariant string
	AtMS      float64
	X         px
	Y1, Y2    px // the line across the lanes
	Marker    string
	TextY     px
	Title     string
}

type figureView struct{ Name, Value string }

type runView struct {
	Run     Run
	Title   string
	Result  string
	Replay  string
	Start   string
	Width   int
	Height  int
	Compact bool
	Ticks   []tickView
	AxisY2  px
	// BottomAxisY is where a compact (tall) timeline repeats its tick
	// labels, below the last lane.
	BottomAxisY px
	Faults      []faultView
	Lanes       []laneView
	MarkY       px // the row of violation markers
	Violations  []violationView
	Legend      []legendView
	List        []violationItem
	Figures     []figureView
}

type violationItem struct{ At, Invariant, Detail string }

// Validate reports the first field of r that a page cannot be drawn from,
// naming the field and the fix.
func (r Run) Validate() error {
	if !(r.DurationMS > 0) || math.IsInf(r.DurationMS, 0) {
		return fmt.Errorf("run %d: DurationMS is %v: set Run.DurationMS to the run's length in ms (> 0)", r.Run, r.DurationMS)
	}
	bad := func(field string, i int, from, to float64) error {
		if math.IsNaN(from) || math.IsNaN(to) || to < from {
			return fmt.Errorf("run %d: %s[%d] goes from %v to %v ms: ToMS must not be before FromMS", r.Run, field, i, from, to)
		}
		return nil
	}
	var errs []error
	for i, f := range r.Faults {
		errs = append(errs, bad("Faults", i, f.FromMS, f.ToMS))
	}
	for i, o := range r.Outages {
		errs = append(errs, bad("Outages", i, o.FromMS, o.ToMS))
	}
	for i, sp := range r.Leaders {
		errs = append(errs, bad("Leaders", i, sp.FromMS, sp.ToMS))
	}
	roles := map[string]bool{}
	for li, l := range r.Roles {
		if roles[l.Role] {
			return fmt.Errorf("run %d: Roles[%d].Role %q appears twice: one lane per role", r.Run, li, l.Role)
		}
		roles[l.Role] = true
		for i, sp := range l.Spans {
			errs = append(errs, bad(fmt.Sprintf("Roles[%d].Spans", li), i, sp.FromMS, sp.ToMS))
		}
	}
	for i, m := range r.Moves {
		if !roles[m.Role] {
			errs = append(errs, fmt.Errorf("run %d: Moves[%d].Role %q is not in Run.Roles: add its lane or drop the move", r.Run, i, m.Role))
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ReplayCommand is the command that replays run r alone (with --redis
// when the run had a redis-master lane: the Redis faults change the draw).
func ReplayCommand(r Run) string {
	cmd := fmt.Sprintf("harbormaster-lab chaos --nodes %d --profile %s --seed %d --runs 1", r.Nodes, r.Profile, r.Seed)
	for _, l := range r.Roles {
		if l.Kind == "redis-master" {
			return cmd + " --redis"
		}
	}
	return cmd
}

func newRunView(r Run) runView {
	s := scale{durMS: r.DurationMS}
	c := nodeColours(r)
	v := runView{
		Run:     r,
		Title:   fmt.Sprintf("chaos run %d (seed %d)", r.Run, r.Seed),
		Result:  result(r),
		Replay:  ReplayCommand(r),
		Width:   svgWidth,
		Compact: len(r.Roles) > compactAfter,
		Ticks:   ticks(s),
		Legend:  c.legend(),
		Figures: figures(r.Figures),
	}
	if !r.Start.IsZero() {
		v.Start = r.Start.UTC().Format(time.RFC3339)
	}
	faults, rows := faultViews(s, r.Faults)
	v.MarkY = px(axisH + rows*faultRowH)
	y := v.MarkY + markRowH
	v.Lanes, y = lanes(s, c, r, y, v.Compact)
	for i := range faults {
		faults[i].H = y - faults[i].Y
	}
	v.Faults = faults
	v.AxisY2 = y
	v.Violations = violationViews(s, r.Violations, v.MarkY, y)
	v.List = violationList(r.Violations)
	v.Height = int(y) + 8
	if v.Compact {
		v.BottomAxisY = y + 14
		v.Height += 14
	}
	return v
}

func result(r Run) string {
	if r.OK {
		return "OK"
	}
	return fmt.Sprintf("FAILED: %d violations, %d flaps", len(r.Violations), r.Flaps)
}

// lanes lays out the leader lane, the outage lane and one lane per role
// from y down; it returns them and the y below the last.
func lanes(s scale, c colours, r Run, y px, compact bool) ([]laneView, px) {
	h := px(laneH)
	if compact {
		h = compactLaneH
	}
	out := make([]laneView, 0, len(r.Roles)+2)
	add := func(l laneView) {
		l.Y, l.H = y, h
		l.BarY, l.BarH = y+2, h-4
		l.TextY = y + h/2 + 4
		if compact {
			l.TextY = y + h/2 + 3
		}
		out = append(out, l)
		y += h
	}
	add(laneView{Name: "leader", Label: "raft leader (term)", Spans: spanViews(s, c, r.Leaders, "term", compact)})
	add(laneView{Name: "outages", Label: "client outages", Spans: outageViews(s, r.Outages)})
	byRole := movesByRole(r.Moves)
	for _, l := range r.Roles {
		lv := laneView{Role: l.Role, Name: "role", Kind: l.Kind, Label: l.Role, Spans: spanViews(s, c, l.Spans, "epoch", compact)}
		for _, m := range byRole[l.Role] {
			lv.Moves = append(lv.Moves, newMoveView(s, m, y))
		}
		add(lv)
	}
	return out, y
}

func outageViews(s scale, outages []Interval) []spanView {
	out := make([]spanView, 0, len(outages))
	for _, o := range outages {
		out = append(out, spanView{
			X: s.x(o.FromMS), W: s.width(o.FromMS, o.ToMS), Class: "span outage", Fill: "#333333",
			Title: fmt.Sprintf("outage %s-%s (%s)", secs(o.FromMS), secs(o.ToMS), secs(o.ToMS-o.FromMS)),
		})
	}
	return out
}

func movesByRole(moves []Move) map[string][]Move {
	out := map[string][]Move{}
	for _, m := range moves {
		out[m.Role] = append(out[m.Role], m)
	}
	return out
}

func newMoveView(s scale, m Move, laneY px) moveView {
	x := s.x(m.AtMS)
	v := moveView{Class: "move", AtMS: m.AtMS}
	v.Points = fmt.Sprintf("%v,%v %v,%v %v,%v", x-4, laneY, x+4, laneY, x, laneY+6)
	cause := fmt.Sprintf("fault %d", m.Fault)
	if m.Fault < 0 {
		cause = "no fault"
	}
	v.Title = fmt.Sprintf("move %s: %s -> %s at %s (%s)", m.Role, orNone(m.From), orNone(m.To), secs(m.AtMS), cause)
	if m.Flap {
		v.Class = "move flap"
		v.Title = "FLAP " + v.Title
	}
	return v
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func violationViews(s scale, vs []Violation, markY, bottom px) []violationView {
	out := make([]violationView, 0, len(vs))
	for _, vi := range vs {
		x := s.x(vi.AtMS)
		out = append(out, violationView{
			Invariant: vi.Invariant, AtMS: vi.AtMS, X: x,
			Y1: markY + 12, Y2: bottom,
			Marker: fmt.Sprintf("%v,%v %v,%v %v,%v %v,%v", x, markY+2, x+5, markY+7, x, markY+12, x-5, markY+7),
			TextY:  markY + 11,
			Title:  fmt.Sprintf("%s at %s: %s", vi.Invariant, secs(vi.AtMS), vi.Detail),
		})
	}
	return out
}

func violationList(vs []Violation) []violationItem {
	out := make([]violationItem, 0, len(vs))
	for _, v := range vs {
		out = append(out, violationItem{At: secs(v.AtMS), Invariant: v.Invariant, Detail: v.Detail})
	}
	return out
}

func figures(m map[string]float64) []figureView {
	out := make([]figureView, 0, len(m))
	for k, v := range m {
		out = append(out, figureView{Name: k, Value: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	slices.SortFunc(out, func(a, b figureView) int { return strings.Compare(a.Name, b.Name) })
	return out
}
