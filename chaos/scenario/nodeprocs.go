package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

// Daemon is a program a scenario runs in every node's namespace for the
// whole life of the cluster, such as the node's registry. It starts before
// the agents, dies with its node in Cluster.Crash, starts again in
// Cluster.Restore (before the agent, as on a machine that boots), and is
// stopped in Close.
type Daemon struct {
	// Name identifies it in Cluster.Daemon and in its log file
	// <dir>/<node>-<name>.log: a short word such as "registry".
	Name string
	// Argv returns its command line on node n; it may write the files
	// the program needs (its config) under c.Dir(). It runs in the
	// scenario's process and must send nothing.
	Argv func(c *Cluster, n lab.Node) ([]string, error)
}

// Proc is one process a Cluster started inside a node's namespace (a
// daemon). Its methods are safe for concurrent use.
type Proc struct {
	Node, Name string
	cmd        *exec.Cmd
	done       chan struct{}
	err        error
	// stopping is set before the cluster kills or stops the process on
	// purpose; an exit without it is reported as unexpected.
	stopping atomic.Bool
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (SIGSTOP and SIGCONT to freeze and thaw
// it).
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to %s on %s: %w", sig, p.Name, p.Node, err)
	}
	return nil
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func daemonKey(node, name string) string { return node + "/" + name }

// Daemon returns the node's running daemon of that name, or nil.
func (c *Cluster) Daemon(node, name string) *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.daemons[daemonKey(node, name)]
}

// startDaemons starts every daemon of the options on node.
func (c *Cluster) startDaemons(node string) error {
	n := c.Node(node)
	for _, d := range c.opts.Daemons {
		argv, err := d.Argv(c, n)
		if err != nil {
			return fmt.Errorf("cluster: %s on %s: %w", d.Name, node, err)
		}
		if err := c.startDaemon(node, d.Name, argv); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startDaemon(node, name string, argv []string) error {
	logPath := filepath.Join(c.dir, node+"-"+name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %s log: %w", name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "=== chaos/scenario: %s start %s: %s\n", name, time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := c.Lab.Command(context.Background(), node, argv...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cluster: start %s on %s: %w", name, node, err)
	}
	p := &Proc{Node: node, Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		if !p.stopping.Load() {
			c.mu.Lock()
			c.exits = append(c.exits, fmt.Sprintf("%s: %s on %s exited unexpectedly (%v); see %s",
				stamp(time.Now()), name, node, p.err, logPath))
			c.mu.Unlock()
		}
	}()
	c.mu.Lock()
	c.daemons[daemonKey(node, name)] = p
	c.mu.Unlock()
	c.log.Debug("daemon started", "node", node, "name", name, "pid", cmd.Process.Pid)
	return nil
}

// markDaemonsStopping flags the node's daemons as stopped on purpose (a
// crash kills them).
func (c *Cluster) markDaemonsStopping(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.daemons {
		if p.Node == node {
			p.stopping.Store(true)
		}
	}
}

// waitDaemonsExit waits until the node's daemons have exited (after a
// crash), for at most 5 s.
func (c *Cluster) waitDaemonsExit(node string) {
	c.mu.Lock()
	var ps []*Proc
	for _, p := range c.daemons {
		if p.Node == node {
			ps = append(ps, p)
		}
	}
	c.mu.Unlock()
	deadline := time.After(5 * time.Second)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-deadline:
			return
		}
	}
}

// stopDaemons stops every daemon: SIGCONT (a frozen one cannot exit) and
// SIGTERM, then SIGKILL after 3 s.
func (c *Cluster) stopDaemons() {
	c.mu.Lock()
	ps := make([]*Proc, 0, len(c.daemons))
	for _, p := range c.daemons {
		ps = append(ps, p)
	}
	c.daemons = map[string]*Proc{}
	c.mu.Unlock()
	for _, p := range ps {
		p.stopping.Store(true)
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			c.log.Warn("daemon did not stop on SIGTERM; killing it", "node", p.Node, "name", p.Name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// RunInLab runs the harbormaster-lab binary (ClusterOptions.LabBin) with
// args inside the node's namespace and waits for it, for helpers that send
// lab traffic (`harbormaster-lab internal push`): the helper checks its own
// namespace with lab.GuardHere before it sends anything, so nothing is
// sent from the scenario's (root) namespace. It returns the helper's
// combined output.
func (c *Cluster) RunInLab(ctx context.Context, node string, args ...string) (string, error) {
	if c.opts.LabBin == "" {
		return "", errNoLabBin
	}
	cmd := c.Lab.Command(ctx, node, append([]string{c.opts.LabBin}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s on %s: %w: %s", filepath.Base(c.opts.LabBin), strings.Join(args, " "), node, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// errNoLabBin is returned when a scenario needs lab helpers but no
// harbormaster-lab binary was given.
var errNoLabBin = errors.New("cluster: this scenario runs lab helpers: set ClusterOptions.LabBin to the harbormaster-lab binary")

// Stand-in services. A role listed in ClusterOptions.StandIns is a service
// role whose hooks, on every node, run the lab's stand-in service
// (`harbormaster-lab internal service`, RunStandIn): the start hook
// launches it in the background and waits for its pid file; the stop hook
// sends it SIGTERM and waits until it has exited. Every instance logs to
// the cluster's shared service log (ServiceLog), which the checks read.

// standInScript is the hook script of one node; %[1]s is the node's
// service dir, %[2]s the harbormaster-lab binary, %[3]s the shared log.
const standInScript = `#!/bin/sh
# Service hooks of the lab's stand-in services (written by chaos/scenario).
#   start: launch harbormaster-lab internal service in the background; it
#          writes its pid file after its start line; wait for that file.
#   stop:  SIGTERM it and wait until it has exited. Then, if the flag file
#          hang-stop-$ROLE exists, hang (the stop-hook-hangs scenario: the
#          agent kills the hook's process group at stop_timeout).
# Start and stop hold one lock (docs/configuration.md): a restarted agent may
# run stop while its old guard's start is still launching the stand-in.
set -u
role=$HARBORMASTER_ROLE
dir=%[1]s
pid_file="$dir/$role.pid"
exec 9>"$dir/$role.lock"
flock 9
# alive PID: PID is a stand-in that has not exited (a zombie's cmdline is
# empty, and the lab's init may not reap it soon).
alive() {
	[ -n "$1" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q ' internal service '
}
case "${1:-}" in
start)
	if alive "$(cat "$pid_file" 2>/dev/null)"; then
		exit 0
	fi
	rm -f "$pid_file"
	%[2]s internal service --role "$role" --node "$HARBORMASTER_NODE" --epoch "$HARBORMASTER_EPOCH" \
		--log %[3]s --pid-file "$pid_file" </dev/null >>"$dir/$role.out" 2>&1 9>&- &
	i=0
	while [ ! -s "$pid_file" ]; do
		i=$((i + 1))
		if [ "$i" -gt 500 ]; then
			echo "the stand-in for $role wrote no pid file within 5 s" >&2
			exit 1
		fi
		sleep 0.01
	done
	;;
stop)
	pid=$(cat "$pid_file" 2>/dev/null)
	if alive "$pid"; then
		kill -TERM "$pid"
		while alive "$pid"; do
			sleep 0.01
		done
	fi
	rm -f "$pid_file"
	if [ -e "$dir/hang-stop-$role" ]; then
		exec sleep 3600
	fi
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
`

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// svcDir is the node's stand-in dir: hook script, pid files, flag files.
func (c *Cluster) svcDir(node string) string { return filepath.Join(c.dir, "svc", node) }

// ServiceLogPath is the stand-in services' shared log.
func (c *Cluster) ServiceLogPath() string { return filepath.Join(c.dir, "services.log") }

// writeStandIns writes every node's hook script and returns the services:
// section of its config.
func (c *Cluster) writeStandIns(node string) (string, error) {
	if len(c.opts.StandIns) == 0 {
		return "", nil
	}
	dir := c.svcDir(node)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	script := filepath.Join(dir, "hooks.sh")
	body := fmt.Sprintf(standInScript, shellQuote(dir), shellQuote(c.opts.LabBin), shellQuote(c.ServiceLogPath()))
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	var b strings.Builder
	b.WriteString("services:\n")
	for _, role := range c.opts.StandIns {
		fmt.Fprintf(&b, "  %s:\n    start: [/bin/sh, %q, start]\n    stop: [/bin/sh, %q, stop]\n", role, script, script)
	}
	return b.String(), nil
}

// SetStopHang makes the node's stop hook of role hang after stopping the
// stand-in (on), or not (off), with a flag file the hook reads.
func (c *Cluster) SetStopHang(node, role string, on bool) error {
	if !slices.Contains(c.opts.StandIns, role) {
		return fmt.Errorf("cluster: %s is not a stand-in service", role)
	}
	flag := filepath.Join(c.svcDir(node), "hang-stop-"+role)
	if on {
		return os.WriteFile(flag, nil, 0o644)
	}
	if err := os.Remove(flag); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
