//go:build !unix

package sink

// processRuns cannot tell elsewhere; temporary files then go by age.
func processRuns(pid int) bool { return true }
