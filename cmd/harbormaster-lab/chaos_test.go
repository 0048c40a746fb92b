package main

import (
	"strings"
	"testing"
)

// A Redis fault kind without --redis is refused, naming the flag.
func TestChaosKindsRedisNeedsFlag(t *testing.T) {
	if _, err := chaosKinds("crash,kill-redis", false); err == nil || !strings.Contains(err.Error(), "--redis") {
		t.Fatalf("kill-redis without --redis: %v, want an error naming --redis", err)
	}
	ks, err := chaosKinds("crash,pause-redis", true)
	if err != nil || len(ks) != 2 {
		t.Fatalf("pause-redis with --redis: %v, %v", ks, err)
	}
	if _, err := chaosKinds("bogus", true); err == nil || !strings.Contains(err.Error(), "--kinds") {
		t.Fatalf("an unknown kind: %v", err)
	}
}
