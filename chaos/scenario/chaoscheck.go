package scenario

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/report"
	"github.com/harbormaster/harbormaster/chaos/schedule"
)

// This file turns what a chaos run's observers saw into a report.Run and
// checks it. It trusts no agent: the VIP's lane comes from the kernels
// (lab.Sampler), the services' lanes from the stand-ins' own log, outages
// from the client's probes. The leader lane (from the agents' status) is
// drawn, never checked.

// appliedFault is a fault as the runner applied it.
type appliedFault struct {
	schedule.Fault
	Targets []string
	Detail  string
	// From and To are when it was in effect; Skipped says why it was not
	// applied (then From and To are zero); Err why applying or undoing it
	// failed (a lab error, reported as a violation: the run proves less).
	From, To time.Time
	Skipped  string
	Err      string
	// InEffect is when applying it returned: the fault took effect
	// between From and InEffect (a partition's nftables rules go in host
	// by host, tens of ms on a busy machine), so a bound that starts at the
	// fault (a lease that must end after a cut) starts at InEffect.
	InEffect time.Time
}

// leaderObs is one reading of who leads.
type leaderObs struct {
	At     time.Time
	Leader string
	Term   uint64
}

// chaosObs is everything a run's observers collected.
type chaosObs struct {
	Start, End time.Time
	// VIP is the vip role's name, its samples from the kernels.
	VIP     string
	Samples []lab.Sample
	// Services are the stand-in roles, Instances their log.
	Services  []string
	Instances []Instance
	Leaders   []leaderObs
	Attempts  []Attempt
	Faults    []appliedFault
	// Lanes are the lanes other observers built (the redis-master lane
	// of chaosredis.go), checked like the others for moves and liveness.
	Lanes []report.Lane
}

// chaosLimits are what the checks hold a run to.
type chaosLimits struct {
	// Settle is how long after the last fault of a busy period ends every
	// role must have one holder again (and the client reach the VIP).
	Settle time.Duration
	// Grace is how long after a fault ends a move is still charged to it.
	Grace time.Duration
	// Period is the kernel sampler's period.
	Period time.Duration
	// ServiceExtra is added to Settle and Grace for the service roles:
	// their stop_timeout, which a new instance waits out after a lost
	// holder (S4).
	ServiceExtra time.Duration
}

// forLane returns the settle time and the grace of a lane. A
// redis-master lane has the VIP's: its failover target (1.2 s lan) is
// well within Settle.
func (l chaosLimits) forLane(lane report.Lane) (settle, grace time.Duration) {
	if lane.Kind == "service" {
		return l.Settle + l.ServiceExtra, l.Grace + l.ServiceExtra
	}
	return l.Settle, l.Grace
}

func relMS(start, t time.Time) float64 { return msf(t.Sub(start)) }

// analyseChaos builds the run's record from obs and checks it.
func analyseChaos(obs chaosObs, lim chaosLimits) report.Run {
	// Empty lists, not nil: --json prints [] for a run without any.
	run := report.Run{Start: obs.Start, DurationMS: relMS(obs.Start, obs.End), Faults: []report.Fault{}, Outages: []report.Interval{},
		Moves: []report.Move{}, Violations: []report.Violation{}}
	rel := func(t time.Time) float64 { return relMS(obs.Start, t) }
	violate := func(at time.Time, inv, format string, args ...any) {
		run.Violations = append(run.Violations, report.Violation{AtMS: rel(at), Time: at, Invariant: inv, Detail: fmt.Sprintf(format, args...)})
	}
	for _, f := range obs.Faults {
		if f.Skipped != "" {
			continue
		}
		run.Faults = append(run.Faults, report.Fault{ID: f.ID, Kind: string(f.Kind), Targets: f.Targets, Detail: f.Detail, FromMS: rel(f.From), ToMS: rel(f.To)})
	}

	// The VIP, from the kernels.
	vip := report.Lane{Role: obs.VIP, Kind: "vip", Spans: sampleSpans(obs.Samples, obs.Start, obs.End, lim.Period)}
	_, ivs := lab.DualHolder(obs.Samples)
	for _, iv := range ivs {
		violate(iv.Start, "S1", "%s on %s at once until %s (%d samples)", obs.VIP, strings.Join(iv.Holders, "+"), stamp(iv.End), iv.Samples)
	}
	run.Roles = append(run.Roles, vip)

	// The services, from their own log.
	for _, role := range obs.Services {
		var insts []Instance
		for _, in := range obs.Instances {
			if in.Role == role && in.End.After(obs.Start) && in.Start.Before(obs.End) {
				insts = append(insts, in)
			}
		}
		sort.Slice(insts, func(i, j int) bool { return insts[i].Start.Before(insts[j].Start) })
		run.Roles = append(run.Roles, report.Lane{Role: role, Kind: "service", Spans: instanceSpans(insts, obs.Start, obs.End, standInFresh)})
		for i := 1; i < len(insts); i++ {
			prev, cur := insts[i-1], insts[i]
			for j := 0; j < i; j++ {
				if o := insts[j]; o.End.After(cur.Start) {
					violate(cur.Start, "S1", "two actives of %s, said by the services themselves: %s and %s", role, o, cur)
				}
			}
			switch {
			case cur.Node != prev.Node && cur.Epoch <= prev.Epoch:
				violate(cur.Start, "S2", "%s started with epoch %d after %s: a new holder's epoch must be greater", cur, cur.Epoch, prev)
			case cur.Node == prev.Node && cur.Epoch < prev.Epoch:
				violate(cur.Start, "S2", "%s started with epoch %d after %s: epochs went backwards", cur, cur.Epoch, prev)
			}
		}
	}

	run.Roles = append(run.Roles, obs.Lanes...)

	run.Leaders = leaderSpans(obs.Leaders, obs.Start, obs.End)
	run.Outages = outages(obs.Attempts, obs.Start, obs.End)

	// Moves, charged to faults.
	applied := slices.DeleteFunc(slices.Clone(obs.Faults), func(f appliedFault) bool { return f.Skipped != "" })
	for _, lane := range run.Roles {
		run.Moves = append(run.Moves, laneMoves(lane)...)
	}
	sort.SliceStable(run.Moves, func(i, j int) bool { return run.Moves[i].AtMS < run.Moves[j].AtMS })
	grace := map[string]time.Duration{}
	for _, lane := range run.Roles {
		_, grace[lane.Role] = lim.forLane(lane)
	}
	chargeMoves(run.Moves, applied, obs.Start, func(role string) time.Duration { return grace[role] })
	for _, m := range run.Moves {
		at := obs.Start.Add(time.Duration(m.AtMS * float64(time.Millisecond)))
		switch {
		case m.Fault < 0:
			violate(at, "move-without-fault", "%s moved from %q to %q with no fault active or just healed", m.Role, m.From, m.To)
		case m.Flap:
			run.Flaps++
			violate(at, "flap", "%s moved from %q to %q: a move beyond one for fault #%d (%s)", m.Role, m.From, m.To, m.Fault, faultName(applied, m.Fault))
		}
	}

	// Liveness: after each busy period, every role has one holder again
	// within its settle time, and the client reaches the VIP.
	for _, end := range quietPoints(applied, obs.End, lim.Settle+lim.ServiceExtra) {
		for _, lane := range run.Roles {
			settle, _ := lim.forLane(lane)
			if deadline := end.Add(settle); !heldAt(lane, obs.Start, deadline) {
				violate(deadline, "liveness", "%s had no single holder within %s of the faults' end at %s", lane.Role, settle, stamp(end))
			}
		}
		if deadline := end.Add(lim.Settle); !reachedBy(obs.Attempts, end, deadline) {
			violate(deadline, "liveness", "the client did not reach %s within %s of the faults' end at %s", obs.VIP, lim.Settle, stamp(end))
		}
	}
	sort.SliceStable(run.Violations, func(i, j int) bool { return run.Violations[i].AtMS < run.Violations[j].AtMS })
	run.OK = len(run.Violations) == 0
	return run
}

func faultName(fs []appliedFault, id int) string {
	for _, f := range fs {
		if f.ID == id {
			return string(f.Kind) + " " + strings.Join(f.Targets, ",")
		}
	}
	return "?"
}

// sampleSpans turns kernel samples into spans: a span per run of samples
// with the same holders ("" none, "a+b" two), each sample standing for
// one period.
func sampleSpans(samples []lab.Sample, start, end time.Time, period time.Duration) []report.Span {
	var out []report.Span
	for _, s := range samples {
		if s.At.Before(start) || s.At.After(end) {
			continue
		}
		h := strings.Join(s.Holders, "+")
		from, to := relMS(start, s.At), relMS(start, s.At.Add(period))
		if n := len(out); n > 0 && out[n-1].Holder == h {
			out[n-1].ToMS = to
			continue
		} else if n > 0 {
			out[n-1].ToMS = from
		}
		out = append(out, report.Span{Holder: h, FromMS: from, ToMS: to})
	}
	return out
}

// instanceSpans turns service instances (sorted by start) into spans,
// vacancies between them, overlaps as "a+b". An instance still running
// (its last beat within fresh of end) runs until end.
func instanceSpans(insts []Instance, start, end time.Time, fresh time.Duration) []report.Span {
	type edge struct {
		at  time.Time
		in  bool
		idx int
	}
	var edges []edge
	for i, in := range insts {
		s, e := in.Start, in.End
		if !in.Stopped && end.Sub(e) < fresh {
			e = end
		}
		if s.Before(start) {
			s = start
		}
		if e.After(end) {
			e = end
		}
		if !e.After(s) {
			// No time active in the run (a start line and no beat: killed
			// at once). Its edges would sort out before in and leave it
			// active for ever.
			continue
		}
		edges = append(edges, edge{s, true, i}, edge{e, false, i})
	}
	sort.SliceStable(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return !edges[i].in && edges[j].in // out before in at one instant
		}
		return edges[i].at.Before(edges[j].at)
	})
	var out []report.Span
	active := map[int]bool{}
	cur, curFrom := "", start
	var curEpoch uint64
	emit := func(at time.Time) {
		if at.After(curFrom) {
			out = append(out, report.Span{Holder: cur, Epoch: curEpoch, FromMS: relMS(start, curFrom), ToMS: relMS(start, at)})
		}
	}
	for _, e := range edges {
		if e.in {
			active[e.idx] = true
		} else {
			delete(active, e.idx)
		}
		var hs []string
		var ep uint64
		for i := range active {
			hs = append(hs, insts[i].Node)
			ep = max(ep, insts[i].Epoch)
		}
		slices.Sort(hs)
		h := strings.Join(hs, "+")
		if h != cur || ep != curEpoch {
			emit(e.at)
			cur, curEpoch, curFrom = h, ep, e.at
		}
	}
	emit(end)
	return out
}

// leaderSpans turns leader readings into spans (a reading holds until the
// next).
func leaderSpans(obs []leaderObs, start, end time.Time) []report.Span {
	var out []report.Span
	for _, o := range obs {
		if o.At.After(end) {
			break
		}
		from := relMS(start, o.At)
		if n := len(out); n > 0 {
			if out[n-1].Holder == o.Leader && out[n-1].Epoch == o.Term {
				continue
			}
			out[n-1].ToMS = from
		}
		out = append(out, report.Span{Holder: o.Leader, Epoch: o.Term, FromMS: from, ToMS: relMS(start, end)})
	}
	return out
}

// outages returns the intervals in which the client's probes failed: from
// the first failed attempt after a success to the next success.
func outages(attempts []Attempt, start, end time.Time) []report.Interval {
	var out []report.Interval
	var down time.Time
	for _, a := range attempts {
		if a.Start.Before(start) || a.Start.After(end) {
			continue
		}
		switch {
		case !a.OK && down.IsZero():
			down = a.Start
		case a.OK && !down.IsZero():
			out = append(out, report.Interval{FromMS: relMS(start, down), ToMS: relMS(start, a.Start)})
			down = time.Time{}
		}
	}
	if !down.IsZero() {
		out = append(out, report.Interval{FromMS: relMS(start, down), ToMS: relMS(start, end)})
	}
	return out
}

// laneMoves returns the lane's disturbances: each change from one holder
// to another (through a vacancy or not) and each vacancy that ended with
// the same holder back (a drop) is one move; a time with two holders is
// passed over (S1 reports it). A lane that starts vacant
// counts its first holder as a move from "".
func laneMoves(lane report.Lane) []report.Move {
	var out []report.Move
	last, vacant := "", false
	for i, s := range lane.Spans {
		switch {
		case strings.Contains(s.Holder, "+"):
			// Two holders: an S1 violation of its own; the move is
			// counted when one holder is left.
		case s.Holder == "":
			vacant = true
		case i == 0:
			last = s.Holder
			vacant = false
		case s.Holder != last || vacant:
			out = append(out, report.Move{Role: lane.Role, From: last, To: s.Holder, AtMS: s.FromMS, Fault: -1})
			last, vacant = s.Holder, false
		}
	}
	// A lane that ends vacant: its last disturbance is a move to "".
	if vacant && last != "" {
		for i := len(lane.Spans) - 1; i >= 0; i-- {
			if lane.Spans[i].Holder != "" {
				out = append(out, report.Move{Role: lane.Role, From: last, To: "", AtMS: lane.Spans[i].ToMS, Fault: -1})
				break
			}
		}
	}
	return out
}

// allowance is how many moves of a role a fault may cause.
func allowance(f appliedFault, role string) int {
	switch f.Kind {
	case schedule.RollingRestart:
		return len(f.Targets)
	case schedule.LeaderCrashMove:
		if f.Role == role {
			return 2
		}
	}
	return 1
}

// chargeMoves charges each move to a fault active at its time (or that
// ended within grace) with allowance left for its role, the one whose
// window ends first; a move in a window without allowance left is a flap,
// one in no window has Fault -1.
func chargeMoves(moves []report.Move, faults []appliedFault, start time.Time, grace func(role string) time.Duration) {
	left := map[string]int{}
	key := func(id int, role string) string { return fmt.Sprintf("%d/%s", id, role) }
	for i := range moves {
		m := &moves[i]
		at := start.Add(time.Duration(m.AtMS * float64(time.Millisecond)))
		best, inWindow := -1, -1
		var bestEnd time.Time
		for _, f := range faults {
			if at.Before(f.From) || at.After(f.To.Add(grace(m.Role))) {
				continue
			}
			inWindow = f.ID
			k := key(f.ID, m.Role)
			if _, ok := left[k]; !ok {
				left[k] = allowance(f, m.Role)
			}
			if left[k] > 0 && (best < 0 || f.To.Before(bestEnd)) {
				best, bestEnd = f.ID, f.To
			}
		}
		switch {
		case best >= 0:
			m.Fault = best
			left[key(best, m.Role)]--
		case inWindow >= 0:
			m.Fault, m.Flap = inWindow, true
		}
	}
}

// quietPoints returns the ends of the busy periods (times after which no
// fault is active) that are followed by at least settle without a fault,
// or by the run's end.
func quietPoints(faults []appliedFault, end time.Time, settle time.Duration) []time.Time {
	fs := slices.Clone(faults)
	sort.Slice(fs, func(i, j int) bool { return fs[i].From.Before(fs[j].From) })
	var out []time.Time
	var busyEnd time.Time
	for i, f := range fs {
		if f.To.After(busyEnd) {
			busyEnd = f.To
		}
		next := end
		if i+1 < len(fs) {
			next = fs[i+1].From
		}
		if next.After(busyEnd) && (next.Sub(busyEnd) >= settle || i+1 == len(fs)) {
			out = append(out, busyEnd)
		}
	}
	return out
}

// heldAt reports whether the lane has a single holder at t.
func heldAt(lane report.Lane, start, t time.Time) bool {
	at := relMS(start, t)
	for _, s := range lane.Spans {
		if s.FromMS <= at && s.ToMS >= at && s.Holder != "" && !strings.Contains(s.Holder, "+") {
			return true
		}
	}
	return false
}

// reachedBy reports whether a probe succeeded in [from, to].
func reachedBy(attempts []Attempt, from, to time.Time) bool {
	for _, a := range attempts {
		if a.OK && !a.Start.Before(from) && !a.Start.After(to) {
			return true
		}
	}
	return false
}
