//go:build !linux

package procs

import "syscall"

// childAttrs sets nothing: only Linux has a parent-death signal.
func childAttrs() *syscall.SysProcAttr { return nil }
