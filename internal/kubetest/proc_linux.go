package kubetest

import "syscall"

// sysProcAttr makes the kernel kill kube-apiserver when the test process
// dies without running its cleanups (a panic, a -timeout), so that no
// server outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
