//go:build !linux

package trainer

import "os/exec"

func setProcAttr(cmd *exec.Cmd) {}

// killTree kills the trainer process.
func killTree(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
