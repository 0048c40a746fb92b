package scenario

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The stand-in service is the lab's model of an active/standby service
// (Notary, Clair): a process that, while it runs, considers itself the
// active instance, and says so in a log shared by every instance on every
// node:
//
//	start ROLE NODE EPOCH UNIXNANO PID   when it starts
//	beat  ROLE NODE EPOCH UNIXNANO PID   every 20 ms while it runs
//	stop  ROLE NODE EPOCH UNIXNANO PID   on SIGTERM, before it exits
//
// Each line is one write(2) to a file opened with O_APPEND, so lines of
// concurrent instances never interleave. An instance's active interval is
// [start, stop], or [start, last beat] when it was killed: the checker
// ("never two actives, checked by the services themselves") finds
// overlapping intervals of one role and epochs that go backwards. The
// stand-in sends no network traffic.

// StandInConfig configures RunStandIn.
type StandInConfig struct {
	Role, Node string
	Epoch      uint64
	// Log is the shared service log.
	Log string
	// PIDFile, when set, is written (atomically) after the start line and
	// removed after the stop line: the hooks wait for it.
	PIDFile string
	// Beat is the period of beat lines (default 20ms).
	Beat time.Duration
}

// RunStandIn runs one stand-in instance until ctx ends (SIGTERM), then
// logs its stop line and returns. Every log write is checked: an instance
// that cannot log is not an instance the checker can vouch for, so it
// exits with an error.
func RunStandIn(ctx context.Context, cfg StandInConfig) error {
	if cfg.Role == "" || cfg.Node == "" || cfg.Log == "" || strings.ContainsAny(cfg.Role+cfg.Node, " \n") {
		return fmt.Errorf("stand-in: role, node and log are required (without spaces)")
	}
	if cfg.Beat <= 0 {
		cfg.Beat = 20 * time.Millisecond
	}
	f, err := os.OpenFile(cfg.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("stand-in: %w", err)
	}
	defer f.Close()
	pid := os.Getpid()
	line := func(kind string) error {
		_, err := fmt.Fprintf(f, "%s %s %s %d %d %d\n", kind, cfg.Role, cfg.Node, cfg.Epoch, time.Now().UnixNano(), pid)
		return err
	}
	if err := line("start"); err != nil {
		return fmt.Errorf("stand-in: %w", err)
	}
	if cfg.PIDFile != "" {
		tmp := cfg.PIDFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			return fmt.Errorf("stand-in: %w", err)
		}
		if err := os.Rename(tmp, cfg.PIDFile); err != nil {
			return fmt.Errorf("stand-in: %w", err)
		}
	}
	t := time.NewTicker(cfg.Beat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := line("stop"); err != nil {
				return fmt.Errorf("stand-in: %w", err)
			}
			if cfg.PIDFile != "" {
				_ = os.Remove(cfg.PIDFile)
			}
			return nil
		case <-t.C:
			if err := line("beat"); err != nil {
				return fmt.Errorf("stand-in: %w", err)
			}
		}
	}
}

// Instance is one run of a stand-in, as its log lines tell it.
type Instance struct {
	Role, Node string
	Epoch      uint64
	PID        int
	// Start is its start line's time; End its stop line's, or its last
	// line's while it runs or when it was killed.
	Start, End time.Time
	// Stopped: it logged its stop line.
	Stopped bool
}

func (i Instance) String() string {
	how := "last beat"
	if i.Stopped {
		how = "stop"
	}
	return fmt.Sprintf("%s on %s (epoch %d, pid %d, start %s, %s %s)", i.Role, i.Node, i.Epoch, i.PID, stamp(i.Start), how, stamp(i.End))
}

// ServiceLog reads the shared stand-in log incrementally. Safe for
// concurrent use.
type ServiceLog struct {
	path string

	mu      sync.Mutex
	off     int64
	partial []byte
	insts   []*Instance
	current map[int]*Instance // by pid: the instance its last start opened
	bad     []string
}

// NewServiceLog returns a reader of the log at path (which may not exist
// yet).
func NewServiceLog(path string) *ServiceLog {
	return &ServiceLog{path: path, current: map[int]*Instance{}}
}

// refresh reads the lines appended since the last call. Call with mu held.
func (l *ServiceLog) refresh() error {
	f, err := os.Open(l.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("service log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return fmt.Errorf("service log: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("service log: %w", err)
	}
	l.off += int64(len(b))
	data := append(l.partial, b...)
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		l.partial = data
		return nil
	}
	l.partial = slices.Clone(data[end+1:])
	for _, ln := range strings.Split(string(data[:end]), "\n") {
		l.parse(ln)
	}
	return nil
}

// parse applies one line.
func (l *ServiceLog) parse(ln string) {
	f := strings.Fields(ln)
	if len(f) != 6 {
		l.bad = append(l.bad, ln)
		return
	}
	epoch, err1 := strconv.ParseUint(f[3], 10, 64)
	ns, err2 := strconv.ParseInt(f[4], 10, 64)
	pid, err3 := strconv.Atoi(f[5])
	if err1 != nil || err2 != nil || err3 != nil {
		l.bad = append(l.bad, ln)
		return
	}
	at := time.Unix(0, ns)
	cur := l.current[pid]
	switch f[0] {
	case "start":
		in := &Instance{Role: f[1], Node: f[2], Epoch: epoch, PID: pid, Start: at, End: at}
		l.insts = append(l.insts, in)
		l.current[pid] = in
	case "beat", "stop":
		if cur == nil || cur.Role != f[1] || cur.Node != f[2] || cur.Epoch != epoch {
			l.bad = append(l.bad, ln)
			return
		}
		cur.End = at
		if f[0] == "stop" {
			cur.Stopped = true
			delete(l.current, pid)
		}
	default:
		l.bad = append(l.bad, ln)
	}
}

// Instances reads what was appended and returns every instance so far, in
// the order they started.
func (l *ServiceLog) Instances() ([]Instance, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.refresh()
	out := make([]Instance, len(l.insts))
	for i, in := range l.insts {
		out[i] = *in
	}
	slices.SortStableFunc(out, func(a, b Instance) int { return a.Start.Compare(b.Start) })
	return out, err
}

// TakeMalformed returns, and forgets, the lines read so far that did not
// parse or belong to no instance (a beat without its start): a stand-in or
// the log is broken.
func (l *ServiceLog) TakeMalformed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.bad
	l.bad = nil
	return out
}

// Active returns the instance of role on node at epoch whose last line is
// at most fresh old (it is running), if any.
func (l *ServiceLog) Active(role, node string, epoch uint64, fresh time.Duration) (Instance, bool) {
	insts, _ := l.Instances()
	for i := len(insts) - 1; i >= 0; i-- {
		in := insts[i]
		if in.Role == role && in.Node == node && in.Epoch == epoch && !in.Stopped && time.Since(in.End) <= fresh {
			return in, true
		}
	}
	return Instance{}, false
}

// checkInstances returns the violations among insts (sorted by start):
// two instances of one role active at once (overlapping intervals), and
// an instance on another node than the previous one of its role without a
// greater epoch (or an epoch lower than the previous on the same node,
// which restarts at its epoch). Only overlaps that began at or after from
// are reported (so that successive trials do not report one twice).
func checkInstances(insts []Instance, from time.Time) []string {
	var out []string
	byRole := map[string][]Instance{}
	var roles []string
	for _, in := range insts {
		if _, ok := byRole[in.Role]; !ok {
			roles = append(roles, in.Role)
		}
		byRole[in.Role] = append(byRole[in.Role], in)
	}
	slices.Sort(roles)
	for _, role := range roles {
		is := byRole[role]
		for i := 1; i < len(is); i++ {
			prev, cur := is[i-1], is[i]
			for j := 0; j < i; j++ {
				// Every earlier instance still active when cur started.
				if o := is[j]; o.End.After(cur.Start) && !cur.Start.Before(from) {
					out = append(out, fmt.Sprintf("two actives of %s, said by the services themselves: %s and %s overlap (by at least %s)",
						role, o, cur, ms(earlier(o.End, cur.End).Sub(cur.Start))))
				}
			}
			if cur.Start.Before(from) {
				continue
			}
			switch {
			case cur.Node != prev.Node && cur.Epoch <= prev.Epoch:
				out = append(out, fmt.Sprintf("S2: %s started with epoch %d after %s: a new holder's epoch must be greater", cur, cur.Epoch, prev))
			case cur.Node == prev.Node && cur.Epoch < prev.Epoch:
				out = append(out, fmt.Sprintf("S2: %s started with epoch %d after %s: epochs went backwards", cur, cur.Epoch, prev))
			}
		}
	}
	return out
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// standInViolations checks the stand-ins' log for the window from on: no
// two actives, epochs in order, no malformed line.
func (c *Cluster) standInViolations(from time.Time) []string {
	if c.svcLog == nil {
		return nil
	}
	insts, err := c.svcLog.Instances()
	if err != nil {
		return []string{fmt.Sprintf("%s: %v (the services' own check is unproven)", stamp(time.Now()), err)}
	}
	out := checkInstances(insts, from)
	for _, ln := range c.svcLog.TakeMalformed() {
		out = append(out, fmt.Sprintf("service log %s: malformed line %q", filepath.Base(c.svcLog.path), ln))
	}
	return out
}
