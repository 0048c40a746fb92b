// Package report holds the record of a chaos run (what the chaos command
// prints with --json and what its HTML report draws) and renders it: one
// HTML page per run with an SVG timeline, a summary page over all runs, and
// PNGs of them taken in a headless Chromium.
//
// Times in a Run are milliseconds from the run's Start, so a record reads
// the same on any machine and replays from its seed.
package report

import "time"

// Summary is the outcome of a chaos command: every run and what went wrong.
type Summary struct {
	// Runs is the number of runs made; OK how many had no violation and
	// no flap.
	Runs int `json:"runs"`
	OK   int `json:"ok"`
	// Violations lists every run's violations.
	Violations []Violation `json:"violations"`
	// Flaps is the number of moves beyond one per fault, over all runs.
	Flaps int `json:"flaps"`
	// Seeds are the runs' seeds, in run order: `--seed S --runs 1`
	// replays a run.
	Seeds   []int64 `json:"seeds"`
	Nodes   []int   `json:"nodes"`
	Profile string  `json:"profile"`
	PerRun  []Run   `json:"per_run"`
}

// Run is one run: a cluster, a schedule of faults drawn from a seed, and
// what the observers saw.
type Run struct {
	Run     int       `json:"run"`
	Seed    int64     `json:"seed"`
	Nodes   int       `json:"nodes"`
	Profile string    `json:"profile"`
	Start   time.Time `json:"start"`
	// DurationMS is the length of the timeline: the schedule, then the
	// quiet tail in which every role must settle.
	DurationMS float64 `json:"duration_ms"`
	// OK is true when the run had no violation and no flap.
	OK     bool    `json:"ok"`
	Faults []Fault `json:"faults"`
	// Roles has one lane per role of the spec, in spec order.
	Roles []Lane `json:"roles"`
	// Leaders is who the observers saw as the Raft leader, and in which
	// term; a span with Holder "" is a time without an agreed leader.
	Leaders []Span `json:"leaders"`
	// Outages are the intervals in which the client could not reach the
	// VIP.
	Outages    []Interval  `json:"outages"`
	Moves      []Move      `json:"moves"`
	Violations []Violation `json:"violations"`
	// Flaps is the number of moves beyond one per fault (Move.Flap).
	Flaps int `json:"flaps"`
	// Figures are the run's own measurements (ms unless named otherwise).
	Figures map[string]float64 `json:"figures,omitempty"`
	// Dir is where the run's agent logs were kept, when kept.
	Dir string `json:"dir,omitempty"`
}

// Fault is one fault of a run's schedule, applied at FromMS and undone at
// ToMS (a fault with nothing to undo, like a data-dir loss, has ToMS ==
// FromMS plus the time its restart took).
type Fault struct {
	// ID is the fault's index in the schedule; Move.Fault refers to it.
	ID int `json:"id"`
	// Kind is the fault's kind (crash, kill-agent, pause-agent, partition,
	// one-way, loss, delay, cpu, restart, ...).
	Kind string `json:"kind"`
	// Targets are the nodes (or clients) it hits.
	Targets []string `json:"targets"`
	// Detail says more in words (the partition's sides, the loss percent).
	Detail string  `json:"detail,omitempty"`
	FromMS float64 `json:"from_ms"`
	ToMS   float64 `json:"to_ms"`
}

// Lane is the history of one role.
type Lane struct {
	Role string `json:"role"`
	// Kind is the role's kind: vip, redis-master or service.
	Kind string `json:"kind"`
	// Spans are the intervals in which one holder (Holder "") or none
	// held the role, as the observers saw it, in time order and without
	// gaps. Two holders at once is a violation, drawn as a span with
	// Holder "a+b".
	Spans []Span `json:"spans"`
}

// Span is an interval with one holder (or leader) and its epoch (or term).
type Span struct {
	Holder string  `json:"holder"`
	Epoch  uint64  `json:"epoch,omitempty"`
	FromMS float64 `json:"from_ms"`
	ToMS   float64 `json:"to_ms"`
}

// Interval is a time interval of a run.
type Interval struct {
	FromMS float64 `json:"from_ms"`
	ToMS   float64 `json:"to_ms"`
}

// Move is a change of a role's holder seen by the observers.
type Move struct {
	Role string  `json:"role"`
	From string  `json:"from"`
	To   string  `json:"to"`
	AtMS float64 `json:"at_ms"`
	// Fault is the ID of the fault the move is charged to, or -1 for a
	// move without a fault (a violation).
	Fault int `json:"fault"`
	// Flap is true for a move beyond the first charged to its fault.
	Flap bool `json:"flap,omitempty"`
}

// Violation is one broken invariant.
type Violation struct {
	Run  int     `json:"run"`
	Seed int64   `json:"seed"`
	AtMS float64 `json:"at_ms"`
	// Time is the wall-clock time of AtMS.
	Time time.Time `json:"time"`
	// Invariant names the invariant: S1..S7 (DESIGN.md §3), or liveness
	// (no holder within the target after a heal), flap, or
	// move-without-fault.
	Invariant string `json:"invariant"`
	Detail    string `json:"detail"`
}
