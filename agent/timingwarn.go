package agent

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/fsm"
)

// timingWarn is the timing warning: the node's lease renewals use too much
// of its lease for its profile (leasing.SlowWatch judges), so its roles
// may move without a fault. It is logged, recorded as a timing event once
// per change (not per renewal), exported as harbormaster_lease_timing_warning
// and shown by `harbormaster status`. Safe for concurrent use.
type timingWarn struct {
	profile string
	lease   time.Duration
	log     *slog.Logger
	record  func(fsm.Event)
	node    string
	gauge   func(float64)

	mu      sync.Mutex
	watch   *leasing.SlowWatch
	message string // "" while no warning
}

// observe takes one renewal age at now.
func (w *timingWarn) observe(now time.Time, age time.Duration) {
	w.mu.Lock()
	changed := w.watch.Observe(now, age)
	slow, p99 := w.watch.Verdict()
	if changed {
		w.message = ""
		if slow {
			w.message = timingMessage(w.profile, w.lease, p99)
		}
	}
	w.mu.Unlock()
	if !changed {
		return
	}
	e := fsm.Event{Time: now.UnixMilli(), Kind: fsm.EventTiming, Node: w.node, Actor: w.node}
	if slow {
		w.gauge(1)
		w.log.Warn("lease renewals are slow for this timing profile; roles may move without a fault",
			"profile", w.profile, "lease", w.lease.String(), "renewal_age_p99", p99.String(), "fix", slowerProfileHint(w.profile))
		e.Old, e.New, e.Message = "ok", "slow", timingMessage(w.profile, w.lease, p99)
	} else {
		w.gauge(0)
		w.log.Info("lease renewals keep up with the timing profile again", "profile", w.profile, "renewal_age_p99", p99.String())
		e.Old, e.New, e.Message = "slow", "ok", fmt.Sprintf("lease renewals keep up with the %s profile again: renewal age p99 %s of a %s lease",
			w.profile, p99.Round(time.Millisecond), w.lease)
	}
	w.record(e)
}

// current returns the warning, "" when there is none.
func (w *timingWarn) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.message
}

// timingMessage is the warning's text: what was measured, what it risks,
// and the fix.
func timingMessage(profile string, lease, p99 time.Duration) string {
	return fmt.Sprintf("lease renewals are slow for the %s profile: renewal age p99 %s over the last %s, more than %.0f%% of the %s lease; "+
		"roles may move without a fault (busy CPU or a slow network). Fix: %s (docs/troubleshooting.md, Lease renewals are slow)",
		profile, p99.Round(time.Millisecond), leasing.SlowWindow, leasing.SlowRaise*100, lease, slowerProfileHint(profile))
}

// slowerProfileHint names the next slower timing profile.
func slowerProfileHint(profile string) string {
	switch profile {
	case "fast":
		return "a slower profile, `profile: lan` in the node config, or give the agent CPU"
	case "lan":
		return "a slower profile, `profile: wan` in the node config, or give the agent CPU"
	default:
		return "a longer `timing.lease` in the node config, or give the agent CPU"
	}
}
