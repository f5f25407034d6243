//go:build !linux

package sdkload

import "syscall"

func childAttrs() *syscall.SysProcAttr { return nil }
