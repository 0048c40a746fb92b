package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// DefaultDropInRoot is where runtime unit drop-ins live; they vanish at reboot.
const DefaultDropInRoot = "/run/systemd/system"

// dropInName is the drop-in file Start writes into <root>/<unit>.d/.
const dropInName = "50-harbormaster.conf"

// errNoSuchUnit is the D-Bus error systemd returns when asked to stop a unit
// that is not loaded (no unit file) and not running.
const errNoSuchUnit = "org.freedesktop.systemd1.NoSuchUnit"

// Bus is the part of systemd's D-Bus API the systemd actuator uses.
// *dbus.Conn of github.com/coreos/go-systemd/v22/dbus implements it; tests
// use a fake. The job methods send the job's result on ch when it finished.
type Bus interface {
	ReloadContext(ctx context.Context) error
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	GetUnitPropertyContext(ctx context.Context, unit, propertyName string) (*sddbus.Property, error)
	Close()
}

// SystemdOptions are the injectable parts of the systemd actuator; zero
// values select the real ones.
type SystemdOptions struct {
	// DropInRoot replaces DefaultDropInRoot.
	DropInRoot string
	// Dial opens a connection to systemd; default: the system bus, or
	// systemd's private socket when that fails and we run as root.
	Dial func(ctx context.Context) (Bus, error)
}

// Systemd runs one systemd unit. It connects to D-Bus on first use and
// reconnects on the call after an error. It is safe for concurrent use; Close
// it when done.
type Systemd struct {
	unit string
	root string
	dial func(ctx context.Context) (Bus, error)

	mu     sync.Mutex
	bus    Bus // nil until dialed, and after an error
	closed bool
}

// NewSystemd returns the actuator of unit, a valid service unit name (see
// Config.Validate). It does not connect yet.
func NewSystemd(unit string, o SystemdOptions) *Systemd {
	s := &Systemd{unit: unit, root: o.DropInRoot, dial: o.Dial}
	if s.root == "" {
		s.root = DefaultDropInRoot
	}
	if s.dial == nil {
		s.dial = func(ctx context.Context) (Bus, error) { return sddbus.NewWithContext(ctx) }
	}
	return s
}

// Start writes the unit's drop-in with env, reloads systemd and starts the
// unit, waiting for the start job's result: "done" is success.
func (s *Systemd) Start(ctx context.Context, env Env) error {
	begin := time.Now()
	if err := s.writeDropIn(env); err != nil {
		return err
	}
	b, err := s.conn(ctx)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.unit, err)
	}
	if err := b.ReloadContext(ctx); err != nil {
		s.drop(b)
		return s.callErr(ctx, begin, "start", "reload systemd (daemon-reload)", err)
	}
	return s.job(ctx, b, begin, "start", b.StartUnitContext)
}

// Stop stops the unit, waiting for the stop job's result. A unit that is
// inactive or not loaded counts as stopped.
func (s *Systemd) Stop(ctx context.Context, env Env) error {
	begin := time.Now()
	b, err := s.conn(ctx)
	if err != nil {
		return fmt.Errorf("stop %s: %w", s.unit, err)
	}
	return s.job(ctx, b, begin, "stop", b.StopUnitContext)
}

// Status reads the unit's ActiveState: active, activating, reloading and
// refreshing are active; inactive, failed, deactivating and maintenance are
// not; other states are an error.
func (s *Systemd) Status(ctx context.Context, env Env) (bool, error) {
	begin := time.Now()
	b, err := s.conn(ctx)
	if err != nil {
		return false, fmt.Errorf("status of %s: %w", s.unit, err)
	}
	p, err := b.GetUnitPropertyContext(ctx, s.unit, "ActiveState")
	if err != nil {
		s.drop(b)
		return false, s.callErr(ctx, begin, "status of", "read ActiveState", err)
	}
	state, ok := p.Value.Value().(string)
	if !ok {
		return false, fmt.Errorf("status of %s: ActiveState is %s, not a string", s.unit, p.Value.String())
	}
	switch state {
	case "active", "activating", "reloading", "refreshing":
		return true, nil
	case "inactive", "failed", "deactivating", "maintenance":
		return false, nil
	}
	return false, fmt.Errorf("status of %s: unknown ActiveState %q", s.unit, state)
}

// Close closes the D-Bus connection, if any. Later calls fail.
func (s *Systemd) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bus != nil {
		s.bus.Close()
		s.bus = nil
	}
	s.closed = true
	return nil
}

// job runs a start or stop job and waits for its result or ctx.
func (s *Systemd) job(ctx context.Context, b Bus, begin time.Time, verb string,
	call func(ctx context.Context, name, mode string, ch chan<- string) (int, error)) error {
	// Buffered: the connection's signal loop must never block on us, even
	// after we gave up waiting.
	ch := make(chan string, 1)
	if _, err := call(ctx, s.unit, "replace", ch); err != nil {
		name, answered := dbusErrorName(err)
		if verb == "stop" && name == errNoSuchUnit {
			return nil // not loaded and not running: stopped
		}
		if !answered {
			s.drop(b) // a transport error, not systemd's answer
		}
		return s.callErr(ctx, begin, verb, verb+" the unit", err)
	}
	select {
	case res := <-ch:
		return s.jobResult(verb, res)
	case <-ctx.Done():
		select {
		case res := <-ch: // finished as ctx ended: the result decides
			return s.jobResult(verb, res)
		default:
		}
		return s.timeoutErr(ctx, begin, verb, "the "+verb+" job is still queued in systemd")
	}
}

// jobResult maps a job's result to an error: only "done" is success.
func (s *Systemd) jobResult(verb, res string) error {
	if res == "done" {
		return nil
	}
	return fmt.Errorf("%s %s: the %s job finished with result %q, not \"done\"; see systemctl status %s and journalctl -u %s", verb, s.unit, verb, res, s.unit, s.unit)
}

// dbusErrorName returns the name of the D-Bus error err carries, and whether
// it carries one (the peer answered with an error).
func dbusErrorName(err error) (string, bool) {
	var v dbus.Error
	if errors.As(err, &v) {
		return v.Name, true
	}
	var p *dbus.Error
	if errors.As(err, &p) && p != nil {
		return p.Name, true
	}
	return "", false
}

// callErr wraps the error of a D-Bus call, as a timeout when ctx ended.
func (s *Systemd) callErr(ctx context.Context, begin time.Time, verb, what string, err error) error {
	if ctx.Err() != nil {
		return s.timeoutErr(ctx, begin, verb, what+" did not answer")
	}
	return fmt.Errorf("%s %s: %s: %w", verb, s.unit, what, err)
}

func (s *Systemd) timeoutErr(ctx context.Context, begin time.Time, verb, what string) error {
	return fmt.Errorf("%s %s: timed out after %v (%s): %w (%w)", verb, s.unit, waited(ctx, begin), what, ErrTimeout, context.Cause(ctx))
}

// conn returns the connection, dialing it if needed.
func (s *Systemd) conn(ctx context.Context) (Bus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("the systemd actuator is closed")
	}
	if s.bus == nil {
		b, err := s.dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("connect to systemd over D-Bus: %w", err)
		}
		s.bus = b
	}
	return s.bus, nil
}

// drop closes b after an error, so the next call reconnects; b may already
// have been replaced by another caller.
func (s *Systemd) drop(b Bus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bus == b {
		s.bus = nil
		b.Close()
	}
}

// dropInPath is <root>/<unit>.d/50-harbormaster.conf.
func (s *Systemd) dropInPath() string {
	return filepath.Join(s.root, s.unit+".d", dropInName)
}

// writeDropIn replaces the unit's drop-in atomically.
func (s *Systemd) writeDropIn(env Env) error {
	path := s.dropInPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("start %s: write drop-in: %w", s.unit, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+dropInName+".*")
	if err != nil {
		return fmt.Errorf("start %s: write drop-in: %w", s.unit, err)
	}
	_, err = f.Write(renderDropIn(env))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("start %s: write drop-in %s: %w", s.unit, path, err)
	}
	return nil
}

// renderDropIn renders the drop-in setting env in the unit's environment.
func renderDropIn(env Env) []byte {
	var b strings.Builder
	b.WriteString("# Written by harbormaster when it starts the unit for a role; do not edit.\n")
	b.WriteString("[Service]\nEnvironment=")
	for i, v := range env.vars() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteUnitValue(v))
	}
	b.WriteByte('\n')
	return []byte(b.String())
}

// quoteUnitValue double-quotes one Environment= assignment for a unit file.
// systemd unquotes it with C escapes (so backslash, double quote and control
// characters are escaped) after expanding specifiers (so % is doubled).
func quoteUnitValue(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '%':
			b.WriteString("%%")
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
