// Package redistest starts a throw-away redis-server for tests.
//
// Start launches a private redis-server on a free 127.0.0.1 port, with no
// persistence and its own temporary directory, waits until it answers and
// stops it when the test ends. It never uses a Redis started by someone else:
// after startup it checks that the server answering on the port is the process
// it started.
//
// When redis-server is not on PATH the test is skipped, except when the
// environment variable CI is "true": then it fails, so CI cannot silently skip
// the Redis tests.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Binary is the program Start looks up on PATH.
const Binary = "redis-server"

const (
	startTimeout = 10 * time.Second // a healthy redis-server is up in ~10-50ms
	pollEvery    = 5 * time.Millisecond
	startTries   = 5 // port races: pick a new port this many times
)

// Option configures Start.
type Option func(*config)

type config struct {
	password string
	args     []string
	// sentinel, when set, returns the arguments that start a sentinel
	// instead of a server (see StartSentinel).
	sentinel func(dir string, port int) ([]string, error)
}

// WithPassword starts the server with requirepass pw; URL and Client use it.
func WithPassword(pw string) Option {
	return func(c *config) { c.password = pw }
}

// WithArgs appends raw redis-server arguments, e.g. WithArgs("--maxmemory", "1mb").
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is a redis-server process owned by one test.
type Server struct {
	t    testing.TB
	cfg  config
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	proc   *process // nil while stopped
	client *redis.Client
	starts int
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	log    string        // path of the stdout/stderr log
}

// Start starts a redis-server for t and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found; CI must install it (apt-get install -y redis-server)")
		}
		t.Skipf("redis-server not found on PATH, skipping Redis tests; install it to run them "+
			"(Debian/Ubuntu: apt-get install -y redis-server, macOS: brew install redis): %v", err)
	}
	s := &Server{t: t, cfg: cfg, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.shutdown)

	var lastErr error
	for range startTries {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		s.port = port
		err = s.start()
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

// freePort asks the kernel for a free loopback port. Another process may take
// it before redis-server binds it; start detects that and Start retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var errPortTaken = errors.New("port already in use")

// start launches redis-server on s.port and waits until it answers. s.mu must
// not be held. On failure the process is killed.
func (s *Server) start() error {
	s.mu.Lock()
	s.starts++
	n := s.starts
	s.mu.Unlock()

	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", n))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	}
	if s.cfg.password != "" {
		args = append(args, "--requirepass", s.cfg.password)
	}
	args = append(args, s.cfg.args...)
	if s.cfg.sentinel != nil {
		if args, err = s.cfg.sentinel(s.dir, s.port); err != nil {
			return err
		}
		args = append(args, "--daemonize", "no", "--logfile", "")
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(p.exited) }()

	if err := s.awaitReady(p); err != nil {
		p.kill()
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// awaitReady polls until p answers PING on s.port, then checks that the
// server answering is p (not someone else's Redis that holds the port).
func (s *Server) awaitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	addr := s.Addr()
	for {
		select {
		case <-p.exited:
			log := readTail(p.log)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%w: %s", errPortTaken, addr)
			}
			return fmt.Errorf("redis-server exited during startup (%s); log:\n%s", p.cmd.ProcessState, log)
		default:
		}
		if pingRaw(addr) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING on %s within %s; log:\n%s", addr, startTimeout, readTail(p.log))
		}
		time.Sleep(pollEvery)
	}

	// Identify the server: INFO server reports its process_id.
	c := s.newClient()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis-server on %s: INFO server: %v", addr, err)
	}
	pid := infoField(info, "process_id")
	if pid != strconv.Itoa(p.cmd.Process.Pid) {
		// Someone else's server holds the port; ours will fail to bind and exit.
		return fmt.Errorf("%w: %s answers as process %s, not our redis-server %d", errPortTaken, addr, pid, p.cmd.Process.Pid)
	}
	return nil
}

// pingRaw reports whether something on addr answers a RESP PING (+PONG, or
// -NOAUTH when a password is required).
func pingRaw(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return false
	}
	return strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 4096
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimSpace(b))
}

// kill stops the process with SIGKILL and waits for it to exit.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Addr returns host:port of the server.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Password returns the password set with WithPassword, or "".
func (s *Server) Password() string { return s.cfg.password }

// URL returns redis://[:password@]127.0.0.1:port/0.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.cfg.password != "" {
		u.User = url.UserPassword("", s.cfg.password)
	}
	return u.String()
}

// Client returns a go-redis client for assertions (PTTL, SCAN, ...), connected
// to this server and closed at cleanup. It survives Stop/Restart.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = s.newClient()
	}
	return s.client
}

func (s *Server) newClient() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            s.Addr(),
		Password:        s.cfg.password,
		DialTimeout:     2 * time.Second,
		ReadTimeout:     2 * time.Second,
		WriteTimeout:    2 * time.Second,
		DialerRetries:   2,
		PoolSize:        4,
		DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
}

// Running reports whether the server process is up (not Stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Stop kills the server (SIGKILL, no shutdown handshake), for fault tests.
// Data is lost. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Restart starts the server again on the same port (empty, since nothing is
// persisted), for recovery tests. A running server is stopped first.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr(), err)
	}
}

// Pause suspends the server process (SIGSTOP): connections stay open but
// nothing is answered, like a hung server. Resume undoes it; cleanup resumes
// a paused server before killing it.
func (s *Server) Pause() {
	s.t.Helper()
	s.signal(sigStop)
}

// Resume continues a Paused server (SIGCONT).
func (s *Server) Resume() {
	s.t.Helper()
	s.signal(sigCont)
}

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	if sig == nil {
		s.t.Fatalf("redistest: Pause/Resume need a Unix system")
	}
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		s.t.Fatalf("redistest: %v: server on %s is stopped", sig, s.Addr())
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// shutdown runs at test cleanup.
func (s *Server) shutdown() {
	s.mu.Lock()
	c := s.client
	s.client = nil
	s.mu.Unlock()
	s.Stop() // SIGKILL also ends a SIGSTOPped process
	if c != nil {
		_ = c.Close()
	}
}
