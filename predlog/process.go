package predlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// SinkProgram is the sink process Open starts unless Options.SinkCommand
// names another.
const SinkProgram = "lariat-predlog"

// The sink process protocol. The log writes to the process's standard
// input one JSON record per line (Record.AppendJSON), each batch followed
// by a command line; the process answers its start and every command with
// one SinkAnswer line on its standard output. Its standard error is the
// log's.
//
// The end of its input without the close command means the log's process
// died: the sink process then exits without completing its files, as the
// log would have (a kill -9 loses the records of the last flush interval).
const (
	// CmdWrite stores the records sent since the last command (Sink.Write).
	CmdWrite = `{"op":"write"}`
	// CmdFlush is Sink.Flush.
	CmdFlush = `{"op":"flush"}`
	// CmdCheck is Sink.Check.
	CmdCheck = `{"op":"check"}`
	// CmdClose is Sink.Close; the process exits after its answer.
	CmdClose = `{"op":"close"}`
)

// SinkAnswer is the sink process's answer to its start or a command.
type SinkAnswer struct {
	// Lost counts the records the command's error dropped.
	Lost int `json:"lost,omitempty"`
	// Full and Failed count the records the sink dropped on its own since
	// the last answer (DropCounter).
	Full   int `json:"full,omitempty"`
	Failed int `json:"failed,omitempty"`
	// Error is the command's error, or why the sink could not open.
	Error string `json:"error,omitempty"`
}

// Timeouts of the sink process. A process that does not answer in time is
// killed and started again.
const (
	// startTimeout bounds the start: opening a folder or a Kafka client.
	startTimeout = 30 * time.Second
	// callTimeout bounds a write, flush or check.
	callTimeout = 30 * time.Second
	// closeTimeout bounds the close: the Kafka sink waits up to 10s for
	// its buffer.
	closeTimeout = 30 * time.Second
	// exitTimeout bounds the wait for the process to exit after its close.
	exitTimeout = 10 * time.Second
)

// Restart backoff of a sink process that died or did not answer: from
// minRestartBackoff, doubling up to maxRestartBackoff, reset by an answer.
const (
	minRestartBackoff = 500 * time.Millisecond
	maxRestartBackoff = 30 * time.Second
)

// processSink is the Sink Open makes: it feeds a sink process and restarts
// it, with a backoff, when it dies. While the process is down, records are
// dropped and counted as sink errors.
type processSink struct {
	path string
	args []string
	env  []string

	proc    *sinkProcess // nil while down
	pid     atomic.Int64 // proc's pid, 0 while down; read by other goroutines
	backoff time.Duration
	retryAt time.Time
	downErr error

	full, failed int
	buf          []byte
}

var (
	_ Sink        = (*processSink)(nil)
	_ DropCounter = (*processSink)(nil)
)

// sinkProcess is one run of the sink process.
type sinkProcess struct {
	cmd     *exec.Cmd
	stdin   *os.File
	w       *bufio.Writer
	answers chan SinkAnswer // closed when its output ends
	exited  chan struct{}   // closed when it has exited; then waitErr is set
	waitErr error
}

// startProcessSink starts the sink process for rawURL and waits for it to
// open the sink.
func startProcessSink(rawURL string, opts Options) (*processSink, error) {
	cmd, err := sinkCommand(opts.SinkCommand)
	if err != nil {
		return nil, err
	}
	p := &processSink{
		path: cmd[0],
		args: append(cmd[1:len(cmd):len(cmd)],
			"-prediction-log="+rawURL,
			"-prediction-log-flush="+opts.FlushInterval.String(),
			"-prediction-log-max-file-size="+strconv.FormatInt(opts.MaxFileSize, 10)),
		// Credentials go by environment, not on a command line others can read.
		env: os.Environ(),
	}
	if opts.KafkaUser != "" {
		p.env = append(p.env, "LARIAT_PREDICTION_LOG_KAFKA_USER="+opts.KafkaUser, "LARIAT_PREDICTION_LOG_KAFKA_PASSWORD="+opts.KafkaPassword)
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// sinkCommand returns the sink process's command: cmd when given, else
// SinkProgram next to the running executable (or the file it links to),
// else on PATH.
func sinkCommand(cmd []string) ([]string, error) {
	if len(cmd) > 0 {
		return cmd, nil
	}
	if exe, err := os.Executable(); err == nil {
		dirs := []string{filepath.Dir(exe)}
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		for _, dir := range dirs {
			p := filepath.Join(dir, SinkProgram)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return []string{p}, nil
			}
		}
	}
	p, err := exec.LookPath(SinkProgram)
	if err != nil {
		return nil, fmt.Errorf("the prediction log needs %s next to this program or on PATH (lariat serve: --prediction-log-sink): %w", SinkProgram, err)
	}
	return []string{p}, nil
}

// start runs the sink process and waits for its first answer.
func (p *processSink) start() error {
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stderr = os.Stderr
	setParentDeathSignal(cmd)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("cannot start the prediction log sink: %w", err)
	}
	cmd.Stdin = stdinR
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return fmt.Errorf("cannot start the prediction log sink: %w", err)
	}
	err = cmd.Start()
	stdinR.Close()
	if err != nil {
		stdinW.Close()
		return fmt.Errorf("cannot start the prediction log sink %s: %w", p.path, err)
	}
	sp := &sinkProcess{
		cmd:     cmd,
		stdin:   stdinW,
		w:       bufio.NewWriterSize(stdinW, 64<<10),
		answers: make(chan SinkAnswer, 1),
		exited:  make(chan struct{}),
	}
	go sp.readAnswers(stdout)
	a, err := sp.answer(startTimeout)
	if err == nil && a.Error != "" {
		err = errors.New(a.Error)
	}
	if err != nil {
		sp.kill()
		return err
	}
	p.proc = sp
	p.pid.Store(int64(cmd.Process.Pid))
	return nil
}

// readAnswers passes the process's answers on until its output ends, then
// waits for it to exit.
func (sp *sinkProcess) readAnswers(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var a SinkAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			a = SinkAnswer{Error: fmt.Sprintf("the prediction log sink answered %.100q: %v", sc.Bytes(), err)}
		}
		sp.answers <- a
	}
	close(sp.answers)
	sp.waitErr = sp.cmd.Wait()
	sp.stdin.Close()
	close(sp.exited)
}

// answer waits up to d for the process's next answer.
func (sp *sinkProcess) answer(d time.Duration) (SinkAnswer, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case a, ok := <-sp.answers:
		if !ok {
			<-sp.exited
			return SinkAnswer{}, fmt.Errorf("the prediction log sink process ended: %v", sp.waitErr)
		}
		return a, nil
	case <-t.C:
		return SinkAnswer{}, fmt.Errorf("the prediction log sink process did not answer within %s", d)
	}
}

// kill stops the process and waits for it.
func (sp *sinkProcess) kill() {
	_ = sp.cmd.Process.Kill()
	for range sp.answers {
	}
	<-sp.exited
}

// call sends recs and cmd to the process, starting it first when it is
// down and its backoff has passed, and returns its answer. Any failure
// kills the process and sets the next start back.
func (p *processSink) call(cmd string, recs []*Record, timeout time.Duration) (SinkAnswer, error) {
	if p.proc == nil {
		if time.Now().Before(p.retryAt) {
			return SinkAnswer{}, p.downErr
		}
		if err := p.start(); err != nil {
			p.down(err)
			return SinkAnswer{}, err
		}
	}
	sp := p.proc
	_ = sp.stdin.SetWriteDeadline(time.Now().Add(timeout))
	var err error
	for _, r := range recs {
		p.buf = appendLine(p.buf[:0], r)
		if _, err = sp.w.Write(p.buf); err != nil {
			break
		}
	}
	if err == nil {
		if _, err = sp.w.WriteString(cmd + "\n"); err == nil {
			err = sp.w.Flush()
		}
	}
	if err != nil {
		err = fmt.Errorf("cannot write to the prediction log sink process: %w", err)
	}
	var a SinkAnswer
	if err == nil {
		a, err = sp.answer(timeout)
	}
	if err != nil {
		p.down(err)
		return SinkAnswer{}, err
	}
	p.backoff = 0
	p.full += a.Full
	p.failed += a.Failed
	return a, nil
}

// appendLine appends r as one line of JSON. Raw JSON values (a request
// body, an upstream's output) may hold newlines: outside strings, where
// JSON escapes them, they are whitespace, written as spaces.
func appendLine(b []byte, r *Record) []byte {
	start := len(b)
	b = r.AppendJSON(b)
	for i := bytes.IndexByte(b[start:], '\n'); i >= 0; i = bytes.IndexByte(b[start:], '\n') {
		b[start+i] = ' '
	}
	return append(b, '\n')
}

// down stops the process after err and sets back its next start.
func (p *processSink) down(err error) {
	if p.proc != nil {
		p.proc.kill()
		p.proc = nil
		p.pid.Store(0)
	}
	p.backoff = min(max(2*p.backoff, minRestartBackoff), maxRestartBackoff)
	p.retryAt = time.Now().Add(p.backoff)
	p.downErr = fmt.Errorf("%w (next start of the sink process in %s)", err, p.backoff)
}

// result turns an answer into what the Sink methods return.
func result(a SinkAnswer, err error) (int, error) {
	switch {
	case err != nil:
		return 0, err
	case a.Error != "":
		return a.Lost, errors.New(a.Error)
	}
	return a.Lost, nil
}

// Write implements Sink.
func (p *processSink) Write(recs []*Record) (int, error) {
	a, err := p.call(CmdWrite, recs, callTimeout)
	if err != nil {
		return len(recs), err
	}
	return result(a, nil)
}

// Flush implements Sink.
func (p *processSink) Flush() (int, error) {
	return result(p.call(CmdFlush, nil, callTimeout))
}

// Check implements Sink.
func (p *processSink) Check() error {
	_, err := result(p.call(CmdCheck, nil, callTimeout))
	return err
}

// Close implements Sink: the process completes its files (or waits for
// Kafka) and exits.
func (p *processSink) Close() (int, error) {
	if p.proc == nil {
		return 0, nil
	}
	a, err := p.call(CmdClose, nil, closeTimeout)
	if sp := p.proc; sp != nil {
		p.proc = nil
		p.pid.Store(0)
		sp.stdin.Close()
		select {
		case <-sp.exited:
		case <-time.After(exitTimeout):
			sp.kill()
		}
	}
	return result(a, err)
}

// TakeDrops implements DropCounter.
func (p *processSink) TakeDrops() (full, failed int) {
	full, failed = p.full, p.failed
	p.full, p.failed = 0, 0
	return full, failed
}
