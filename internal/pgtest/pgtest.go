// Package pgtest starts throwaway PostgreSQL servers for tests: initdb into a temp
// directory, postgres on a free 127.0.0.1 port, a fresh database per caller, and
// shutdown at test cleanup. It needs the PostgreSQL server binaries (Debian package
// "postgresql"); when running as root, the server runs as the "postgres" user.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDirEnv names the environment variable that overrides where initdb and postgres
// are looked for.
const BinDirEnv = "LARIAT_PG_BINDIR"

// startTimeout bounds how long Start waits for the server to accept connections.
const startTimeout = 60 * time.Second

// Server is a running PostgreSQL server owned by a test.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int

	dir, bin, data string
	cred           *syscall.Credential
	cmd            *exec.Cmd
	exited         chan struct{}
	dbSeq          atomic.Int64
}

// FindBinDir returns the directory holding initdb and postgres: $LARIAT_PG_BINDIR, or
// the newest /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	return findBinDir(os.Getenv(BinDirEnv), "/usr/lib/postgresql/*/bin/initdb")
}

func findBinDir(dir, pattern string) (string, error) {
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("$%s=%q has no initdb: %w", BinDirEnv, dir, err)
		}
		return dir, nil
	}
	matches, _ := filepath.Glob(pattern)
	if len(matches) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin; " +
			"the test command installs them with `apt-get install -y postgresql` (or set " + BinDirEnv + ")")
	}
	sort.Slice(matches, func(i, j int) bool { return majorVersion(matches[i]) > majorVersion(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

func majorVersion(initdbPath string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return n
}

// Start starts a PostgreSQL server for tb and stops it when tb ends. It fails tb with
// a clear message when the binaries are missing or the server does not start.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := start()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// DSN starts a server for tb and returns the DSN of a fresh database on it.
func DSN(tb testing.TB) string {
	tb.Helper()
	return Start(tb).NewDatabase(tb)
}

// serverCredential returns who the server runs as: nil (the current user) unless we
// are root, which initdb and postgres refuse.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a 'postgres' user to run the server as (created by `apt-get install -y postgresql`): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("bad uid %q of user postgres: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("bad gid %q of user postgres: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func start() (*Server, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lariat-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("cannot create temp dir: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("cannot hand %s to user postgres: %w", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.Env = serverEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb failed: %w\n%s", err, out)
	}

	// A free port can be taken by someone else between probing and binding: retry.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s, err := launch(bin, dir, data, port, cred)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cannot find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port, nil
}

func launch(bin, dir, data string, port int, cred *syscall.Credential) (*Server, error) {
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("cannot create server log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=60",
		"-c", "shared_buffers=16MB")
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Pdeathsig stops the server should the test binary die without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start postgres: %w", err)
	}
	s := &Server{Port: port, dir: dir, bin: bin, data: data, cred: cred, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.dsn("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return s, nil
		}
		cancel()
		select {
		case <-s.exited:
			return nil, fmt.Errorf("postgres exited during startup:\n%s", tail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("postgres did not accept connections within %s: %w\n%s", startTimeout, err, tail(logPath))
		}
	}
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(bytes.TrimSpace(data))
}

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDatabase creates a fresh database and returns its DSN.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test_%d", s.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: cannot connect to the server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: cannot create database %s: %v", name, err)
	}
	return s.dsn(name)
}

// Restart shuts the server down as a failover or an upgrade does (fast
// shutdown: the server ends every client connection) and starts it
// again on the same port and data, returning once it accepts
// connections. Clients' pooled connections are dead afterwards.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.kill()
	}
	n, err := launch(s.bin, s.dir, s.data, s.Port, s.cred)
	if err != nil {
		tb.Fatalf("pgtest: cannot restart the server: %v", err)
	}
	s.cmd, s.exited = n.cmd, n.exited
}

// Stop shuts the server down (fast shutdown, then kill) and removes its files.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			s.kill()
		}
	}
	_ = os.RemoveAll(s.dir)
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
	}
}
