//go:build linux

package procs

import "syscall"

// childAttrs makes the kernel kill a child if this process dies first, so an interrupted run
// never leaves a dev agent or a Nexus behind.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
