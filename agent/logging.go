package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// LogHandler is the agent's slog handler: text or JSON lines on one writer,
// at a level, both changeable while it runs (a config reload): loggers
// derived from it (With, WithGroup) follow the change.
type LogHandler struct {
	root *logRoot
	ops  []logOp // attributes and groups added by WithAttrs/WithGroup, in order
	// cache is the inner handler with ops applied, for root's generation.
	cache atomic.Pointer[cachedHandler]
}

type logRoot struct {
	w     io.Writer
	level *slog.LevelVar
	mu    sync.Mutex
	gen   atomic.Uint64
	base  atomic.Pointer[slog.Handler]
}

type logOp struct {
	attrs []slog.Attr
	group string
}

type cachedHandler struct {
	gen uint64
	h   slog.Handler
}

// LogFormats are the values of log_format.
var LogFormats = []string{"text", "json"}

// NewLogHandler returns a handler writing format ("text", the default
// when empty, or "json") lines to w at level.
func NewLogHandler(w io.Writer, format string, level *slog.LevelVar) (*LogHandler, error) {
	r := &logRoot{w: w, level: level}
	if err := r.setFormat(format); err != nil {
		return nil, err
	}
	return &LogHandler{root: r}, nil
}

// SetFormat switches every logger of this handler to format.
func (h *LogHandler) SetFormat(format string) error { return h.root.setFormat(format) }

// Level is the handler's level.
func (h *LogHandler) Level() *slog.LevelVar { return h.root.level }

func (r *logRoot) setFormat(format string) error {
	opts := &slog.HandlerOptions{Level: r.level}
	var base slog.Handler
	switch format {
	case "", "text":
		base = slog.NewTextHandler(r.w, opts)
	case "json":
		base = slog.NewJSONHandler(r.w, opts)
	default:
		return fmt.Errorf("log_format: %q is not a format; use %s", format, strings.Join(LogFormats, " or "))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.base.Store(&base)
	r.gen.Add(1)
	return nil
}

func (h *LogHandler) inner() slog.Handler {
	gen := h.root.gen.Load()
	if c := h.cache.Load(); c != nil && c.gen == gen {
		return c.h
	}
	in := *h.root.base.Load()
	for _, op := range h.ops {
		if op.group != "" {
			in = in.WithGroup(op.group)
		} else {
			in = in.WithAttrs(op.attrs)
		}
	}
	h.cache.Store(&cachedHandler{gen: gen, h: in})
	return in
}

func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.root.level.Level() }

func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner().Handle(ctx, r)
}

func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{root: h.root, ops: append(h.ops[:len(h.ops):len(h.ops)], logOp{attrs: attrs})}
}

func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &LogHandler{root: h.root, ops: append(h.ops[:len(h.ops):len(h.ops)], logOp{group: name})}
}

// hclogAdapter routes hashicorp/raft's hclog lines to the agent's slog
// logger (component=raft), so they come out in the agent's format and
// level. Levels map one to one (trace is below debug). demote, when set,
// may lower an error line's level to warn: the errors raft logs about a
// peer that is stopping on purpose (see Agent.raftDemote).
type hclogAdapter struct {
	log    *slog.Logger
	name   string
	args   []any
	demote func(msg string, args []any) bool
}

// levelTrace is hclog's trace, below slog's debug.
const levelTrace = slog.LevelDebug - 4

func newHclogAdapter(l *slog.Logger, demote func(string, []any) bool) *hclogAdapter {
	return &hclogAdapter{log: l.With("component", "raft"), demote: demote}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	l := slogLevel(level)
	if l == slog.LevelError && h.demote != nil && h.demote(msg, args) {
		l = slog.LevelWarn
	}
	if !h.log.Enabled(context.Background(), l) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	if h.name != "" {
		all = append(all, "subsystem", h.name)
	}
	all = append(all, h.args...)
	all = append(all, args...)
	h.log.Log(context.Background(), l, msg, all...)
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(l slog.Level) bool { return h.log.Enabled(context.Background(), l) }
func (h *hclogAdapter) IsTrace() bool             { return h.enabled(levelTrace) }
func (h *hclogAdapter) IsDebug() bool             { return h.enabled(slog.LevelDebug) }
func (h *hclogAdapter) IsInfo() bool              { return h.enabled(slog.LevelInfo) }
func (h *hclogAdapter) IsWarn() bool              { return h.enabled(slog.LevelWarn) }
func (h *hclogAdapter) IsError() bool             { return h.enabled(slog.LevelError) }
func (h *hclogAdapter) ImpliedArgs() []any        { return h.args }
func (h *hclogAdapter) Name() string              { return h.name }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(h.args[:len(h.args):len(h.args)], args...)
	return &c
}

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is ignored: the agent's handler has the level (log_level).
func (h *hclogAdapter) SetLevel(hclog.Level) {}

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter logs each line written at info (or the options' forced
// level).
func (h *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return writerFunc(func(p []byte) (int, error) {
		h.Log(level, string(bytes.TrimRight(p, "\n")))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ hclog.Logger = (*hclogAdapter)(nil)

// raftDemote says whether an error raft logs is expected during a graceful
// stop, and is then logged at warn: while this node stops (its transport
// and its peers' go away under raft's replication), and an error about a
// peer (its "peer" argument, a Raft address or id) that is leaving (a
// graceful stop announced with a Leave) or no longer a member. Other
// errors keep their level.
func (a *Agent) raftDemote(_ string, args []any) bool {
	if a.stopping.Load() {
		return true
	}
	var peer string
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); !ok || (k != "peer" && k != "target") {
			continue
		}
		switch v := args[i+1].(type) {
		case raft.Server:
			peer = string(v.ID)
		case *raft.Server:
			peer = string(v.ID)
		case raft.ServerAddress:
			peer = string(v)
		case raft.ServerID:
			peer = string(v)
		default:
			peer = fmt.Sprint(v)
		}
	}
	if peer == "" {
		return false
	}
	for id, n := range a.State().Nodes {
		if id == peer || n.RaftAddr == peer {
			return n.Leaving
		}
	}
	return false
}
