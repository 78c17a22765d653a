package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lariat-gw/lariat/registry"
)

// Errors of Manager operations, for callers mapping them to HTTP statuses.
var (
	// ErrNotFound: no job or study has the given id.
	ErrNotFound = errors.New("not found")
	// ErrFinished: the job or study has finished already.
	ErrFinished = errors.New("already finished")
	// ErrInvalid: the spec is invalid (for this backend or sidecar).
	ErrInvalid = errors.New("invalid spec")
	// ErrClosed: the manager is shutting down.
	ErrClosed = errors.New("training manager is closed")
)

var (
	jobsSubmitted      = metrics.NewCounter(`lariat_train_jobs_submitted_total`)
	jobsSucceeded      = metrics.NewCounter(`lariat_train_jobs_finished_total{result="succeeded"}`)
	jobsFailed         = metrics.NewCounter(`lariat_train_jobs_finished_total{result="failed"}`)
	jobsReattached     = metrics.NewCounter(`lariat_train_jobs_resumed_total`)
	registrations      = metrics.NewCounter(`lariat_train_registrations_total`)
	registrationErrors = metrics.NewCounter(`lariat_train_registration_errors_total`)
	stateWriteErrors   = metrics.NewCounter(`lariat_train_state_write_errors_total`)
)

// Options configure a Manager.
type Options struct {
	// StateDir holds job and study records, logs and local artifacts. Required.
	StateDir string
	// Backend runs the jobs. Required.
	Backend Backend
	// Registry registers trained models; nil rejects specs with a register section.
	Registry *registry.Client
	// Logf logs what happens in the background. Default log.Printf.
	Logf func(format string, args ...any)
	// RegisterAttempts bounds the tries of one registration. Default 5.
	RegisterAttempts int
	// RegisterBackoff is the pause after the first failed try; it doubles after
	// each. Default 1s.
	RegisterBackoff time.Duration
}

// Manager submits jobs to a backend, follows them to the end, registers their
// models and runs studies. Jobs and studies are persisted under the state
// directory; a new Manager on the same directory resumes them. Safe for
// concurrent use.
type Manager struct {
	opts    Options
	store   *stateStore
	backend Backend
	reg     *registry.Client

	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	jobs    map[string]*jobEntry
	studies map[string]*studyEntry
}

type jobEntry struct {
	job    Job
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// NewManager opens the state directory, loads the recorded jobs and studies, and
// resumes those that had not finished: jobs that were running are re-attached to
// (or marked Failed with reason Lost when their process is gone), queued ones are
// started.
func NewManager(opts Options) (*Manager, error) {
	if opts.Backend == nil {
		return nil, fmt.Errorf("a backend is required")
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if opts.RegisterAttempts <= 0 {
		opts.RegisterAttempts = 5
	}
	if opts.RegisterBackoff <= 0 {
		opts.RegisterBackoff = time.Second
	}
	st, err := openStateStore(opts.StateDir)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &Manager{
		opts: opts, store: st, backend: opts.Backend, reg: opts.Registry,
		ctx: ctx, stop: stop,
		jobs: map[string]*jobEntry{}, studies: map[string]*studyEntry{},
	}
	bad := func(path string, err error) {
		m.opts.Logf("training: skipping unreadable record %s: %v", path, err)
	}
	var resume []*jobEntry
	err = st.loadAll("jobs", func(data []byte) error {
		var j Job
		if err := json.Unmarshal(data, &j); err != nil {
			return err
		}
		if j.ID == "" {
			return fmt.Errorf("record without an id")
		}
		e := &jobEntry{job: j, done: make(chan struct{})}
		if j.Status.Finished() {
			close(e.done)
		} else {
			if j.Backend != m.backend.Name() {
				e.job.Status.finish(false, ReasonLost, fmt.Sprintf("the job ran on the %s backend; the sidecar now runs %s",
					j.Backend, m.backend.Name()), time.Now())
				close(e.done)
				m.persistJob(&e.job)
			} else {
				resume = append(resume, e)
			}
		}
		m.jobs[j.ID] = e
		return nil
	}, bad)
	if err != nil {
		stop()
		return nil, err
	}
	var studies []*studyEntry
	err = st.loadAll("studies", func(data []byte) error {
		var s Study
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		if s.ID == "" {
			return fmt.Errorf("record without an id")
		}
		e := &studyEntry{study: s, done: make(chan struct{})}
		if s.Status.Finished() {
			close(e.done)
		} else {
			studies = append(studies, e)
		}
		m.studies[s.ID] = e
		return nil
	}, bad)
	if err != nil {
		stop()
		return nil, err
	}
	for _, e := range resume {
		jobsReattached.Inc()
		m.startMonitor(e)
	}
	for _, e := range studies {
		m.startStudy(e)
	}
	return m, nil
}

// Backend returns the manager's backend.
func (m *Manager) Backend() Backend { return m.backend }

// Close stops following jobs and studies and waits for the background work to
// stop. Jobs keep running in their backend; a new Manager resumes them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.stop()
	m.wg.Wait()
}

// Submit validates spec, records a new job and starts it. Spec errors wrap
// ErrInvalid.
func (m *Manager) Submit(spec JobSpec) (Job, error) {
	if err := spec.Validate(); err != nil {
		return Job{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if spec.Register != nil && m.reg == nil {
		return Job{}, fmt.Errorf("%w: register: the sidecar has no model registry (start it with --registry URL)", ErrInvalid)
	}
	return m.submit(spec, "", 0)
}

func (m *Manager) submit(spec JobSpec, study string, trial int) (Job, error) {
	now := time.Now().UTC()
	j := Job{Backend: m.backend.Name(), Study: study, Trial: trial, CreatedAt: now, Spec: spec}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Job{}, ErrClosed
	}
	for {
		j.ID = newJobID(spec.Name)
		if _, ok := m.jobs[j.ID]; !ok {
			break
		}
	}
	if err := m.backend.Prepare(&j, m.store.dir); err != nil {
		return Job{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	j.Status.setCondition(ConditionCreated, ConditionTrue, ReasonSubmitted, "accepted by the "+m.backend.Name()+" backend", now)
	if err := m.store.save("jobs", j.ID, &j); err != nil {
		return Job{}, err
	}
	e := &jobEntry{job: j, done: make(chan struct{})}
	m.jobs[j.ID] = e
	jobsSubmitted.Inc()
	m.startMonitorLocked(e)
	return j.clone(), nil
}

func (m *Manager) startMonitor(e *jobEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.startMonitorLocked(e)
}

func (m *Manager) startMonitorLocked(e *jobEntry) {
	ctx, cancel := context.WithCancelCause(m.ctx)
	e.cancel = cancel
	if e.job.CancelRequested {
		cancel(ErrCancelled)
	}
	m.wg.Add(1)
	go m.monitor(ctx, e)
}

// monitor runs one job through its backend to the end.
func (m *Manager) monitor(ctx context.Context, e *jobEntry) {
	defer m.wg.Done()
	m.mu.Lock()
	j := e.job.clone()
	m.mu.Unlock()
	if j.CancelRequested && !j.Handle.started() {
		m.finishJob(e, Outcome{Reason: ReasonCancelled, Message: "cancelled before it started"})
		return
	}
	out, err := m.backend.Run(ctx, j, func(u Update) { m.apply(e, u) })
	if err != nil {
		if ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrCancelled) {
			return // the manager is closing: the job goes on without us
		}
		out = Outcome{Reason: ReasonError, Message: err.Error()}
	}
	m.complete(ctx, e, out)
}

// apply records a backend's progress report.
func (m *Manager) apply(e *jobEntry, u Update) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &e.job.Status
	if st.Finished() {
		return
	}
	if u.Time.IsZero() {
		u.Time = time.Now()
	}
	u.Time = u.Time.UTC()
	if u.Handle != nil {
		e.job.Handle = *u.Handle
	}
	switch u.Kind {
	case UpdateQueued, UpdateSubmitted:
		st.setCondition(ConditionCreated, ConditionTrue, u.Reason, u.Message, u.Time)
	case UpdateRunning:
		st.setCondition(ConditionRunning, ConditionTrue, u.Reason, u.Message, u.Time)
		if st.StartTime == nil && u.Reason != ReasonRegistering {
			t := u.Time
			st.StartTime = &t
		}
	}
	m.persistJob(&e.job)
}

// complete reads the metrics of a job that ended, registers its model when it
// succeeded and records the final condition.
func (m *Manager) complete(ctx context.Context, e *jobEntry, out Outcome) {
	m.mu.Lock()
	if out.ExitCode != nil {
		c := *out.ExitCode
		e.job.Status.ExitCode = &c
	}
	j := e.job.clone()
	m.mu.Unlock()
	end := out.Time
	if end.IsZero() {
		end = time.Now()
	}
	if !out.Succeeded {
		status := registry.RunFailed
		if out.Reason == ReasonCancelled {
			status = registry.RunKilled
		}
		m.recordRun(ctx, &j, status, nil, end)
		m.finishJob(e, out)
		return
	}
	mets, err := readMetrics(out.Metrics, j.Outputs.MetricsFile)
	if err != nil {
		m.recordRun(ctx, &j, registry.RunFailed, nil, end)
		m.finishJob(e, Outcome{Reason: ReasonMetricsInvalid, Message: err.Error(), Time: out.Time})
		return
	}
	m.mu.Lock()
	e.job.Status.Metrics = mets
	j = e.job.clone()
	m.mu.Unlock()
	// The run first, so that the version registered next names a run that exists.
	m.recordRun(ctx, &j, registry.RunFinished, mets, end)
	if j.Spec.Register != nil {
		m.apply(e, Update{Kind: UpdateRunning, Reason: ReasonRegistering,
			Message: "registering model " + j.Spec.Register.Model})
		ref, err := m.registerWithRetry(ctx, &j, j.Spec.Register, mets, nil)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrCancelled) {
				return // closing: the next manager registers it
			}
			m.finishJob(e, Outcome{Reason: ReasonRegistrationFailed, Message: err.Error()})
			return
		}
		m.mu.Lock()
		e.job.Status.Model = ref
		m.mu.Unlock()
		out.Message = fmt.Sprintf("registered %s version %s", ref.Name, ref.Version)
	}
	m.finishJob(e, out)
}

func (m *Manager) finishJob(e *jobEntry, out Outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &e.job.Status
	if st.Finished() {
		return
	}
	t := out.Time
	if t.IsZero() {
		t = time.Now()
	}
	if out.Reason == "" {
		out.Reason = ReasonError
		if out.Succeeded {
			out.Reason = ReasonCompleted
		}
	}
	st.finish(out.Succeeded, out.Reason, out.Message, t.UTC())
	e.job.CancelRequested = false
	m.persistJob(&e.job)
	close(e.done)
	if out.Succeeded {
		jobsSucceeded.Inc()
	} else {
		jobsFailed.Inc()
		m.opts.Logf("training: job %s failed: %s: %s", e.job.ID, out.Reason, out.Message)
	}
}

// persistJob writes a job record; failures are logged (the job goes on).
func (m *Manager) persistJob(j *Job) {
	if err := m.store.save("jobs", j.ID, j); err != nil {
		stateWriteErrors.Inc()
		m.opts.Logf("training: %v", err)
	}
}

// maxMetricsSize bounds a metrics file.
const maxMetricsSize = 1 << 20

// readMetrics decodes raw, or the file at path when raw is nil. A missing file
// means no metrics. Values that are not numbers are ignored.
func readMetrics(raw []byte, path string) (map[string]float64, error) {
	if raw == nil {
		if path == "" {
			return nil, nil
		}
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read metrics file: %w", err)
		}
		defer f.Close()
		raw, err = io.ReadAll(io.LimitReader(f, maxMetricsSize+1))
		if err != nil {
			return nil, fmt.Errorf("cannot read metrics file: %w", err)
		}
		if len(raw) > maxMetricsSize {
			return nil, fmt.Errorf("metrics file %s is larger than %d bytes", path, maxMetricsSize)
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("metrics must be a JSON object of numbers: %w", err)
	}
	out := make(map[string]float64, len(obj))
	for k, v := range obj {
		var f float64
		if json.Unmarshal(v, &f) == nil {
			out[k] = f
		}
	}
	return out, nil
}

// Job returns the job with the given id.
func (m *Manager) Job(id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return e.job.clone(), nil
}

// JobFilter selects jobs in Jobs. Zero fields match everything.
type JobFilter struct {
	Study string
	Phase Phase
}

// Jobs returns the jobs matching f, oldest first.
func (m *Manager) Jobs(f JobFilter) []Job {
	m.mu.Lock()
	out := make([]Job, 0, len(m.jobs))
	for _, e := range m.jobs {
		if (f.Study == "" || e.job.Study == f.Study) && (f.Phase == "" || e.job.Status.Phase == f.Phase) {
			out = append(out, e.job.clone())
		}
	}
	m.mu.Unlock()
	sortOldestFirst(out, func(j *Job) (time.Time, string) { return j.CreatedAt, j.ID })
	return out
}

// sortOldestFirst orders records by creation time, then by id; key returns both
// of a record. Jobs and studies are listed in this order.
func sortOldestFirst[T any](records []T, key func(*T) (created time.Time, id string)) {
	sort.Slice(records, func(a, b int) bool {
		ca, ia := key(&records[a])
		cb, ib := key(&records[b])
		if !ca.Equal(cb) {
			return ca.Before(cb)
		}
		return ia < ib
	})
}

// Cancel asks for a job to be stopped; the job ends Failed with reason
// Cancelled. It returns ErrFinished when the job has ended already.
func (m *Manager) Cancel(id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	if e.job.Status.Finished() {
		return e.job.clone(), fmt.Errorf("job %q: %w", id, ErrFinished)
	}
	if !e.job.CancelRequested {
		e.job.CancelRequested = true
		m.persistJob(&e.job)
	}
	if e.cancel != nil {
		e.cancel(ErrCancelled)
	}
	return e.job.clone(), nil
}

// Wait blocks until the job ends or ctx ends, and returns the job.
func (m *Manager) Wait(ctx context.Context, id string) (Job, error) {
	m.mu.Lock()
	e, ok := m.jobs[id]
	m.mu.Unlock()
	if !ok {
		return Job{}, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return m.Job(id)
	}
	return m.Job(id)
}

// Logs returns the output of a job; with follow, the stream lasts until the job
// ends.
func (m *Manager) Logs(ctx context.Context, id string, follow bool) (io.ReadCloser, error) {
	m.mu.Lock()
	e, ok := m.jobs[id]
	var j Job
	if ok {
		j = e.job.clone()
	}
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return m.backend.Logs(ctx, j, follow, e.done)
}

// done returns the channel closed when the job ends.
func (m *Manager) jobDone(id string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.jobs[id]; ok {
		return e.done
	}
	return nil
}
