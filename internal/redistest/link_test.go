package redistest

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestLinkProxy: data flows through; while stalled it is held (not lost)
// and Resume delivers it; if the target dies during a stall, what was held
// is dropped and the client's connection ends.
func TestLinkProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	targets := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			targets <- c
		}
	}()
	p := StartLinkProxy(t, ln.Addr().String())
	dial := func() (net.Conn, net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(p.Port())))
		if err != nil {
			t.Fatal(err)
		}
		return c, <-targets, bufio.NewReader(c)
	}
	readLine := func(c net.Conn, r *bufio.Reader, within time.Duration) (string, error) {
		_ = c.SetReadDeadline(time.Now().Add(within))
		return r.ReadString('\n')
	}

	c, s, r := dial()
	defer c.Close()
	if _, err := c.Write([]byte("up\n")); err != nil { // client → target is never held
		t.Fatal(err)
	}
	if l, err := bufio.NewReader(s).ReadString('\n'); err != nil || l != "up\n" {
		t.Fatalf("upstream got %q, %v", l, err)
	}
	_, _ = s.Write([]byte("one\n"))
	if l, err := readLine(c, r, 5*time.Second); err != nil || l != "one\n" {
		t.Fatalf("got %q, %v", l, err)
	}
	p.Stall()
	_, _ = s.Write([]byte("two\n"))
	if l, err := readLine(c, r, 200*time.Millisecond); err == nil {
		t.Fatalf("a stalled link delivered %q", l)
	}
	p.Resume()
	if l, err := readLine(c, r, 5*time.Second); err != nil || l != "two\n" {
		t.Fatalf("after Resume got %q, %v", l, err)
	}

	c2, s2, r2 := dial()
	defer c2.Close()
	p.Stall()
	_, _ = s2.Write([]byte("lost\n"))
	time.Sleep(50 * time.Millisecond) // let the proxy read it (nothing to await: it must not show)
	_ = s2.Close()                    // the target dies during the stall
	l, err := readLine(c2, r2, 5*time.Second)
	if err != io.EOF || l != "" {
		t.Fatalf("after the target died during a stall: %q, %v (want EOF and nothing)", l, err)
	}
	p.Resume()
}

func itoa(n int) string { return strconv.Itoa(n) }
