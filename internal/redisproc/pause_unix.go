//go:build unix

package redisproc

import (
	"os"
	"syscall"
)

// Pause stops the process with SIGSTOP: connections stay open, nothing answers.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT, false) }

// continueProcess resumes a paused process, so that a signal sent to it
// while stopped takes effect.
func continueProcess(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
