package training

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LocalOptions configure the local backend. Zero values take the defaults.
type LocalOptions struct {
	// MaxConcurrent is how many jobs run at once; others wait in order. Default 2.
	MaxConcurrent int
	// Grace is how long a stopped job has between SIGTERM and SIGKILL. Default 10s.
	Grace time.Duration
	// PollInterval is how often a re-attached process is checked. Default 500ms.
	PollInterval time.Duration
	// Env is the environment jobs start from; nil means the sidecar's own (minus
	// LARIAT_* variables).
	Env []string
}

// Local runs jobs as child processes of the sidecar. Each job runs in its own
// process group under /bin/sh, which records the exit code in the state directory,
// so a restarted sidecar learns how a job ended while it was away. Output goes to
// <state-dir>/logs/<id>.log. Stopping a job sends SIGTERM to its whole process
// group and SIGKILL after the grace period. When the sidecar stops, jobs keep
// running; the next sidecar re-attaches to them.
type Local struct {
	opts  LocalOptions
	slots *slots
}

var _ Backend = (*Local)(nil)

// NewLocal returns a local backend.
func NewLocal(opts LocalOptions) *Local {
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 2
	}
	if opts.Grace <= 0 {
		opts.Grace = 10 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.Env == nil {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "LARIAT_") {
				opts.Env = append(opts.Env, kv)
			}
		}
	}
	return &Local{opts: opts, slots: newSlots(opts.MaxConcurrent)}
}

// Name implements Backend.
func (b *Local) Name() string { return "local" }

// Running returns the number of jobs holding a slot.
func (b *Local) Running() int { return b.slots.running() }

// Prepare implements Backend: it needs a command and resolves the outputs to
// absolute paths (relative ones are relative to the job's working directory).
func (b *Local) Prepare(j *Job, stateDir string) error {
	s := &j.Spec
	if len(s.Command) == 0 {
		return fmt.Errorf("command: the local backend runs a command; none given")
	}
	base := s.WorkDir
	if base == "" {
		base = "."
	}
	abs := func(p string) (string, error) {
		p = resolveOutputPath(p, j)
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		return filepath.Abs(p)
	}
	out := s.Outputs
	var err error
	if out.ArtifactDir == "" {
		out.ArtifactDir = filepath.Join(stateDir, "artifacts", j.ID)
	} else if out.ArtifactDir, err = abs(out.ArtifactDir); err != nil {
		return fmt.Errorf("outputs.artifact_dir: %w", err)
	}
	if out.MetricsFile == "" {
		out.MetricsFile = filepath.Join(out.ArtifactDir, "metrics.json")
	} else if out.MetricsFile, err = abs(out.MetricsFile); err != nil {
		return fmt.Errorf("outputs.metrics_file: %w", err)
	}
	if out.ArtifactURI == "" {
		out.ArtifactURI = "file://" + out.ArtifactDir
	} else {
		out.ArtifactURI = resolveOutputPath(out.ArtifactURI, j)
	}
	j.Outputs = out
	j.Handle.LogFile = filepath.Join(stateDir, "logs", j.ID+".log")
	j.Handle.ExitFile = filepath.Join(stateDir, "run", j.ID+".exit")
	return nil
}

// wrapperScript runs the job's command, then writes its exit code atomically to
// the file named by its first argument. Trapping TERM and INT (with a handler, so
// the command does not inherit an ignored signal) keeps the shell alive until the
// command has handled the signal, so the exit code is still recorded.
const wrapperScript = `f=$1; shift
trap : TERM INT
"$@"
code=$?
printf '%d\n' "$code" > "$f.tmp" && mv -f "$f.tmp" "$f"
exit "$code"`

// environ returns the job's environment: the base environment, the LARIAT_*
// variables, then the spec's variables in name order, each of which may reference
// earlier ones as $(NAME).
func (b *Local) environ(j *Job) ([]string, map[string]string) {
	vars := make(map[string]string, len(b.opts.Env)+16)
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range b.opts.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			set(k, v)
		}
	}
	for _, kv := range JobEnv(j) {
		set(kv[0], kv[1])
	}
	lookup := func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
	for _, k := range sortedKeys(j.Spec.Env) {
		set(k, expandVars(j.Spec.Env[k], lookup))
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, vars
}

// child is a started job process.
type child struct {
	pid        int
	startTicks uint64
	started    time.Time
	exited     chan struct{}
	// waitCode is the wrapper's exit code (-1 when killed by a signal); valid
	// after exited is closed.
	waitCode int
	waitErr  error
}

func (b *Local) start(j *Job) (*child, error) {
	if err := os.MkdirAll(j.Outputs.ArtifactDir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create artifact directory: %w", err)
	}
	if d := filepath.Dir(j.Outputs.MetricsFile); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create metrics directory: %w", err)
		}
	}
	_ = os.Remove(j.Handle.ExitFile)
	logf, err := os.OpenFile(j.Handle.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open log file: %w", err)
	}
	defer logf.Close()

	env, vars := b.environ(j)
	lookup := func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
	args := []string{"-c", wrapperScript, "lariat-job", j.Handle.ExitFile}
	for _, a := range j.Spec.Command {
		args = append(args, expandVars(a, lookup))
	}
	for _, a := range j.Spec.Args {
		args = append(args, expandVars(a, lookup))
	}
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = env
	cmd.Dir = j.Spec.WorkDir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %q: %w", j.Spec.Command[0], err)
	}
	c := &child{pid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{})}
	_, c.startTicks, _ = procInfo(c.pid)
	// The process is always reaped, even after Run returned because the sidecar
	// is stopping.
	go func() {
		c.waitErr = cmd.Wait()
		c.waitCode = cmd.ProcessState.ExitCode()
		close(c.exited)
	}()
	return c, nil
}

// Run implements Backend.
func (b *Local) Run(ctx context.Context, j Job, report func(Update)) (Outcome, error) {
	if j.Handle.PID != 0 {
		return b.reattach(ctx, &j, report)
	}
	if !b.slots.tryAcquire() {
		report(Update{Kind: UpdateQueued, Reason: ReasonQueued,
			Message: fmt.Sprintf("waiting for one of %d local slots", b.opts.MaxConcurrent), Time: time.Now()})
		if err := b.slots.acquire(ctx); err != nil {
			if errors.Is(context.Cause(ctx), ErrCancelled) {
				return Outcome{Reason: ReasonCancelled, Message: "cancelled before it started"}, nil
			}
			return Outcome{}, err
		}
	}
	defer b.slots.release()
	c, err := b.start(&j)
	if err != nil {
		return Outcome{Reason: ReasonSubmitFailed, Message: err.Error()}, nil
	}
	h := j.Handle
	h.PID, h.StartTicks = c.pid, c.startTicks
	report(Update{Kind: UpdateRunning, Handle: &h, Reason: ReasonStarted,
		Message: "process " + strconv.Itoa(c.pid), Time: c.started})
	j.Handle = h
	return b.supervise(ctx, &j, c.started, c.exited, func() (int, string) {
		if code, ok := readExitFile(j.Handle.ExitFile); ok {
			return code, ""
		}
		var ee *exec.ExitError
		if errors.As(c.waitErr, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return -1, "killed by signal " + ws.Signal().String()
			}
		}
		return c.waitCode, ""
	})
}

// reattach follows a process started by an earlier sidecar.
func (b *Local) reattach(ctx context.Context, j *Job, report func(Update)) (Outcome, error) {
	pid := j.Handle.PID
	if !processRuns(pid, j.Handle.StartTicks) {
		if code, ok := readExitFile(j.Handle.ExitFile); ok {
			return b.exitOutcome(j, code, ""), nil
		}
		return Outcome{Reason: ReasonLost, Message: fmt.Sprintf(
			"process %d ended while the sidecar was not running and left no exit status", pid)}, nil
	}
	b.slots.force()
	defer b.slots.release()
	report(Update{Kind: UpdateRunning, Reason: ReasonReattached, Message: "re-attached to process " + strconv.Itoa(pid), Time: time.Now()})
	exited := make(chan struct{})
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go func() {
		t := time.NewTicker(b.opts.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
				if !processRuns(pid, j.Handle.StartTicks) {
					close(exited)
					return
				}
			}
		}
	}()
	started := time.Now()
	if j.Status.StartTime != nil {
		started = *j.Status.StartTime
	}
	return b.supervise(ctx, j, started, exited, func() (int, string) {
		if code, ok := readExitFile(j.Handle.ExitFile); ok {
			return code, ""
		}
		return -1, "process ended without an exit status"
	})
}

// supervise waits for the process to exit, its time limit or ctx.
func (b *Local) supervise(ctx context.Context, j *Job, started time.Time, exited <-chan struct{}, code func() (int, string)) (Outcome, error) {
	var deadline <-chan time.Time
	if limit := j.Spec.Timeout.Duration; limit > 0 {
		t := time.NewTimer(time.Until(started.Add(limit)))
		defer t.Stop()
		deadline = t.C
	}
	select {
	case <-exited:
		c, msg := code()
		return b.exitOutcome(j, c, msg), nil
	case <-deadline:
		b.stop(j.Handle.PID, exited)
		return Outcome{Reason: ReasonDeadlineExceeded,
			Message: "stopped after its time limit of " + j.Spec.Timeout.String()}, nil
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), ErrCancelled) {
			b.stop(j.Handle.PID, exited)
			return Outcome{Reason: ReasonCancelled, Message: "cancelled"}, nil
		}
		return Outcome{}, ctx.Err()
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after the grace period
// (or at once when the leader has exited, for what it left behind).
func (b *Local) stop(pid int, exited <-chan struct{}) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(b.opts.Grace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	t2 := time.NewTimer(5 * time.Second)
	defer t2.Stop()
	select {
	case <-exited:
	case <-t2.C:
	}
}

func (b *Local) exitOutcome(j *Job, code int, msg string) Outcome {
	c := code
	out := Outcome{ExitCode: &c}
	switch {
	case code == 0:
		out.Succeeded, out.Reason = true, ReasonCompleted
		return out
	case msg != "":
		out.Reason, out.Message = ReasonError, msg
		out.ExitCode = nil
	case code == 127:
		out.Reason, out.Message = ReasonError, "command not found (exit code 127)"
	default:
		out.Reason, out.Message = ReasonError, "exit code "+strconv.Itoa(code)
	}
	if last := lastLine(j.Handle.LogFile); last != "" {
		out.Message += "; last output: " + last
	}
	return out
}

func readExitFile(path string) (int, bool) {
	if path == "" {
		return 0, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, false
	}
	return code, true
}

// lastLine returns the last non-empty line of a log file, at most 200 bytes.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 4096
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - tail
	if off < 0 {
		off = 0
	}
	buf := make([]byte, tail)
	n, _ := f.ReadAt(buf, off)
	b := bytes.TrimRight(buf[:n], "\r\n\t ")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return strings.ToValidUTF8(string(b), "")
}

// Logs implements Backend: it reads the job's log file, following it while the job
// runs when asked.
func (b *Local) Logs(ctx context.Context, j Job, follow bool, done <-chan struct{}) (io.ReadCloser, error) {
	return openLog(ctx, j.Handle.LogFile, follow, done, 200*time.Millisecond)
}

// openLog opens a log file; with follow the reader waits for more data until done
// is closed, then drains the file.
func openLog(ctx context.Context, path string, follow bool, done <-chan struct{}, poll time.Duration) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cannot open log: %w", err)
		}
		if !follow {
			return io.NopCloser(strings.NewReader("")), nil
		}
	}
	return &followReader{ctx: ctx, path: path, f: f, follow: follow, done: done, poll: poll}, nil
}

type followReader struct {
	ctx    context.Context
	path   string
	f      *os.File
	follow bool
	done   <-chan struct{}
	poll   time.Duration
	// draining is set once done was seen: the next EOF ends the stream.
	draining bool
}

func (r *followReader) Read(p []byte) (int, error) {
	for {
		if r.f == nil {
			f, err := os.Open(r.path)
			if err == nil {
				r.f = f
				continue
			}
		} else {
			n, err := r.f.Read(p)
			if n > 0 || !errors.Is(err, io.EOF) {
				return n, err
			}
		}
		if !r.follow || r.draining {
			return 0, io.EOF
		}
		t := time.NewTimer(r.poll)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return 0, r.ctx.Err()
		case <-r.done:
			t.Stop()
			r.draining = true
		case <-t.C:
		}
	}
}

func (r *followReader) Close() error {
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
