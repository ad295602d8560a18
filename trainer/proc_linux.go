//go:build linux

package trainer

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the trainer in its own process group (so that a kill
// reaches the helpers it forks, e.g. data-loader workers) and asks the
// kernel to kill it if the worker dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killTree sends SIGKILL to the trainer's process group.
func killTree(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
