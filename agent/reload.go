package agent

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/agent/serviceact"
	"github.com/harbormaster/harbormaster/fsm"
)

// Reload applies a new config of this node (SIGHUP; loaded and validated
// with the same overrides as the running one) without stopping: the log
// level (Options.LogLevel) and the checks (Runner.Update: unchanged ones
// keep running, new and changed ones start unknown on the node; the
// check names are registered again, the unchanged ones keeping their
// replicated results), and the entries of the node's service roles
// (serviceact.Replace: the next start and stop of a changed role use the
// new entry; a running instance is not restarted, and when the mode or
// the unit changed it is stopped with the entry that started it). No held
// role is released for a reload, but a role
// that requires a check the node no longer runs becomes ineligible here
// and placement moves it; Reload logs those roles. A change to any other
// field, or an added or removed service role, is refused whole
// (config.Diff's *config.RestartError), as is a check list the runner or
// a service entry the backend cannot build: the running config is kept, the
// refusal is logged at error level and returned. The TLS files are not
// read here (ReloadTLS). Safe for concurrent use; calls are serialized.
func (a *Agent) Reload(next *config.Config) (config.Changes, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	ch, err := config.Diff(a.running, next)
	var backends map[string]service.Actuator
	if err == nil {
		backends, err = a.buildServiceBackends(next, ch.Services)
	}
	if err == nil {
		_, _, _, err = a.checks.Update(next.Checks)
		if err != nil {
			err = &config.Error{Path: next.Path, Field: "checks", Msg: err.Error()}
		}
	}
	if err != nil {
		closeBackends(backends)
		a.log.Error("config reload refused; the running config is kept", "err", err)
		return config.Changes{}, err
	}
	if ch.LogLevel != "" && a.opts.LogLevel != nil {
		var l slog.Level
		if err := l.UnmarshalText([]byte(ch.LogLevel)); err == nil {
			a.opts.LogLevel.Set(l)
		}
	}
	if ch.LogFormat != "" && a.opts.LogHandler != nil {
		if err := a.opts.LogHandler.SetFormat(ch.LogFormat); err != nil { // validated: cannot fail
			a.log.Error("log format not reloaded", "err", err)
		}
	}
	for _, role := range ch.Services {
		when := serviceact.NextCall
		if !config.SameInstance(a.running.Services[role], next.Services[role]) {
			when = serviceact.AfterStop
		}
		// Cannot fail: Diff changes only roles the node has a worker for.
		if err := a.services.Replace(role, backends[role], when); err != nil {
			a.log.Error("service entry not reloaded", "role", role, "err", err)
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

// buildServiceBackends builds the backends of the changed service roles
// from the new config, before anything is applied.
func (a *Agent) buildServiceBackends(next *config.Config, roles []string) (map[string]service.Actuator, error) {
	if len(roles) == 0 {
		return nil, nil
	}
	if a.services == nil {
		return nil, &config.Error{Path: next.Path, Field: "services", Msg: "the node runs no service roles; adding one needs a restart"}
	}
	out := map[string]service.Actuator{}
	for _, role := range roles {
		b, err := a.opts.serviceBackend(role, next.Services[role])
		if err != nil {
			closeBackends(out)
			return nil, &config.Error{Path: next.Path, Field: "services." + role, Msg: err.Error()}
		}
		out[role] = b
	}
	return out, nil
}

// closeBackends closes backends built for a reload that is refused.
func closeBackends(bs map[string]service.Actuator) {
	for _, b := range bs {
		if c, ok := b.(io.Closer); ok {
			_ = c.Close()
		}
	}
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
