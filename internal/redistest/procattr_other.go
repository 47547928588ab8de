//go:build !linux

package redistest

import "os/exec"

// setProcAttr does nothing outside Linux (no parent-death signal there);
// t.Cleanup still stops the server.
func setProcAttr(cmd *exec.Cmd) {}
