//go:build race

package router

// raceEnabled: the race detector allocates and disables sync.Pool at
// random, so allocation counts mean nothing under it.
const raceEnabled = true
