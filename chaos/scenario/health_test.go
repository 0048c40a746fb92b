package scenario

import (
	"testing"
	"time"
)

func TestFlapMovesBound(t *testing.T) {
	// 60 s with a 15 s hold-down: 4 windows, 2 moves each, plus 2. The
	// flapping node returns at most once per hold-down (7 moves in 60 s
	// measured); without the hold-down it returns after every flip, 20
	// moves in 60 s.
	if got := flapMovesBound(60 * time.Second); got != 10 {
		t.Errorf("flapMovesBound(60s) = %d, want 10", got)
	}
	if got := flapMovesBound(45 * time.Second); got != 8 {
		t.Errorf("flapMovesBound(45s) = %d, want 8", got)
	}
}
