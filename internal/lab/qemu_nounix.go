//go:build !unix

package lab

import "syscall"

// qemuSysProcAttr has nothing to add where there are no process groups.
func qemuSysProcAttr() *syscall.SysProcAttr { return nil }
