//go:build unix && !linux

package redisproc

import "syscall"

// sysProcAttr puts the server in its own process group. There is no
// parent-death signal outside Linux: a server whose test process is killed
// with SIGKILL keeps running until it is stopped by hand.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
