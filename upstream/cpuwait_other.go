//go:build !linux

package upstream

// osRunDelay reports nothing where the kernel's run-queue delays are not
// read.
func osRunDelay() (cpu, delay, slices uint64, ok bool) { return 0, 0, 0, false }
