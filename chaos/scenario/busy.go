package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// busyGroup is one Busy call's processes.
type busyGroup struct {
	node  string
	procs []*exec.Cmd
	done  []chan struct{}
	once  sync.Once
	err   error
}

// stop SIGKILLs the group's processes and waits for them; safe to call
// more than once and after the processes died (a crash of the node kills
// them too).
func (g *busyGroup) stop() error {
	g.once.Do(func() {
		var errs []error
		for i, p := range g.procs {
			if err := p.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("busy: kill worker %d on %s: %w", p.Process.Pid, g.node, err))
			}
			select {
			case <-g.done[i]:
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("busy: worker %d on %s did not exit", p.Process.Pid, g.node))
			}
		}
		g.err = errors.Join(errs...)
	})
	return g.err
}

// Busy starts workers CPU-burning processes in node's namespace
// (`harbormaster-lab internal busy`, one spinning thread each; needs
// ClusterOptions.LabBin), the CPU contention of a machine whose cores are
// busy with other work. They run until stop is called or the cluster is
// closed (or the node crashes: Crash kills every process in its
// namespace); stop is idempotent and returns once they have exited. ctx
// bounds the start only.
func (c *Cluster) Busy(ctx context.Context, node string, workers int) (stop func() error, err error) {
	if c.opts.LabBin == "" {
		return nil, errNoLabBin
	}
	if workers < 1 {
		return nil, fmt.Errorf("busy: workers %d on %s: want at least 1", workers, node)
	}
	if _, ok := c.Lab.Host(node); !ok {
		return nil, fmt.Errorf("busy: no host %q in the lab", node)
	}
	g := &busyGroup{node: node}
	for range workers {
		cmd := c.Lab.Command(context.Background(), node, c.opts.LabBin, "internal", "busy", "--workers", "1")
		if err := cmd.Start(); err != nil {
			_ = g.stop()
			return nil, fmt.Errorf("busy: start a worker on %s: %w", node, err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		g.procs = append(g.procs, cmd)
		g.done = append(g.done, done)
	}
	// Wait until every worker has entered the namespace (ip netns exec
	// setns, then exec), so that a crash of the node finds them.
	for _, p := range g.procs {
		for !c.Lab.Contains(node, p.Process.Pid) {
			select {
			case <-ctx.Done():
				_ = g.stop()
				return nil, fmt.Errorf("busy: workers on %s: %w", node, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	c.mu.Lock()
	c.busy = append(c.busy, g)
	c.mu.Unlock()
	c.log.Debug("busy workers started", "node", node, "workers", workers)
	return g.stop, nil
}

// stopBusy stops every Busy group (Close).
func (c *Cluster) stopBusy() error {
	c.mu.Lock()
	gs := c.busy
	c.busy = nil
	c.mu.Unlock()
	var errs []error
	for _, g := range gs {
		errs = append(errs, g.stop())
	}
	return errors.Join(errs...)
}

// BusyPIDs returns the pids of the running workers Busy started on node.
func (c *Cluster) BusyPIDs(node string) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, g := range c.busy {
		if g.node != node {
			continue
		}
		for i, p := range g.procs {
			select {
			case <-g.done[i]:
			default:
				out = append(out, p.Process.Pid)
			}
		}
	}
	return out
}
