package server

import (
	"io"
	"sync"
)

// logWriter batches log lines (the audit lines of proxied requests above
// all) into the writes of one goroutine, so that a request does not wait
// for a write system call, and so that under load many lines share one
// write instead of queueing on the log handler's lock, each with its own
// (issue #17: the audit line's write cost the proxy a fifth of its
// throughput). Lines are never split: every write holds whole lines, in
// the order they were logged. Nothing is dropped: past maxPending bytes
// waiting, Write blocks until the writer has caught up, and Close writes
// everything logged before it returns (Serve calls it last).
type logWriter struct {
	w io.Writer

	mu      sync.Mutex
	changed sync.Cond // signals the writer (pending, closing) and waiters (drained)
	pending []byte    // logged, not yet written
	writing bool      // the writer holds a batch
	closing bool
	done    chan struct{}
	err     error // the first write error (later lines are still attempted)
}

// maxPending bounds the bytes waiting to be written before Write blocks.
const maxPending = 1 << 20

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w, done: make(chan struct{})}
	l.changed.L = &l.mu
	go l.run()
	return l
}

// Write queues p (one log line: slog writes each record with one call).
// After Close it writes p directly.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for len(l.pending) >= maxPending && !l.closing {
		l.changed.Wait()
	}
	if l.closing { // after the lines queued before Close
		l.mu.Unlock()
		<-l.done
		return l.w.Write(p)
	}
	wake := len(l.pending) == 0 && !l.writing
	l.pending = append(l.pending, p...)
	l.mu.Unlock()
	if wake {
		l.changed.Broadcast()
	}
	return len(p), nil
}

func (l *logWriter) run() {
	defer close(l.done)
	var batch []byte
	l.mu.Lock()
	for {
		for len(l.pending) == 0 && !l.closing {
			l.changed.Wait()
		}
		if len(l.pending) == 0 { // closing, and everything is written
			l.mu.Unlock()
			return
		}
		batch, l.pending = l.pending, batch[:0]
		l.writing = true
		l.mu.Unlock()
		_, err := l.w.Write(batch)
		l.mu.Lock()
		l.writing = false
		if err != nil && l.err == nil {
			l.err = err
		}
		if cap(batch) > maxPending { // do not keep a burst's buffer
			batch = nil
		}
		l.changed.Broadcast() // blocked writers, Flush
	}
}

// Flush returns once every line written before it has been written out.
func (l *logWriter) Flush() {
	l.mu.Lock()
	for len(l.pending) > 0 || l.writing {
		l.changed.Wait()
	}
	l.mu.Unlock()
}

// Close writes out what is pending, stops the writer goroutine, and makes
// later writes direct. It returns the first write error, if any.
func (l *logWriter) Close() error {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	l.changed.Broadcast()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
