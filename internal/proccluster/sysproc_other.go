//go:build !linux

package proccluster

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts each agent in its own process group, so that a
// terminal's Ctrl-C reaches the caller only.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
