package redisproc

import "syscall"

// sysProcAttr puts the server in its own process group and has the kernel
// kill it when the process that started it dies (a test killed by -timeout
// leaves no server behind).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
