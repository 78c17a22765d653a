//go:build !linux

package predlog

import "os/exec"

// setParentDeathSignal does nothing here: the sink process stops when its
// input ends.
func setParentDeathSignal(*exec.Cmd) {}
