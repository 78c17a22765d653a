//go:build !linux

package scenario

import (
	"errors"
	"syscall"
	"time"
)

// sysProcAttr has nothing to add outside Linux.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// processCPU is not available outside Linux.
func processCPU(int) (time.Duration, error) {
	return 0, errors.New("process CPU time is read from /proc, on Linux only")
}
