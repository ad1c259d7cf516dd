//go:build unix && !linux

package lab

import "syscall"

// qemuSysProcAttr puts a VM in its own process group, so a Ctrl-C meant
// for the lab reaches the lab, which then stops the VM.
func qemuSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
