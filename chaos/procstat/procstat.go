// Package procstat reads what the benchmarks measure of a process from
// /proc: resident memory and CPU time.
package procstat

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ReadRSS returns VmRSS of pid in KiB.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS line", pid)
}

// ReadCPUTicks returns utime+stime of pid in clock ticks.
func ReadCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatTicks(string(b))
}

// ParseStatTicks returns utime+stime (fields 14 and 15) of a
// /proc/PID/stat line.
func ParseStatTicks(s string) (int64, error) {
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: malformed")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("/proc/PID/stat: too few fields")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: %w", err)
	}
	return ut + st, nil
}

// ClockTicks is the kernel's USER_HZ (getconf CLK_TCK), 100 on Linux when
// getconf is missing.
func ClockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

// Usage is one process's footprint: resident memory at the start of a
// window and CPU time over it, as a percentage of one core.
type Usage struct {
	Name   string
	PID    int
	RSSKiB int64
	CPUPct float64
}

// Measure waits idle, then reads each named process's RSS and CPU time
// over window. pid returns a name's current process (0: not running); a
// process that changes during the window is an error.
func Measure(ctx context.Context, names []string, pid func(name string) int, idle, window time.Duration) ([]Usage, error) {
	if err := sleep(ctx, idle); err != nil {
		return nil, err
	}
	hz := ClockTicks()
	out := make([]Usage, 0, len(names))
	start := make([]int64, 0, len(names))
	for _, n := range names {
		p := pid(n)
		if p == 0 {
			return nil, fmt.Errorf("%s is not running", n)
		}
		rss, err := ReadRSS(p)
		if err != nil {
			return nil, err
		}
		ticks, err := ReadCPUTicks(p)
		if err != nil {
			return nil, err
		}
		out = append(out, Usage{Name: n, PID: p, RSSKiB: rss})
		start = append(start, ticks)
	}
	t0 := time.Now()
	if err := sleep(ctx, window); err != nil {
		return nil, err
	}
	wall := time.Since(t0)
	for i := range out {
		u := &out[i]
		if pid(u.Name) != u.PID {
			return nil, fmt.Errorf("%s restarted or died during the CPU window", u.Name)
		}
		ticks, err := ReadCPUTicks(u.PID)
		if err != nil {
			return nil, err
		}
		u.CPUPct = CPUPct(ticks-start[i], hz, wall)
	}
	return out, nil
}

// CPUPct is ticks of CPU time at hz ticks a second over wall, as a
// percentage of one core (two decimals).
func CPUPct(ticks, hz int64, wall time.Duration) float64 {
	if hz <= 0 || wall <= 0 {
		return 0
	}
	return math.Round(float64(ticks)/float64(hz)/wall.Seconds()*100*100) / 100
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
