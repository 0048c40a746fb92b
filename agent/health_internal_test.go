package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/agent/checks"
)

// TestCheckTransitionLogsFullOutputAtDebug: the output that is not
// replicated is in the node's own log, at debug level only.
func TestCheckTransitionLogsFullOutputAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf bytes.Buffer
		a := &Agent{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level})), checkWake: make(chan struct{}, 1)}
		a.onCheckChange(checks.State{Name: "db", Known: true, LastErr: "exit status 2: db down", Output: "db down\nDB_PASSWORD=hunter2\n"})
		got := buf.String()
		if want := level == slog.LevelDebug; strings.Contains(got, `output="db down\nDB_PASSWORD=hunter2\n"`) != want {
			t.Errorf("log at %v: got\n%s\nwant the full output logged: %v", level, got, want)
		}
		if !strings.Contains(got, "check transition") {
			t.Errorf("log at %v: got\n%s\nwant the transition at info", level, got)
		}
	}
}
