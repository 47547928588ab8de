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

// gateWriter records writes; while closed (gate != nil) each write waits
// for a value on the gate.
type gateWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
	gate    chan struct{}
	entered chan struct{} // a write has started (buffered)
	err     error
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.entered != nil {
		select {
		case g.entered <- struct{}{}:
		default:
		}
	}
	if g.gate != nil {
		<-g.gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes++
	g.buf.Write(p)
	return len(p), g.err
}

func (g *gateWriter) snapshot() (string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String(), g.writes
}

// One logger at a time: every line is its own write, at once.
func TestGroupWriterSequential(t *testing.T) {
	w := &gateWriter{}
	g := newGroupWriter(w)
	for i := range 5 {
		if _, err := fmt.Fprintf(g, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
		if _, n := w.snapshot(); n != i+1 {
			t.Fatalf("after line %d: %d writes, want %d (a lone line is written before Write returns)", i, n, i+1)
		}
	}
}

// Lines logged while a write is in progress are written together by the
// goroutine in the middle of it, before its Write returns, whole and in
// order; none is lost.
func TestGroupWriterGroupsConcurrentLines(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	g := newGroupWriter(w)
	first := make(chan error, 1)
	go func() { _, err := g.Write([]byte("first\n")); first <- err }()
	<-w.entered // the first line's write is in progress
	for i := range 10 {
		if _, err := fmt.Fprintf(g, "queued %d\n", i); err != nil { // returns at once: handed over
			t.Fatal(err)
		}
	}
	if _, n := w.snapshot(); n != 0 {
		t.Fatalf("%d writes completed while the first was held", n)
	}
	w.gate <- struct{}{} // the first write
	w.gate <- struct{}{} // the batch of ten
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	got, n := w.snapshot()
	want := "first\n"
	for i := range 10 {
		want += fmt.Sprintf("queued %d\n", i)
	}
	if got != want || n != 2 {
		t.Fatalf("%d writes of %q, want 2 of %q", n, got, want)
	}
}

// Under concurrent load with -race: every line arrives whole, each
// goroutine's lines in its order, in fewer writes than lines; Close waits
// for the last.
func TestGroupWriterConcurrent(t *testing.T) {
	w := &gateWriter{}
	g := newGroupWriter(w)
	const goroutines, lines = 8, 500
	var wg sync.WaitGroup
	for k := range goroutines {
		wg.Go(func() {
			for i := range lines {
				if _, err := fmt.Fprintf(g, "g%d %05d %s\n", k, i, strings.Repeat("x", i%97)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	got, writes := w.snapshot()
	next := make([]int, goroutines)
	all := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(all) != goroutines*lines {
		t.Fatalf("%d lines, want %d", len(all), goroutines*lines)
	}
	for _, l := range all {
		var k, i int
		var pad string
		if _, err := fmt.Sscanf(l, "g%d %d %s", &k, &i, &pad); err != nil && i%97 != 0 || k < 0 || k >= goroutines {
			t.Fatalf("a broken line: %q", l)
		}
		if i != next[k] || len(l) != len(fmt.Sprintf("g%d %05d ", k, i))+i%97 {
			t.Fatalf("goroutine %d: line %q, want its line %d whole", k, l, next[k])
		}
		next[k]++
	}
	t.Logf("%d lines in %d writes", goroutines*lines, writes)
}

// A writer that keeps finding new lines hands over to a background drain
// after groupRounds batches: its Write returns while other lines are still
// being written, and Close waits for them.
func TestGroupWriterHandsOver(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	g := newGroupWriter(w)
	done := make(chan struct{})
	go func() { _, _ = g.Write([]byte("writer\n")); close(done) }()
	for round := range groupRounds + 2 {
		<-w.entered // a write is in progress: queue a line for the next round
		if _, err := fmt.Fprintf(g, "round %d\n", round); err != nil {
			t.Fatal(err)
		}
		w.gate <- struct{}{}
	}
	<-done // returned after groupRounds batches, though lines were still coming
	close(w.gate)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := w.snapshot()
	want := "writer\n"
	for round := range groupRounds + 2 {
		want += fmt.Sprintf("round %d\n", round)
	}
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// The pending batch is bounded: past groupMax, loggers wait for the write
// in progress instead of growing it.
func TestGroupWriterBounded(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	g := newGroupWriter(w)
	go func() { _, _ = g.Write([]byte("first\n")) }()
	<-w.entered
	big := bytes.Repeat([]byte("y"), groupMax)
	if _, err := g.Write(big); err != nil { // fills the batch; returns (handed over)
		t.Fatal(err)
	}
	third := make(chan struct{})
	go func() { _, _ = g.Write([]byte("third\n")); close(third) }()
	testkit.Await(t, 10*time.Second, "the third line waiting for room", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.waiting == 1
	})
	select {
	case <-third:
		t.Fatal("a line was accepted past groupMax while the batch was full")
	default:
	}
	close(w.gate)
	<-third
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	got, n := w.snapshot()
	if want := "first\n" + string(big) + "third\n"; got != want || n != 3 {
		t.Fatalf("got %d bytes in %d writes, want %d in 3 (the third line after the full batch)", len(got), n, len(want))
	}
}

// A write error reaches the goroutine whose Write met it or the next one,
// and Close.
func TestGroupWriterError(t *testing.T) {
	w := &gateWriter{err: errors.New("disk full")}
	g := newGroupWriter(w)
	if _, err := g.Write([]byte("x\n")); err == nil || err.Error() != "disk full" {
		t.Fatalf("err = %v, want disk full", err)
	}
}
