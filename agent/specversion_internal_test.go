package agent

import (
	"testing"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// TestSpecVersionAtIsTheWritersOwn: the version an ApplySpec reply names is
// the one its own command made, even when another writer's apply is already
// in the state (the chaos matrix's compare-and-set history was not
// linearizable while the reply read the state's latest version).
func TestSpecVersionAtIsTheWritersOwn(t *testing.T) {
	st := fsm.NewState()
	apply := func(idx uint64, expected uint64) {
		t.Helper()
		next, err := fsm.Apply(st, idx, &fsm.ApplySpec{Spec: &spec.Spec{}, ExpectedVersion: expected, Actor: "t"})
		if err != nil {
			t.Fatal(err)
		}
		st = next
	}
	apply(10, 0) // version 1
	apply(11, 0) // version 2, by writer A
	apply(12, 2) // version 3, by writer B, compare-and-set
	apply(13, 0) // version 4, by writer C
	for _, c := range []struct {
		idx, expected, want uint64
	}{{11, 0, 2}, {12, 2, 3}, {13, 0, 4}, {10, 0, 1}} {
		if got := specVersionAt(st, c.idx, c.expected); got != c.want {
			t.Errorf("specVersionAt(index %d, expected %d) = %d, want %d (the state is at %d)", c.idx, c.expected, got, c.want, st.SpecVersion)
		}
	}
}
