package agent

import (
	"context"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/fsm"
)

// checkLoop keeps the replicated state in line with the verdicts of this
// node's health checks (agent/checks; Run runs the runner): only transitions go
// through Raft, never single probes. It compares the runner's verdicts with
// what the state says of this node (after every transition, state change
// and now and then), so a proposal lost to a leader change, or the reset a
// re-registration makes, is repaired by the next pass.
func (a *Agent) checkLoop(ctx context.Context) {
	for {
		st, changed := a.fsm.State()
		if _, registered := st.Nodes[a.cfg.NodeID]; registered {
			for _, s := range a.checks.States() {
				if !s.Known {
					continue
				}
				cur, ok := st.Checks[a.cfg.NodeID][s.Name]
				if !ok || (cur.Known && cur.Passing == s.Passing) {
					continue // not registered yet, or already recorded
				}
				// Only the report (the error and a one-line summary of the
				// output) is replicated: the log is readable by every member
				// and shown by status; the full output is in the debug log.
				errText, summary := s.Report()
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := a.Propose(pctx, &fsm.CheckUpdate{Node: a.cfg.NodeID, Check: s.Name, Passing: s.Passing,
					Error: fsm.Truncate(errText, fsm.MaxCheckError), Output: fsm.Truncate(summary, fsm.MaxCheckOutput),
					Time: s.Since.UnixMilli()})
				cancel()
				if err != nil && ctx.Err() == nil {
					// Retried on the next pass (state change, transition or 1 s).
					a.log.Warn("report check transition; retrying", "check", s.Name, "passing", s.Passing, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-a.checkWake:
		case <-time.After(time.Second):
		}
	}
}

// onCheckChange is the runner's transition callback: log it (the full
// output at debug level only: it stays on the node), wake the loop.
func (a *Agent) onCheckChange(s checks.State) {
	verdict := "failing"
	if s.Passing {
		verdict = "passing"
	}
	a.log.Info("check transition", "check", s.Name, "verdict", verdict, "err", s.LastErr)
	a.log.Debug("check output", "check", s.Name, "output", s.Output)
	act.Poke(a.checkWake)
}
