package proccluster

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// sysProcAttr puts each agent in its own process group (a terminal's Ctrl-C
// reaches the caller only, which then decides how to stop the agents) and
// has the kernel kill the agent if the process that started it dies, so a
// crashed test or benchmark leaves no agent behind on the fixed ports.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// The parent-death signal fires when the thread that forked the child
// exits, not the process. The Go runtime ends a thread when a goroutine
// locked to it returns, so every agent is started from one goroutine that
// locks its thread and never returns.
var (
	starterOnce sync.Once
	starterCh   chan startReq
)

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startCmd(cmd *exec.Cmd) error {
	starterOnce.Do(func() {
		starterCh = make(chan startReq)
		go func() {
			runtime.LockOSThread()
			for r := range starterCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	starterCh <- startReq{cmd, done}
	return <-done
}
