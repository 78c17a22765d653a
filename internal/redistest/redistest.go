// Package redistest starts real redis-server processes (and sentinels) on
// 127.0.0.1 for tests.
//
// Every server runs in its own temporary directory with persistence off
// (--save "" and --appendonly no) and is stopped by tb.Cleanup.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long Start and Restart wait for the server to answer PING.
const startTimeout = 10 * time.Second

// Server is a redis-server child process listening on a loopback port.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	args []string
	// sentinelOf is "name host port" when the server runs as a sentinel.
	sentinelOf string

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a redis-server on a free 127.0.0.1 port and waits until it answers PING.
//
// extraArgs are appended to the command line, e.g. "--requirepass", "secret".
// The server is stopped when the test ends. Start fails the test when
// redis-server is not on PATH.
func Start(tb testing.TB, extraArgs ...string) *Server {
	tb.Helper()
	s := &Server{
		tb:   tb,
		bin:  lookPath(tb),
		dir:  tb.TempDir(),
		args: extraArgs,
	}
	return s.startFresh()
}

// StartSentinel starts a Redis Sentinel monitoring master (a Server started
// with Start) under the master set name masterName, quorum 1.
func StartSentinel(tb testing.TB, masterName string, master *Server) *Server {
	tb.Helper()
	host, port, err := net.SplitHostPort(master.Addr())
	if err != nil {
		tb.Fatalf("redistest: bad master address: %v", err)
	}
	s := &Server{
		tb:         tb,
		bin:        lookPath(tb),
		dir:        tb.TempDir(),
		sentinelOf: masterName + " " + host + " " + port,
	}
	return s.startFresh()
}

func lookPath(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redistest: redis-server is not on PATH (%v); the project's test command (.ci/run) installs it, "+
			"or run `apt-get install -y redis-server`", err)
	}
	return bin
}

func (s *Server) startFresh() *Server {
	tb := s.tb
	tb.Helper()
	tb.Cleanup(s.Stop)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("redistest: cannot pick a free port: %v", err)
		}
		if lastErr = s.start(port); lastErr == nil {
			return s
		}
	}
	tb.Fatalf("redistest: cannot start redis-server: %v", lastErr)
	return nil
}

// Addr returns the server's "127.0.0.1:port" address.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the server and waits for it to exit. Stopping a stopped server does nothing.
// Data is lost: persistence is off.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Pause stops the server's process (SIGSTOP) without closing its
// connections: clients' commands hang, as they do on a server blocked by
// a slow command or a paused machine, until Resume. Stop and the end of
// the test stop a paused server too.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a server stopped by Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.tb.Fatalf("redistest: no redis-server running to signal %s", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("redistest: signal %s: %v", sig, err)
	}
}

// Restart stops the server if it runs and starts a new one on the same port,
// so clients holding the address can reconnect. The new server starts empty.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	s.stopLocked()
	port := s.port
	s.mu.Unlock()
	var err error
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		// The old socket may linger for a moment; retry a bounded number of times.
		if err = s.start(port); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.tb.Fatalf("redistest: cannot restart redis-server on port %d: %v", port, err)
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *Server) start(port int) error {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
	}
	if s.sentinelOf != "" {
		// Sentinel rewrites its config file, so it needs one of its own.
		conf := filepath.Join(s.dir, "sentinel.conf")
		data := "sentinel monitor " + s.sentinelOf + " 1\n"
		if err := os.WriteFile(conf, []byte(data), 0o600); err != nil {
			return fmt.Errorf("cannot write %s: %w", conf, err)
		}
		args = []string{conf, "--sentinel",
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--dir", s.dir,
			"--daemonize", "no",
			"--logfile", "",
		}
	}
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	log := &syncBuffer{}
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot run %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitPing(addr, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%w; server output:\n%s", err, log.String())
	}
	s.mu.Lock()
	s.port = port
	s.cmd = cmd
	s.done = done
	s.mu.Unlock()
	return nil
}

// waitPing polls addr until the server answers PING (or reports that auth is
// required, which also proves it is up), the process exits, or startTimeout passes.
func waitPing(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited during startup")
		default:
		}
		if lastErr = ping(addr); lastErr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server at %s did not answer PING within %s: %w", addr, startTimeout, lastErr)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line == "+PONG\r\n" || bytes.HasPrefix([]byte(line), []byte("-NOAUTH")) {
		return nil
	}
	return fmt.Errorf("unexpected PING reply %q", line)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// syncBuffer collects the server's output for error messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
