package scenario

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

func TestNextUpgrade(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	voter := map[string]bool{"n1": true, "n2": true, "n3": true, "n4": false}
	done := map[string]bool{}
	var got []string
	// The leader changes between steps: the order follows the leader of
	// the moment.
	for _, leader := range []string{"n1", "n1", "n3", "n3"} {
		n, pos := nextUpgrade(nodes, voter, leader, done)
		done[n] = true
		got = append(got, n+":"+pos)
	}
	want := "n4:nonvoter1 n2:follower1 n1:follower2 n3:leader"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("order %q, want %q", g, want)
	}
	if n, _ := nextUpgrade(nodes, voter, "n3", done); n != "" {
		t.Errorf("after every node: %q, want none", n)
	}
}

func TestBuildUpgradeFromOutsideGit(t *testing.T) {
	_, err := BuildUpgradeFrom(testCtx, t.TempDir(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--old-bin") {
		t.Errorf("outside a checkout: %v, want an error naming --old-bin", err)
	}
}

// upgradeFromBin builds the previous version (UpgradeFrom) from this
// checkout's git history. CI's clone has the history; a shallow one does
// not, and the test then fails under HM_REQUIRE_LAB=1.
func upgradeFromBin(t *testing.T) string {
	t.Helper()
	start := time.Now()
	bin, err := BuildUpgradeFrom(testCtx, ".", t.TempDir())
	if err != nil {
		if os.Getenv("HM_REQUIRE_LAB") == "1" {
			t.Fatalf("HM_REQUIRE_LAB=1: %v", err)
		}
		t.Skip(err)
	}
	t.Logf("built the previous version %s in %s", UpgradeFromVersion, time.Since(start).Round(100*time.Millisecond))
	return bin
}

// TestRollingUpgrade: every agent replaced by this build, from the build
// of UpgradeFrom, one node at a time while the VIP, notary and the Redis
// master are in use: no dual holder or master, no acknowledged write
// lost, no step's VIP outage as long as the 500 ms lease (a hand-over
// that waited for it), every role held and every node on the new version
// at the end (the last three are violations inside the scenario too).
func TestRollingUpgrade(t *testing.T) {
	requireLab(t)
	labtest.RequireBin(t, "redis-server")
	old := upgradeFromBin(t)
	r := runScenario(t, "rolling-upgrade", func(o *Options) { o.OldBin = old })
	hasFigures(t, r, "follower1_vip_outage_ms", "follower2_vip_outage_ms", "leader_vip_outage_ms",
		"leader_redis_outage_ms", "leader_service_outage_ms", "handovers", "acked_writes")
	atMost(t, r, "vip_outage_ms", 499)
	atMost(t, r, "lost_acked_writes", 0)
	if r.DualMasterMS == nil || *r.DualMasterMS != 0 {
		t.Errorf("rolling-upgrade: dual_master_ms = %v, want 0", r.DualMasterMS)
	}
	if s := r.Figures["acked_writes"]; s.Max < 500 {
		t.Errorf("rolling-upgrade: only %.0f acknowledged writes", s.Max)
	}
}
