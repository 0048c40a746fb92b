package fsm

import (
	"fmt"
	"slices"
	"strings"
)

// Cause says why a role changed holder, in one word a metric label can
// carry (harbormaster_failovers_total{cause}). It is recorded on the
// assigning command (Assign.Cause, kept as Assignment.Cause) and on the
// release that emptied the role (RequestRelease.Cause, Release.Cause, kept
// as Assignment.ReleaseCause), so the assignment that follows a release
// knows why the role was released.
type Cause = string

// The causes. The list is append-only: an agent refuses at the edge
// (Validate) a cause it does not know; Apply does not look at it, so an
// older agent replays a newer one's log.
const (
	CauseFirst    Cause = "first"     // a role never held, or placeable again after a spec change
	CauseLease    Cause = "lease"     // the previous holder's lease ended (crash, kill, partition, freeze)
	CauseCheck    Cause = "check"     // a required check failed on the holder
	CausePreempt  Cause = "preempt"   // a candidate of higher priority took it back
	CauseOperator Cause = "operator"  // harbormaster move
	CauseDrain    Cause = "drain"     // the holder was drained
	CauseShutdown Cause = "shutdown"  // the holder's graceful stop
	CauseSpec     Cause = "spec"      // the holder stopped being a candidate, or the role left the spec
	CauseDataLoss Cause = "data_loss" // an unsynced Redis promoted (unsynced_promotion, --accept-data-loss)
)

// Causes lists every cause, in the order of the documentation.
var Causes = []Cause{CauseFirst, CauseLease, CauseCheck, CausePreempt, CauseOperator, CauseDrain, CauseShutdown, CauseSpec, CauseDataLoss}

// ValidCause reports whether c is one of Causes.
func ValidCause(c string) bool { return slices.Contains(Causes, c) }

// checkCause validates an optional cause field: empty (commands written
// before causes) or one of Causes.
func checkCause(field, c string) error {
	if c == "" || ValidCause(c) {
		return nil
	}
	return badField(field, fmt.Sprintf("%q is not a cause; use one of %s", c, strings.Join(Causes, ", ")))
}
