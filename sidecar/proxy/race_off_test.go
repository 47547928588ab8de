//go:build !race

package proxy

// raceEnabled: the race detector is on; it changes allocation counts.
const raceEnabled = false
