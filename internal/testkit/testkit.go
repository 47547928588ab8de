// Package testkit holds small helpers shared by the tests of several
// packages. It is imported only from _test.go files.
package testkit

import (
	"bytes"
	"sync"
)

// SyncBuffer is a goroutine-safe log sink: a server's handlers write to it
// while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
