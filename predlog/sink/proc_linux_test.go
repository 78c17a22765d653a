package sink

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestProcessRunsZombie checks that a process that exited but was not
// reaped does not count as running.
func TestProcessRunsZombie(t *testing.T) {
	if !processRuns(os.Getpid()) {
		t.Fatal("this process does not run")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start true: %v", err)
	}
	defer cmd.Wait()
	for i := 0; processRuns(cmd.Process.Pid); i++ {
		if i == 500 {
			t.Fatal("an exited, unreaped process still counts as running")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
