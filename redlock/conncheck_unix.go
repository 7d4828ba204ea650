//go:build unix

package redlock

import (
	"errors"
	"syscall"
)

// connAlive reports whether an idle connection is still usable, without
// sending anything: a non-blocking peek at the socket. A server that closed
// the connection (a restart, a timeout, CLIENT KILL) left an EOF or a reset
// there; an idle healthy connection has nothing to read. This is go-redis's
// own pool check, done here because the connections live in our pool.
func connAlive(sc syscall.Conn) bool {
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	rerr := raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK))
		return true // never wait for readiness
	})
	return rerr == nil && alive
}
