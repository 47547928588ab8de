//go:build !linux

package test

import "os/exec"

// setProcAttr does nothing outside Linux (no parent-death signal there);
// t.Cleanup still stops the subprocess.
func setProcAttr(*exec.Cmd) {}
