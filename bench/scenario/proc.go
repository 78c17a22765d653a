package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lariat-gw/lariat/internal/cli"
)

const (
	// startTimeout bounds how long a child process may take to be ready.
	startTimeout = 15 * time.Second
	// stopTimeout is how long a child gets after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts bounds the retries of a child whose port was taken
	// between picking it and binding it.
	startAttempts = 3
	// logTail is how much of a child's output goes into error messages.
	logTail = 2048
)

// proc is a child process: a part of the scenario (redis-server, a fake
// model, the gateway, the floor) running on 127.0.0.1.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	err     error // the exit status, once done is closed
}

// startProc starts bin with args; its output goes to dir/name.log.
func startProc(name, dir, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot create log of %s: %w", name, err)
	}
	fmt.Fprintf(f, "$ %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = withoutFlagEnv(os.Environ())
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// withoutFlagEnv returns env without the LARIAT_* variables, which would set
// flags of the gateway and the floor: a scenario's processes run with the
// flags it gives them only.
func withoutFlagEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, cli.EnvPrefix) })
}

// exited tells whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits a while, then kills the process.
func (p *proc) stop() {
	if p == nil {
		return
	}
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.logFile.Close()
}

// tail returns the end of the process's output, for error messages.
func (p *proc) tail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	if len(data) > logTail {
		data = data[len(data)-logTail:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return strings.TrimSpace(string(data))
}

// failure wraps err with the process's output.
func (p *proc) failure(err error) error {
	return fmt.Errorf("%s: %w; its output:\n%s", p.name, err, p.tail())
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cannot find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("cannot find a free port: %w", err)
	}
	return addr, nil
}

// startServer starts a child that listens on the addresses it is given,
// picking free ports and retrying when one was taken meanwhile. args builds
// the command line from the addresses; ready reports, when polled, whether
// the child serves.
func startServer(ctx context.Context, name, dir, bin string, nAddrs int, args func(addrs []string) []string,
	ready func(ctx context.Context, addrs []string) error) (*proc, []string, error) {
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		addrs := make([]string, nAddrs)
		for i := range addrs {
			a, err := freeAddr()
			if err != nil {
				return nil, nil, err
			}
			addrs[i] = a
		}
		p, err := startProc(name, dir, bin, args(addrs)...)
		if err != nil {
			return nil, nil, err
		}
		if lastErr = waitReady(ctx, p, func(ctx context.Context) error { return ready(ctx, addrs) }); lastErr == nil {
			return p, addrs, nil
		}
		p.stop()
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, lastErr
}

// waitReady polls ready until it succeeds, the process exits, ctx ends or
// startTimeout passes.
func waitReady(ctx context.Context, p *proc, ready func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if p.exited() {
			return p.failure(fmt.Errorf("exited during startup (%v)", p.err))
		}
		if lastErr = ready(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.failure(fmt.Errorf("not ready within %s: %w", startTimeout, lastErr))
		case <-tick.C:
		}
	}
}

// setupClient makes the few HTTP calls of the setup (readiness, parity
// checks, profiles); the load itself goes through package bench.
var setupClient = &http.Client{Timeout: 5 * time.Second}

// httpGet fetches url and fails unless the status is 200.
func httpGet(ctx context.Context, url string) ([]byte, error) {
	return httpDo(ctx, http.MethodGet, url, nil, http.StatusOK)
}

// httpDo sends one request and fails unless the status is want.
func httpDo(ctx context.Context, method, url string, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := setupClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode != want {
		return data, fmt.Errorf("%s %s: status %d, want %d: %.300s", method, url, resp.StatusCode, want, data)
	}
	return data, nil
}

// redisPing checks that a redis-server answers PING at addr.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) {
		return fmt.Errorf("unexpected PING answer %q", buf[:n])
	}
	return nil
}

// portOf returns the port of a host:port address.
func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

var errNotBuilt = errors.New("cannot find the module root to build the gateway; run from the repository or pass the gateway binary")
