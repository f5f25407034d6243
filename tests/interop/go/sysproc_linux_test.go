//go:build linux

package interop

import "syscall"

// childAttrs makes the kernel kill a child if this test binary dies first, so an aborted
// run never leaves a dev agent or a Nexus behind.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
