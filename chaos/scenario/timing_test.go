package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/internal/conf"
)

// --timing: the overrides reach the agents' config as the timing section
// they name, and what the agent's config would refuse is refused here,
// naming the field.
func TestParseTimingAndItsYAML(t *testing.T) {
	o, err := ParseTiming("fast", "lease=150ms, renew=40ms,heartbeat=80ms,election=80ms,leader_lease=40ms")
	if err != nil {
		t.Fatal(err)
	}
	want := config.TimingOverrides{Heartbeat: conf.Duration(80 * time.Millisecond), Election: conf.Duration(80 * time.Millisecond),
		LeaderLease: conf.Duration(40 * time.Millisecond), Lease: conf.Duration(150 * time.Millisecond), Renew: conf.Duration(40 * time.Millisecond)}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
	if got := TimingYAML(o); got != "{heartbeat: 80ms, election: 80ms, leader_lease: 40ms, lease: 150ms, renew: 40ms}" {
		t.Fatalf("YAML %q", got)
	}
	if o, err := ParseTiming("lan", ""); err != nil || TimingYAML(o) != "" {
		t.Fatalf("empty: %+v, %v, YAML %q", o, err, TimingYAML(o))
	}
	for in, wantErr := range map[string]string{
		"lease=100ms":   "timing.renew",    // fast renews every 50ms: fewer than 3 per lease
		"lease":         "name=duration",   // no value
		"lease=fast":    "name=duration",   // not a duration
		"ttl=100ms":     "no timing field", // unknown name
		"renew=1ms":     "timing.renew",    // below 5ms
		"election=10ms": "timing.election", // below the heartbeat
	} {
		if _, err := ParseTiming("fast", in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: got %v, want an error naming %q", in, err, wantErr)
		}
	}
}
