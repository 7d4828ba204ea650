//go:build !unix

package redisproc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// sysProcAttr: no process groups or parent-death signal here.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// Pause is not supported here: it needs SIGSTOP (Linux, macOS and the other
// Unix systems). Use the container fleet of redlocktest, whose Pause works
// everywhere Docker does.
func (s *Server) Pause() error { return s.unsupported("Pause") }

// Resume is not supported here: it needs SIGCONT (see Pause).
func (s *Server) Resume() error { return s.unsupported("Resume") }

func (s *Server) unsupported(op string) error {
	return fmt.Errorf("redisproc: %s %s: %w: it needs SIGSTOP/SIGCONT, which %s does not have (the container fleet can pause masters everywhere)",
		op, s.Addr(), errors.ErrUnsupported, runtime.GOOS)
}

// continueProcess: a process is never paused here.
func continueProcess(*os.Process) {}
