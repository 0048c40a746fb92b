package main

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestHooksGetSIGPIPEAtItsDefault: the agent survives a closed stdout by
// catching SIGPIPE, not by ignoring it, because an ignored signal stays
// ignored across exec, in every hook it runs.
func TestHooksGetSIGPIPEAtItsDefault(t *testing.T) {
	notifySignals()
	out, err := exec.Command("/bin/sh", "-c", "grep SigIgn /proc/self/status").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "SigIgn:"))
	mask, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		t.Fatalf("SigIgn %q: %v", out, err)
	}
	if mask&(1<<(uint(syscall.SIGPIPE)-1)) != 0 {
		t.Fatalf("a child of the agent ignores SIGPIPE (SigIgn %s)", v)
	}
}
