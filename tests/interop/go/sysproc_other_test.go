//go:build !linux

package interop

import "syscall"

func childAttrs() *syscall.SysProcAttr { return nil }
