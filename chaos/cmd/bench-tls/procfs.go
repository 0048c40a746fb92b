package main

import (
	"os"
	"os/exec"
	"strings"
)

// loadAvg returns the first three fields of /proc/loadavg ("?" if
// unreadable): the machine is shared, and the load says how much the
// figures can be trusted.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func kernel() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
