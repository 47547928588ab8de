package testkit

import (
	"testing"
	"time"
)

// AwaitPoll is how often Await checks its condition.
const AwaitPoll = 10 * time.Millisecond

// Await polls cond until it holds and returns how long that took; when
// timeout passes first it fails the test, naming what it waited for.
func Await(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(AwaitPoll)
	}
	return time.Since(start)
}
