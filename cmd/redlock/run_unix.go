//go:build unix && !linux

package main

import (
	"os"
	"syscall"
)

// runSupported: run works here.
func runSupported() error { return nil }

// commandAttr puts the command in its own process group when ownGroup (so
// that a signal reaches its children too). There is no parent-death signal
// outside Linux: if redlock itself is killed with SIGKILL, the command keeps
// running without the lock being extended.
func commandAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: ownGroup}
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
