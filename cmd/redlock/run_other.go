//go:build !unix

package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// runSupported: run needs POSIX signals and process groups (to forward
// SIGTERM to the command when the lock is lost, then SIGKILL after -grace).
func runSupported() error {
	return fmt.Errorf("%w on %s: it needs POSIX signals and process groups to stop the command when the lock is lost (bench and status work here)",
		errors.ErrUnsupported, runtime.GOOS)
}

// commandAttr: never reached (runSupported refuses first).
func commandAttr(bool) *syscall.SysProcAttr { return nil }

// signalCommand: never reached (runSupported refuses first).
func signalCommand(p *os.Process, _ bool, _ syscall.Signal) { _ = p.Kill() }
