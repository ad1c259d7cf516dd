package lab

import "syscall"

// qemuSysProcAttr puts a VM in its own process group, so a Ctrl-C meant
// for the lab reaches the lab (which then stops the VM), and has the kernel
// kill it if the lab dies without cleaning up.
func qemuSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
