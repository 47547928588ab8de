package server

import (
	"io"
	"sync"
	"time"
)

// MaxLogFlushInterval bounds log_flush_interval: the log lines a crash can
// lose are those of at most this long.
const MaxLogFlushInterval = time.Second

// logBuffer is the log's writer when log_flush_interval is set: each line
// (one Write from the slog handler) is appended to a buffer under a lock,
// and the buffer is written out every interval by a background goroutine,
// at once when it holds logBufferMax bytes (on the logging goroutine, so
// a flood slows down instead of growing the buffer), and by Close. Lines
// stay whole and in order. What it trades: one write per interval instead
// of one per line (per proxied request), against losing the lines of the
// last interval if the process dies without running Close (SIGKILL, OOM).
type logBuffer struct {
	w io.Writer

	mu     sync.Mutex
	buf    []byte
	err    error // the last write error, reported by the next Write
	closed bool  // after Close every line is written at once

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

const logBufferMax = 64 << 10

func newLogBuffer(w io.Writer, interval time.Duration) *logBuffer {
	b := &logBuffer{w: w, buf: make([]byte, 0, logBufferMax+4096), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run(interval)
	return b
}

func (b *logBuffer) run(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.Flush()
			return
		case <-t.C:
			b.Flush()
		}
	}
}

// Write appends one log line.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= logBufferMax || b.closed {
		b.flushLocked()
	}
	err := b.err
	b.err = nil
	return len(p), err
}

// Flush writes out what is buffered.
func (b *logBuffer) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *logBuffer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// Close stops the flusher and writes out every buffered line. Lines
// logged after Close are written at once.
func (b *logBuffer) Close() error {
	b.once.Do(func() {
		close(b.stop)
		<-b.done
		b.mu.Lock()
		b.closed = true
		b.flushLocked()
		b.mu.Unlock()
	})
	return nil
}
