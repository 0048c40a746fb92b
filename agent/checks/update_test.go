package checks

import (
	"slices"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// trueCheck is an exec check of /bin/true probing every interval.
func trueCheck(name string, interval time.Duration) Config {
	return Config{Name: name, Type: TypeExec, Argv: []string{"/bin/true"}, Fall: 1, Rise: 1,
		Interval: conf.Duration(interval), Timeout: conf.Duration(interval)}
}

func stateOf(r *Runner, name string) (State, bool) {
	for _, s := range r.States() {
		if s.Name == name {
			return s, true
		}
	}
	return State{}, false
}

// waitKnown polls until the check has a verdict (at most 10s).
func waitKnown(t *testing.T, r *Runner, name string) State {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, ok := stateOf(r, name); ok && s.Known {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("check %s has no verdict after 10s: %+v", name, r.States())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A reload keeps an unchanged check running with its verdict, restarts a
// changed one unknown, starts a new one and stops a removed one.
func TestUpdateWhileRunning(t *testing.T) {
	fast := 500 * time.Millisecond
	r, err := NewRunner([]Config{trueCheck("same", fast), trueCheck("changed", fast), trueCheck("gone", fast)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	startRunner(t, r)
	for _, n := range []string{"same", "changed", "gone"} {
		waitKnown(t, r, n)
	}
	since := waitKnown(t, r, "same").Since
	// New checks' first probe comes after the longest jitter: the state
	// read right after Update is the one Update left.
	r.runMu.Lock()
	r.randN = func(n int64) int64 { return n - 1 }
	r.runMu.Unlock()
	slow := 2 * time.Second
	added, removed, changed, err := r.Update([]Config{trueCheck("same", fast), trueCheck("changed", slow), trueCheck("new", slow)})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if !slices.Equal(added, []string{"new"}) || !slices.Equal(removed, []string{"gone"}) || !slices.Equal(changed, []string{"changed"}) {
		t.Fatalf("Update = +%v -%v ~%v, want +[new] -[gone] ~[changed]", added, removed, changed)
	}
	if s, _ := stateOf(r, "same"); !s.Known || !s.Passing || !s.Since.Equal(since) {
		t.Fatalf("unchanged check after Update: %+v, want its verdict kept (since %v)", s, since)
	}
	for _, n := range []string{"changed", "new"} {
		if s, ok := stateOf(r, n); !ok || s.Known {
			t.Fatalf("check %s after Update: %+v (present %t), want present and unknown", n, s, ok)
		}
	}
	if _, ok := stateOf(r, "gone"); ok {
		t.Fatalf("removed check still listed: %+v", r.States())
	}
	// The new and changed checks run: they reach a verdict.
	waitKnown(t, r, "changed")
	waitKnown(t, r, "new")
}

// A reload that does not validate changes nothing.
func TestUpdateRefusedKeepsChecks(t *testing.T) {
	r, err := NewRunner([]Config{trueCheck("a", time.Hour)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.Update([]Config{trueCheck("b", time.Hour), trueCheck("b", time.Hour)}); err == nil {
		t.Fatal("Update with a duplicate name succeeded")
	}
	if names := stateNames(r); !slices.Equal(names, []string{"a"}) {
		t.Fatalf("checks after a refused Update: %v, want [a]", names)
	}
	// Before Run, an Update replaces the list Run starts.
	if _, _, _, err := r.Update([]Config{trueCheck("b", 500*time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	startRunner(t, r)
	waitKnown(t, r, "b")
	if names := stateNames(r); !slices.Equal(names, []string{"b"}) {
		t.Fatalf("checks: %v, want [b]", names)
	}
}

func stateNames(r *Runner) []string {
	var out []string
	for _, s := range r.States() {
		out = append(out, s.Name)
	}
	return out
}
