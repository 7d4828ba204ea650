package main

import (
	"os"
	"syscall"
)

// runSupported: run works here.
func runSupported() error { return nil }

// commandAttr puts the command in its own process group when ownGroup (so
// that a signal reaches its children too), and has the kernel send it
// SIGTERM if redlock dies, since the lock will no longer be extended.
func commandAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: ownGroup, Pdeathsig: syscall.SIGTERM}
}

// signalCommand sends s to the command's process group when it has its
// own, otherwise to the command alone.
func signalCommand(p *os.Process, ownGroup bool, s syscall.Signal) {
	if ownGroup {
		_ = syscall.Kill(-p.Pid, s)
		return
	}
	_ = p.Signal(s)
}
