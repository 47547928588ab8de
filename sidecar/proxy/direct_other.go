//go:build !linux

package proxy

import "syscall"

// directSupported is false where directPeek has not been written: every
// request goes through http.Transport.
const directSupported = false

func directPeek(syscall.RawConn) bool { return false }
