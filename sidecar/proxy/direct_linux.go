package proxy

import "syscall"

const directSupported = true

// directPeek reports whether an idle connection's socket is quiet: no
// unread bytes and no end of stream (the upstream closed it). One
// non-blocking recv with MSG_PEEK; it consumes nothing.
func directPeek(rc syscall.RawConn) bool {
	var b [1]byte
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for the socket to become readable
	})
	return err == nil && n <= 0 && (rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK)
}
