package server

import (
	"io"
	"sync"
)

// groupWriter is the log's writer by default (log_flush_interval unset):
// group commit, as a database writes its log. A line is written at once by
// the goroutine that logs it, as with a bare *os.File — unless another
// goroutine is in the middle of a write: then the line is appended to a
// pending batch, and that goroutine writes the batch, in one Write, as soon
// as its own Write returns. No line waits for a timer; under concurrent
// load (a proxy's audit line per request) one write system call carries
// the lines of the requests that finished during the previous one (issue
// #17), and with one request at a time nothing changes. Lines stay whole
// and in order.
//
// What a crash can lose is the same as before: lines whose requests are
// still being handled. A line is pending only while the goroutine that will
// write it is inside a Write, so its request's handler has not returned;
// Server.Serve returns only after every handler has, and then Close waits
// for the last write. A writer that keeps finding new lines writes at most
// groupRounds batches before a background goroutine takes over, so one
// request's handler is never held for the others' lines for long. The
// pending batch is bounded (groupMax): past it, loggers wait for the write
// in progress, as they would for a slow stderr.
type groupWriter struct {
	w io.Writer

	mu      sync.Mutex
	cond    *sync.Cond // broadcast when the pending batch is taken, and when writing ends
	pending []byte
	spare   []byte
	writing bool  // a goroutine is writing; it will write pending too
	waiting int   // loggers waiting for room in the batch
	err     error // the last write error, returned to the next writer
}

const (
	groupMax    = 256 << 10
	groupRounds = 4
)

func newGroupWriter(w io.Writer) *groupWriter {
	g := &groupWriter{w: w, pending: make([]byte, 0, 16<<10), spare: make([]byte, 0, 16<<10)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Write writes p (one log line), or hands it to the write in progress.
func (g *groupWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	for g.writing && len(g.pending) >= groupMax {
		g.waiting++
		g.cond.Wait()
		g.waiting--
	}
	g.pending = append(g.pending, p...)
	if g.writing {
		g.mu.Unlock()
		return len(p), nil
	}
	g.writing = true
	for round := 0; len(g.pending) > 0; round++ {
		if round == groupRounds {
			go g.drain() // writing stays true: the drainer ends it
			g.mu.Unlock()
			return len(p), nil
		}
		g.writeBatchLocked()
	}
	g.writing = false
	err := g.err
	g.err = nil
	g.cond.Broadcast()
	g.mu.Unlock()
	return len(p), err
}

// writeBatchLocked writes the pending batch with g.mu released.
func (g *groupWriter) writeBatchLocked() {
	buf := g.pending
	g.pending = g.spare[:0]
	g.cond.Broadcast() // room again for loggers waiting on groupMax
	g.mu.Unlock()
	_, err := g.w.Write(buf)
	g.mu.Lock()
	if err != nil {
		g.err = err
	}
	if cap(buf) <= 4*groupMax {
		g.spare = buf[:0]
	}
}

// drain writes batches until none is pending, then ends the writing.
func (g *groupWriter) drain() {
	g.mu.Lock()
	for len(g.pending) > 0 {
		g.writeBatchLocked()
	}
	g.writing = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// Close waits until every line handed to Write has been written. The
// writer stays usable: lines logged afterwards are written as before.
func (g *groupWriter) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.writing {
		g.cond.Wait()
	}
	err := g.err
	g.err = nil
	return err
}
