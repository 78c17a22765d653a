//go:build !race

package gateway

// raceEnabled reports whether the race detector is on: it multiplies a
// process's memory, so memory bounds are not checked under it.
const raceEnabled = false
