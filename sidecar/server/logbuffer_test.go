package server

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// recordingWriter keeps every Write as one chunk.
type recordingWriter struct {
	mu     sync.Mutex
	chunks [][]byte
	fail   error
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return 0, w.fail
	}
	w.chunks = append(w.chunks, bytes.Clone(p))
	return len(p), nil
}

func (w *recordingWriter) all() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(bytes.Join(w.chunks, nil)), len(w.chunks)
}

// TestLogBuffer: lines written from many goroutines come out whole and
// each goroutine's in order, in far fewer writes than lines; the interval
// writes them without Close; Close writes the rest, and later lines go out
// at once.
func TestLogBuffer(t *testing.T) {
	w := &recordingWriter{}
	b := newLogBuffer(w, 20*time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(b, "{\"g\":%d,\"i\":%d,\"pad\":%q}\n", g, i, strings.Repeat("x", 100))
			}
		})
	}
	wg.Wait()
	testkit.Await(t, 5*time.Second, "the interval writes every line", func() bool {
		out, _ := w.all()
		return strings.Count(out, "\n") == 4000
	})
	out, writes := w.all()
	if writes >= 4000/10 {
		t.Errorf("4000 lines took %d writes", writes)
	}
	next := map[int]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var g, i int
		if _, err := fmt.Sscanf(line, "{\"g\":%d,\"i\":%d,", &g, &i); err != nil || !strings.HasSuffix(line, `"}`) {
			t.Fatalf("torn line %q (%v)", line, err)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}

	fmt.Fprintln(b, "last before close")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _ := w.all(); !strings.HasSuffix(out, "last before close\n") {
		t.Fatalf("Close did not write the buffered line: %q", out[max(0, len(out)-40):])
	}
	fmt.Fprintln(b, "after close")
	if out, _ := w.all(); !strings.HasSuffix(out, "after close\n") {
		t.Fatal("a line logged after Close was not written at once")
	}
}

// TestLogBufferWriteError: a failed write is reported to the next logger
// call, never silently dropped as success forever.
func TestLogBufferWriteError(t *testing.T) {
	w := &recordingWriter{fail: errors.New("disk full")}
	b := newLogBuffer(w, time.Hour)
	defer b.Close()
	if _, err := b.Write(bytes.Repeat([]byte("x"), logBufferMax)); err == nil || err.Error() != "disk full" {
		t.Fatalf("Write over the buffer size with a failing writer: %v", err)
	}
}
