package agent

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/fsm"
)

// Reload applies a new config of this node (SIGHUP; loaded and validated
// with the same overrides as the running one) without stopping: the log
// level (Options.LogLevel) and the checks (Runner.Update: unchanged ones
// keep running, new and changed ones start unknown on the node; the
// check names are registered again, the unchanged ones keeping their
// replicated results). No held role is released for a reload, but a role
// that requires a check the node no longer runs becomes ineligible here
// and placement moves it; Reload logs those roles. A change to any other
// field is refused whole (config.Diff's *config.RestartError), as is a
// check list the runner cannot build: the running config is kept, the
// refusal is logged at error level and returned. The TLS files are not
// read here (ReloadTLS). Safe for concurrent use; calls are serialized.
func (a *Agent) Reload(next *config.Config) (config.Changes, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	ch, err := config.Diff(a.running, next)
	if err == nil {
		_, _, _, err = a.checks.Update(next.Checks)
		if err != nil {
			err = &config.Error{Path: next.Path, Field: "checks", Msg: err.Error()}
		}
	}
	if err != nil {
		a.log.Error("config reload refused; the running config is kept", "err", err)
		return config.Changes{}, err
	}
	if ch.LogLevel != "" && a.opts.LogLevel != nil {
		var l slog.Level
		if err := l.UnmarshalText([]byte(ch.LogLevel)); err == nil {
			a.opts.LogLevel.Set(l)
		}
	}
	a.running = next
	a.checkNames.Store(new(next.CheckNames()))
	act.Poke(a.registerWake)
	act.Poke(a.checkWake)
	summary := ch.String()
	moving := a.rolesRequiring(ch.Removed)
	if len(moving) > 0 {
		a.log.Warn("these held roles require a check this node no longer runs; placement moves them", "roles", strings.Join(moving, ","),
			"checks", strings.Join(ch.Removed, ","))
		summary += "; moving " + strings.Join(moving, ",")
	}
	a.log.Info("config reloaded", "changes", ch.String(), "path", next.Path)
	if !ch.Empty() {
		a.events.Record(fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventConfigReloaded, Node: a.cfg.NodeID,
			Actor: a.cfg.NodeID, Message: "config reloaded: " + summary})
	}
	return ch, nil
}

// rolesRequiring returns the roles this node holds that require one of
// the checks, sorted.
func (a *Agent) rolesRequiring(checks []string) []string {
	if len(checks) == 0 {
		return nil
	}
	st := a.State()
	var out []string
	for _, as := range st.HeldBy(a.cfg.NodeID) {
		r, ok := st.Spec.Role(as.Role)
		if !ok {
			continue
		}
		for _, c := range r.Requires {
			if slices.Contains(checks, c) {
				out = append(out, fmt.Sprintf("%s(%s)", as.Role, c))
				break
			}
		}
	}
	return out
}

// currentCheckNames are the names of the checks the node runs now (the
// config it started with, or the last reloaded one).
func (a *Agent) currentCheckNames() []string { return *a.checkNames.Load() }
