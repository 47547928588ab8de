package server

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// recorder keeps every Write call; gate, when set, blocks each call until
// it is closed.
type recorder struct {
	mu     sync.Mutex
	writes [][]byte
	gate   chan struct{}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recorder) all() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(bytes.Join(r.writes, nil)), len(r.writes)
}

// TestLogWriterKeepsEveryLineWholeAndInOrder: lines from concurrent
// writers all arrive, each goroutine's in its order, every write holding
// whole lines only; Close returns after the last one is written.
func TestLogWriterKeepsEveryLineWholeAndInOrder(t *testing.T) {
	rec := &recorder{}
	l := newLogWriter(rec)
	const goroutines, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range lines {
				if _, err := fmt.Fprintf(l, `{"g":%d,"i":%d,"pad":"%s"}`+"\n", g, i, strings.Repeat("x", i%300)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out, writes := rec.all()
	rec.mu.Lock()
	for _, w := range rec.writes {
		if len(w) == 0 || w[len(w)-1] != '\n' {
			t.Fatalf("a write that does not end a line: %q", truncateForTest(w))
		}
	}
	rec.mu.Unlock()
	next := make([]int, goroutines)
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(line, `{"g":%d,"i":%d,`, &g, &i); err != nil {
			t.Fatalf("line %q: %v", truncateForTest([]byte(line)), err)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
		n++
	}
	if n != goroutines*lines {
		t.Fatalf("%d lines written, want %d", n, goroutines*lines)
	}
	t.Logf("%d lines in %d writes", n, writes)
}

// TestLogWriterBlocksInsteadOfDropping: when the output stalls, Write
// blocks once maxPending bytes wait (nothing is dropped); Flush returns
// when all of it is written; after Close, writes go straight through.
func TestLogWriterBlocksInsteadOfDropping(t *testing.T) {
	rec := &recorder{gate: make(chan struct{})}
	l := newLogWriter(rec)
	line := []byte(strings.Repeat("y", 1023) + "\n")
	total := 0
	blocked := make(chan struct{})
	var wrote sync.WaitGroup
	wrote.Go(func() {
		defer close(blocked)
		for range 3 * maxPending / len(line) {
			_, _ = l.Write(line)
		}
	})
	total = 3 * maxPending / len(line) * len(line)
	// The writer goroutine holds one batch in the stalled Write; the rest
	// waits, up to maxPending: the writing goroutine must block.
	select {
	case <-blocked:
		t.Fatal("Write accepted three times maxPending with the output stalled: it must block")
	case <-time.After(200 * time.Millisecond):
	}
	close(rec.gate)
	wrote.Wait()
	l.Flush()
	if out, _ := rec.all(); len(out) != total {
		t.Fatalf("%d bytes written after Flush, want %d", len(out), total)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = l.Write([]byte("after close\n"))
	testkit.Await(t, time.Second, "the direct write", func() bool {
		out, _ := rec.all()
		return strings.HasSuffix(out, "after close\n")
	})
}

func truncateForTest(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}
