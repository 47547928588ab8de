package redistest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// LinkProxy is a TCP proxy on loopback in front of a server, for a
// replication link that can stall: Stall holds everything the server sends
// (its replication stream) instead of forwarding it, Resume forwards what
// was held. When the server's side closes (the server was killed) while
// the link is stalled, what was held is dropped — the writes were in
// flight and are lost, as with a network partition or a replica lagging
// behind a primary that dies.
type LinkProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool
	conns   []net.Conn
	closed  bool
}

// StartLinkProxy listens on a free loopback port and forwards every
// connection to target. It is closed at cleanup.
func StartLinkProxy(t testing.TB, target string) *LinkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: link proxy: %v", err)
	}
	p := &LinkProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Port returns the proxy's port (give it to --replicaof).
func (p *LinkProxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Stall stops forwarding the target's data (it is held, not dropped).
func (p *LinkProxy) Stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

// Resume forwards what was held and everything after it.
func (p *LinkProxy) Resume() {
	p.mu.Lock()
	p.stalled = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *LinkProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.stalled = false
	conns := p.conns
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *LinkProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
		go p.downstream(s, c)
	}
}

// downstream forwards target → client, holding data while stalled and
// dropping what is held if the target goes away during the stall.
func (p *LinkProxy) downstream(s, c net.Conn) {
	defer c.Close()
	chunks := make(chan []byte, 1<<16)
	go func() {
		defer close(chunks)
		for {
			b := make([]byte, 32<<10)
			n, err := s.Read(b)
			if n > 0 {
				chunks <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	for b := range chunks {
		p.mu.Lock()
		for p.stalled {
			p.mu.Unlock()
			// While stalled, wait for Resume or for the target to close.
			select {
			case nb, ok := <-chunks:
				if !ok {
					return // the target died during the stall: drop what was held
				}
				b = append(b, nb...)
			case <-p.resumed():
			}
			p.mu.Lock()
		}
		p.mu.Unlock()
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

// resumed returns a channel closed once the link is not stalled.
func (p *LinkProxy) resumed() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		p.mu.Lock()
		for p.stalled {
			p.cond.Wait()
		}
		p.mu.Unlock()
		close(ch)
	}()
	return ch
}
