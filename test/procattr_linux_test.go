package test

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill a subprocess if the test binary dies
// without running its cleanups (e.g. on a test timeout panic).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
