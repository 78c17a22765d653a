package predlog

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill the sink process when this one
// dies, so that a gateway killed with -9 leaves its files as it would
// without a sink process.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
