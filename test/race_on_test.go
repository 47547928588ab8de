//go:build race

package test

// raceEnabled: the test binary runs under the race detector, so the sidecar
// binary is built with -race too (see TestMain).
const raceEnabled = true
