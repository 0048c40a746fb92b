package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// fakeBus plays systemd: it records calls and answers as configured. Job
// results are sent from another goroutine, as go-systemd's signal loop does.
type fakeBus struct {
	dropIn string // path of the drop-in, read at reload

	mu             sync.Mutex
	calls          []string
	dials, closes  int
	dropInAtReload string
	reloadErr      error
	startErr       error
	startRes       string // "" sends no result: the job never finishes
	stopErr        error
	stopRes        string
	propErr        error
	activeState    any
}

func (f *fakeBus) dial(context.Context) (Bus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials++
	return f, nil
}

func (f *fakeBus) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeBus) ReloadContext(context.Context) error {
	f.record("reload")
	b, _ := os.ReadFile(f.dropIn)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropInAtReload = string(b)
	return f.reloadErr
}

func (f *fakeBus) StartUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	f.record("start " + name + " " + mode)
	return f.job(f.startErr, f.startRes, ch)
}

func (f *fakeBus) StopUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	f.record("stop " + name + " " + mode)
	return f.job(f.stopErr, f.stopRes, ch)
}

func (f *fakeBus) job(err error, res string, ch chan<- string) (int, error) {
	if err != nil {
		return 0, err
	}
	if res != "" {
		go func() { ch <- res }()
	}
	return 1, nil
}

func (f *fakeBus) GetUnitPropertyContext(_ context.Context, unit, prop string) (*sddbus.Property, error) {
	f.record("get " + unit + " " + prop)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.propErr != nil {
		return nil, f.propErr
	}
	return &sddbus.Property{Name: prop, Value: dbus.MakeVariant(f.activeState)}, nil
}

func (f *fakeBus) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
}

func (f *fakeBus) snapshot() (calls []string, dials, closes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), f.dials, f.closes
}

func newFakeSystemd(t *testing.T) (*Systemd, *fakeBus) {
	t.Helper()
	root := t.TempDir()
	f := &fakeBus{
		dropIn:      filepath.Join(root, "clair.service.d", "50-harbormaster.conf"),
		startRes:    "done",
		stopRes:     "done",
		activeState: "active",
	}
	s := NewSystemd("clair.service", SystemdOptions{DropInRoot: root, Dial: f.dial})
	t.Cleanup(func() { _ = s.Close() })
	return s, f
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSystemdStartWritesDropInReloadsThenStarts(t *testing.T) {
	s, f := newFakeSystemd(t)
	if err := s.Start(testCtx(t), Env{Role: "clair", Node: "n1", Epoch: 42}); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	calls, _, _ := f.snapshot()
	if want := []string{"reload", "start clair.service replace"}; !reflect.DeepEqual(calls, want) {
		t.Fatalf("calls = %q, want %q", calls, want)
	}
	want := "# Written by harbormaster when it starts the unit for a role; do not edit.\n" +
		"[Service]\n" +
		`Environment="HARBORMASTER_ROLE=clair" "HARBORMASTER_NODE=n1" "HARBORMASTER_EPOCH=42"` + "\n"
	if f.dropInAtReload != want {
		t.Fatalf("drop-in when systemd reloaded:\n%s\nwant\n%s", f.dropInAtReload, want)
	}
	fi, err := os.Stat(f.dropIn)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("drop-in %s: %v, mode %v; want mode 0644", f.dropIn, err, fi.Mode())
	}
	ents, _ := os.ReadDir(filepath.Dir(f.dropIn))
	if len(ents) != 1 {
		t.Fatalf("drop-in directory holds %d files, want only the drop-in (no temporary files)", len(ents))
	}

	// A later start replaces the drop-in with the new epoch.
	if err := s.Start(testCtx(t), Env{Role: "clair", Node: "n1", Epoch: 43}); err != nil {
		t.Fatalf("second Start() = %v", err)
	}
	if !strings.Contains(f.dropInAtReload, `"HARBORMASTER_EPOCH=43"`) {
		t.Fatalf("drop-in after the second start:\n%s\nwant epoch 43", f.dropInAtReload)
	}
}

func TestRenderDropInQuoting(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		want string
	}{
		{"plain", Env{Role: "notary", Node: "n1", Epoch: 18446744073709551615},
			`"HARBORMASTER_ROLE=notary" "HARBORMASTER_NODE=n1" "HARBORMASTER_EPOCH=18446744073709551615"`},
		{"spaces", Env{Role: "my role", Node: "node one"},
			`"HARBORMASTER_ROLE=my role" "HARBORMASTER_NODE=node one" "HARBORMASTER_EPOCH=0"`},
		{"quotes and backslashes", Env{Role: `say "hi"`, Node: `a\b'c`},
			`"HARBORMASTER_ROLE=say \"hi\"" "HARBORMASTER_NODE=a\\b'c" "HARBORMASTER_EPOCH=0"`},
		{"specifiers and control characters", Env{Role: "100%n", Node: "a\nb\tc\x01"},
			`"HARBORMASTER_ROLE=100%%n" "HARBORMASTER_NODE=a\nb\tc\x01" "HARBORMASTER_EPOCH=0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(renderDropIn(tt.env))
			lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
			if len(lines) != 3 || lines[1] != "[Service]" {
				t.Fatalf("drop-in is not a comment, [Service] and one Environment= line:\n%s", got)
			}
			if want := "Environment=" + tt.want; lines[2] != want {
				t.Fatalf("got  %s\nwant %s", lines[2], want)
			}
		})
	}
}

func TestSystemdJobResults(t *testing.T) {
	noSuchUnit := dbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit clair.service not loaded."}}
	tests := []struct {
		name    string
		stop    bool
		setup   func(*fakeBus)
		wantErr string // "" means success
	}{
		{"start done", false, func(f *fakeBus) {}, ""},
		{"start failed", false, func(f *fakeBus) { f.startRes = "failed" }, `start clair.service: the start job finished with result "failed"`},
		{"start dependency", false, func(f *fakeBus) { f.startRes = "dependency" }, `result "dependency"`},
		{"start of a unit that does not exist", false, func(f *fakeBus) { f.startErr = noSuchUnit }, "not loaded"},
		{"stop of an inactive unit (systemd answers done)", true, func(f *fakeBus) {}, ""},
		{"stop of a unit that is not loaded", true, func(f *fakeBus) { f.stopErr = noSuchUnit }, ""},
		{"stop of a unit that is not loaded (pointer error)", true, func(f *fakeBus) { f.stopErr = dbus.NewError(noSuchUnit.Name, nil) }, ""},
		{"stop refused", true, func(f *fakeBus) {
			f.stopErr = dbus.Error{Name: "org.freedesktop.systemd1.UnitMasked", Body: []any{"masked"}}
		}, "stop the unit: masked"},
		{"stop failed", true, func(f *fakeBus) { f.stopRes = "failed" }, `the stop job finished with result "failed"`},
		{"stop canceled", true, func(f *fakeBus) { f.stopRes = "canceled" }, `result "canceled"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, f := newFakeSystemd(t)
			tt.setup(f)
			var err error
			if tt.stop {
				err = s.Stop(testCtx(t), Env{})
			} else {
				err = s.Start(testCtx(t), Env{Role: "clair", Node: "n1", Epoch: 1})
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("= %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("= %v, want an error containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrTimeout) {
				t.Fatalf("= %v, which wraps ErrTimeout though systemd answered", err)
			}
		})
	}
}

func TestSystemdJobTimeout(t *testing.T) {
	for _, verb := range []string{"start", "stop"} {
		t.Run(verb, func(t *testing.T) {
			s, f := newFakeSystemd(t)
			f.startRes, f.stopRes = "", "" // the jobs never finish
			// begin before the deadline is set: the call may not return
			// before 300 ms from here.
			begin := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			// The job never finishes: only ctx can end the call. A call
			// that ignored it would hang; fail it after a liveness wait.
			done := make(chan error, 1)
			go func() {
				if verb == "start" {
					done <- s.Start(ctx, Env{})
				} else {
					done <- s.Stop(ctx, Env{})
				}
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s still waits for the job 10s after its 300ms timeout", verb)
			}
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s = %v, want ErrTimeout and context.DeadlineExceeded", verb, err)
			}
			if !strings.Contains(err.Error(), "timed out after 300ms") {
				t.Errorf("error %q does not say how long it waited", err)
			}
			if took := time.Since(begin); took < 300*time.Millisecond {
				t.Errorf("%s returned after %v, before its 300ms timeout", verb, took)
			}
		})
	}
}

func TestSystemdStatus(t *testing.T) {
	tests := []struct {
		state      any
		wantActive bool
		wantErr    bool
	}{
		{"active", true, false},
		{"activating", true, false},
		{"reloading", true, false},
		{"refreshing", true, false},
		{"inactive", false, false},
		{"failed", false, false},
		{"deactivating", false, false},
		{"maintenance", false, false},
		{"bogus", false, true},
		{uint32(1), false, true},
	}
	for _, tt := range tests {
		s, f := newFakeSystemd(t)
		f.activeState = tt.state
		active, err := s.Status(testCtx(t), Env{})
		if (err != nil) != tt.wantErr || active != tt.wantActive {
			t.Errorf("ActiveState %v: Status() = %v, %v; want %v, error %v", tt.state, active, err, tt.wantActive, tt.wantErr)
		}
		if calls, _, _ := f.snapshot(); !reflect.DeepEqual(calls, []string{"get clair.service ActiveState"}) {
			t.Errorf("calls = %q, want one read of ActiveState", calls)
		}
	}
}

func TestSystemdConnectsLazilyAndReconnectsAfterError(t *testing.T) {
	s, f := newFakeSystemd(t)
	ctx := testCtx(t)
	if _, dials, _ := f.snapshot(); dials != 0 {
		t.Fatalf("NewSystemd dialed D-Bus %d times, want 0", dials)
	}
	for range 2 {
		if _, err := s.Status(ctx, Env{}); err != nil {
			t.Fatalf("Status() = %v", err)
		}
	}
	if _, dials, closes := f.snapshot(); dials != 1 || closes != 0 {
		t.Fatalf("after two calls: %d dials, %d closes; want 1, 0", dials, closes)
	}

	f.mu.Lock()
	f.reloadErr = errors.New("connection reset")
	f.mu.Unlock()
	err := s.Start(ctx, Env{})
	if err == nil || !strings.Contains(err.Error(), "daemon-reload") || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Start() with a failing reload = %v, want an error naming the reload", err)
	}
	calls, _, closes := f.snapshot()
	if calls[len(calls)-1] != "reload" {
		t.Fatalf("calls = %q: the unit was started though the reload failed", calls)
	}
	if closes != 1 {
		t.Fatalf("%d closes after a failed call, want 1", closes)
	}

	f.mu.Lock()
	f.reloadErr = nil
	f.mu.Unlock()
	if err := s.Start(ctx, Env{}); err != nil {
		t.Fatalf("Start() after the error = %v", err)
	}
	if _, dials, _ := f.snapshot(); dials != 2 {
		t.Fatalf("%d dials, want 2: the call after an error reconnects", dials)
	}

	// A D-Bus error answer from systemd keeps the connection.
	f.mu.Lock()
	f.stopErr = dbus.Error{Name: "org.freedesktop.systemd1.UnitMasked", Body: []any{"masked"}}
	f.mu.Unlock()
	if err := s.Stop(ctx, Env{}); err == nil {
		t.Fatal("Stop() of a masked unit succeeded")
	}
	if _, _, closes := f.snapshot(); closes != 1 {
		t.Fatalf("%d closes, want still 1: systemd's error answer is no reason to reconnect", closes)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, _, closes := f.snapshot(); closes != 2 {
		t.Fatalf("%d closes after Close(), want 2", closes)
	}
	if _, err := s.Status(ctx, Env{}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Status() after Close() = %v, want an error", err)
	}
	if _, dials, _ := f.snapshot(); dials != 2 {
		t.Fatalf("%d dials, want 2: a closed actuator does not reconnect", dials)
	}
}
