package agent

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/raft"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/version"
)

// readyLoop declares the agent ready once it is registered and has applied
// the log at least up to a command it committed through the leader after it
// started (a node-started event): after a restart the local commit index
// says nothing until the leader has been heard from.
func (a *Agent) readyLoop(ctx context.Context) {
	var started uint64
	for {
		st, changed := a.fsm.State()
		_, registered := st.Nodes[a.cfg.NodeID]
		if registered && started == 0 {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			idx, err := a.Propose(pctx, &fsm.RecordEvent{Event: fsm.Event{Time: time.Now().UnixMilli(),
				Kind: fsm.EventNodeStarted, Node: a.cfg.NodeID, Actor: a.cfg.NodeID, New: version.Get().Version}})
			cancel()
			if err == nil {
				started = idx
			}
		}
		if registered && started != 0 && st.Index >= started {
			a.markReady()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watchdogLoop pings systemd's watchdog at half its interval when
// WatchdogSec is set, as long as Raft runs and the lease loop made a pass
// within three renew intervals (a wedged agent stops pinging and systemd
// restarts it).
func (a *Agent) watchdogLoop(ctx context.Context) {
	iv, err := daemon.SdWatchdogEnabled(false)
	if err != nil || iv <= 0 {
		return
	}
	tick := time.NewTicker(iv / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// On the monotonic clock: a wall step neither silences a
			// live agent nor keeps a wedged one pinging.
			if a.raft.State() != raft.Shutdown && a.leases.SinceRenew() < 3*a.timing.Renew+iv/2 {
				_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}

// markReady declares the agent ready: the gRPC health service says
// SERVING and systemd gets READY=1.
func (a *Agent) markReady() {
	a.readyOnce.Do(func() {
		close(a.ready)
		a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
			a.log.Warn("sd_notify READY", "err", err)
		} else if ok {
			a.log.Info("notified systemd: READY")
		}
		a.log.Info("ready", "api", a.apiAddr, "raft", a.raftAddr)
	})
}
