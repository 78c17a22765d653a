package training

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
)

// StudySpec describes a hyperparameter search: trials are jobs made from Job with
// sampled hyperparameters; the best trial is registered with Job.Register.
type StudySpec struct {
	// Name names the study; trial jobs are named <name>-t<n>. At most 32
	// lowercase letters, digits and '-'.
	Name string `yaml:"name" json:"name"`
	// Job is the template of the trials; its name is ignored.
	Job JobSpec `yaml:"job" json:"job"`
	// Space maps hyperparameter names to their ranges.
	Space map[string]ParamSpace `yaml:"space" json:"space"`
	// Search is random (default) or grid.
	Search string `yaml:"search" json:"search,omitempty"`
	// Seed makes a random search repeatable.
	Seed int64 `yaml:"seed" json:"seed,omitempty"`
	// Parallel is how many trials run at once. Default 1.
	Parallel int `yaml:"parallel" json:"parallel,omitempty"`
	// MaxTrials is the trial budget. Default 10 for a random search, the grid's
	// size for a grid search.
	MaxTrials int `yaml:"max_trials" json:"max_trials,omitempty"`
	// Objective is the metric to optimize.
	Objective Objective `yaml:"objective" json:"objective"`
	// EarlyStop ends the study before the budget is used up.
	EarlyStop EarlyStop `yaml:"early_stop" json:"early_stop"`
}

// Objective names the metric a study optimizes.
type Objective struct {
	// Metric is a key of the trials' metrics files.
	Metric string `yaml:"metric" json:"metric"`
	// Goal is minimize or maximize.
	Goal string `yaml:"goal" json:"goal"`
}

// Objective goals.
const (
	GoalMinimize = "minimize"
	GoalMaximize = "maximize"
)

// EarlyStop ends a study early. Trials that run when it triggers finish; no new
// ones start.
type EarlyStop struct {
	// Patience stops the study after this many finished trials in a row without
	// improvement of the best value. 0 disables it.
	Patience int `yaml:"patience" json:"patience,omitempty"`
	// Target stops the study once the best value reaches it.
	Target *float64 `yaml:"target" json:"target,omitempty"`
}

// Study stop reasons.
const (
	StopMaxTrials     = "MaxTrials"
	StopGoalReached   = "GoalReached"
	StopNoImprovement = "NoImprovement"
	StopNoSuccess     = "NoSuccessfulTrial"
)

const (
	maxStudyNameLen = 32
	maxTrials       = 9999
	maxParallel     = 64
)

// ParseStudySpec decodes and validates a study spec (YAML or JSON).
func ParseStudySpec(file string, data []byte) (*StudySpec, error) {
	var spec StudySpec
	if err := decodeStrict(file, data, "a study spec", &spec); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, prefixErr(file, err)
	}
	return &spec, nil
}

// Validate checks the spec and fills in its defaults.
func (s *StudySpec) Validate() error {
	var p problems
	switch {
	case s.Name == "":
		p.add("name", "is required")
	case len(s.Name) > maxStudyNameLen || !jobNameRe.MatchString(s.Name):
		p.add("name", "%q must be at most %d lowercase letters, digits and '-', starting and ending with a letter or digit", s.Name, maxStudyNameLen)
	}
	tmpl := s.Job
	tmpl.Name = "trial"
	var jp problems
	tmpl.validate(&jp)
	for _, e := range jp {
		p = append(p, fmt.Errorf("job.%w", e))
	}
	if s.Search == "" {
		s.Search = SearchRandom
	}
	grid := s.Search == SearchGrid
	if s.Search != SearchRandom && !grid {
		p.add("search", "%q is not random or grid", s.Search)
	}
	if len(s.Space) == 0 {
		p.add("space", "name at least one hyperparameter")
	}
	for _, name := range sortedKeys(s.Space) {
		if !paramNameRe.MatchString(name) {
			p.add("space."+name, "is not a valid hyperparameter name")
			continue
		}
		ps := s.Space[name]
		ps.validate(name, grid, &p)
	}
	if s.Parallel == 0 {
		s.Parallel = 1
	}
	if s.Parallel < 0 || s.Parallel > maxParallel {
		p.add("parallel", "must be between 1 and %d", maxParallel)
	}
	if s.MaxTrials < 0 || s.MaxTrials > maxTrials {
		p.add("max_trials", "must be between 1 and %d", maxTrials)
	}
	if len(p) == 0 {
		if grid {
			size := newSampler(s.Space, s.Search, s.Seed).size()
			if size > maxGridSize {
				p.add("space", "the grid has more than %d points", maxGridSize)
			} else if s.MaxTrials == 0 || s.MaxTrials > size {
				s.MaxTrials = size
			}
		} else if s.MaxTrials == 0 {
			s.MaxTrials = 10
		}
	}
	if s.Objective.Metric == "" {
		p.add("objective.metric", "is required")
	}
	if s.Objective.Goal != GoalMinimize && s.Objective.Goal != GoalMaximize {
		p.add("objective.goal", "must be minimize or maximize, got %q", s.Objective.Goal)
	}
	if s.EarlyStop.Patience < 0 {
		p.add("early_stop.patience", "must not be negative")
	}
	if t := s.EarlyStop.Target; t != nil && (math.IsNaN(*t) || math.IsInf(*t, 0)) {
		p.add("early_stop.target", "must be a finite number")
	}
	return p.err()
}

// better reports whether a beats b under the objective.
func (o *Objective) better(a, b float64) bool {
	if o.Goal == GoalMaximize {
		return a > b
	}
	return a < b
}

// reached reports whether v reaches target.
func (o *Objective) reached(v, target float64) bool {
	if o.Goal == GoalMaximize {
		return v >= target
	}
	return v <= target
}

// Study is a submitted study as the sidecar records it.
type Study struct {
	ID        string      `json:"id"`
	CreatedAt time.Time   `json:"created_at"`
	Spec      StudySpec   `json:"spec"`
	Status    StudyStatus `json:"status"`
	// CancelRequested records a cancellation not yet carried out.
	CancelRequested bool `json:"cancel_requested,omitempty"`
}

// StudyStatus is a study's state: conditions as for jobs (Metrics are the best
// trial's, Model the registered version), the trials and the best one.
type StudyStatus struct {
	JobStatus
	Trials []Trial `json:"trials"`
	// Best is the number of the best trial so far (0: none yet).
	Best int `json:"best,omitempty"`
	// BestValue is the best trial's objective value.
	BestValue *float64 `json:"best_value,omitempty"`
	// SinceImprovement counts the trials finished since the best one improved.
	SinceImprovement int `json:"since_improvement"`
	// StopReason says why no more trials start: MaxTrials, GoalReached,
	// NoImprovement or Cancelled.
	StopReason string `json:"stop_reason,omitempty"`
}

// Trial is one job of a study.
type Trial struct {
	Number int               `json:"number"`
	JobID  string            `json:"job_id"`
	Params map[string]string `json:"params"`
	Phase  Phase             `json:"phase"`
	// Value is the trial's objective metric.
	Value *float64 `json:"value,omitempty"`
	// Message says why a trial counts as failed.
	Message string `json:"message,omitempty"`
}

type studyEntry struct {
	study  Study
	cancel context.CancelCauseFunc
	done   chan struct{}
	// wake is signalled when a trial ends.
	wake chan struct{}
}

func (s *Study) clone() Study {
	c := *s
	c.Status.Conditions = append([]Condition(nil), s.Status.Conditions...)
	c.Status.Trials = append([]Trial(nil), s.Status.Trials...)
	return c
}

// SubmitStudy validates spec, records a new study and starts its trials.
func (m *Manager) SubmitStudy(spec StudySpec) (Study, error) {
	if err := spec.Validate(); err != nil {
		return Study{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if spec.Job.Register != nil && m.reg == nil {
		return Study{}, fmt.Errorf("%w: job.register: the sidecar has no model registry (start it with --registry URL)", ErrInvalid)
	}
	// Check the trial template against the backend with a sample trial.
	probe := Job{ID: spec.Name + "-t1-000000", Study: "probe", Trial: 1, Spec: m.trialSpec(&spec, 1)}
	probe.Spec.Register = spec.Job.Register
	if err := m.backend.Prepare(&probe, m.store.dir); err != nil {
		return Study{}, fmt.Errorf("%w: job.%w", ErrInvalid, err)
	}
	now := time.Now().UTC()
	s := Study{CreatedAt: now, Spec: spec}
	s.Status.Trials = []Trial{}
	s.Status.setCondition(ConditionCreated, ConditionTrue, ReasonSubmitted, "", now)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Study{}, ErrClosed
	}
	for {
		s.ID = newJobID(spec.Name)
		if _, ok := m.studies[s.ID]; !ok {
			break
		}
	}
	if err := m.store.save("studies", s.ID, &s); err != nil {
		m.mu.Unlock()
		return Study{}, err
	}
	e := &studyEntry{study: s, done: make(chan struct{})}
	m.studies[s.ID] = e
	m.mu.Unlock()
	m.startStudy(e)
	return s.clone(), nil
}

// trialSpec returns the job spec of trial n.
func (m *Manager) trialSpec(spec *StudySpec, n int) JobSpec {
	js := spec.Job
	js.Name = spec.Name + "-t" + strconv.Itoa(n)
	js.Register = nil
	params := newSampler(spec.Space, spec.Search, spec.Seed).trial(n)
	hp := make(map[string]Hyperparameter, len(spec.Job.Hyperparameters)+len(params))
	for k, v := range spec.Job.Hyperparameters {
		hp[k] = v
	}
	for k, v := range params {
		p := spec.Space[k]
		hp[k] = p.typed(v)
	}
	js.Hyperparameters = hp
	return js
}

func (m *Manager) startStudy(e *studyEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, cancel := context.WithCancelCause(m.ctx)
	e.cancel = cancel
	e.wake = make(chan struct{}, 1)
	if e.study.CancelRequested {
		cancel(ErrCancelled)
	}
	m.wg.Add(1)
	go m.runStudy(ctx, e)
}

// watchTrial wakes the study when the trial's job ends.
func (m *Manager) watchTrial(ctx context.Context, e *studyEntry, done <-chan struct{}) {
	if done == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-done:
			select {
			case e.wake <- struct{}{}:
			default:
			}
		case <-ctx.Done():
		}
	}()
}

// runStudy starts trials, collects their results and ends the study.
func (m *Manager) runStudy(ctx context.Context, e *studyEntry) {
	defer m.wg.Done()
	m.mu.Lock()
	spec := e.study.Spec
	now := time.Now().UTC()
	if e.study.Status.StartTime == nil {
		e.study.Status.StartTime = &now
	}
	e.study.Status.setCondition(ConditionRunning, ConditionTrue, ReasonStarted, "", now)
	m.persistStudy(&e.study)
	var running []string
	for _, t := range e.study.Status.Trials {
		if t.Phase != PhaseSucceeded && t.Phase != PhaseFailed {
			running = append(running, t.JobID)
		}
	}
	m.mu.Unlock()
	for _, id := range running {
		m.watchTrial(ctx, e, m.jobDone(id))
	}
	for {
		if ctx.Err() != nil {
			if errors.Is(context.Cause(ctx), ErrCancelled) {
				m.cancelStudyTrials(e)
				m.finishStudy(e, false, ReasonCancelled, "cancelled")
			}
			return
		}
		active := m.collectTrials(e)
		launched, stop, closing := m.launchTrials(ctx, e, active)
		if closing {
			return
		}
		if launched == 0 && active == 0 {
			m.endStudy(ctx, e, &spec, stop)
			return
		}
		select {
		case <-ctx.Done():
		case <-e.wake:
		}
	}
}

// collectTrials records the results of trials whose jobs ended, in the order they
// ended, and returns the number still running.
func (m *Manager) collectTrials(e *studyEntry) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &e.study.Status
	obj := &e.study.Spec.Objective
	type ended struct {
		i   int
		job Job
	}
	var done []ended
	active := 0
	for i := range st.Trials {
		t := &st.Trials[i]
		if t.Phase == PhaseSucceeded || t.Phase == PhaseFailed {
			continue
		}
		je, ok := m.jobs[t.JobID]
		if !ok {
			t.Phase, t.Message = PhaseFailed, "its job record is gone"
			st.SinceImprovement++
			continue
		}
		if !je.job.Status.Finished() {
			t.Phase = je.job.Status.Phase
			active++
			continue
		}
		done = append(done, ended{i, je.job})
	}
	sort.SliceStable(done, func(a, b int) bool {
		ta, tb := done[a].job.Status.CompletionTime, done[b].job.Status.CompletionTime
		return ta != nil && tb != nil && ta.Before(*tb)
	})
	for _, d := range done {
		t := &st.Trials[d.i]
		js := &d.job.Status
		if js.Phase != PhaseSucceeded {
			c, _ := js.Condition(ConditionFailed)
			t.Phase, t.Message = PhaseFailed, c.Reason+": "+c.Message
			st.SinceImprovement++
			continue
		}
		v, ok := js.Metrics[obj.Metric]
		if !ok {
			t.Phase, t.Message = PhaseFailed, fmt.Sprintf("its metrics have no %q", obj.Metric)
			st.SinceImprovement++
			continue
		}
		t.Phase, t.Value = PhaseSucceeded, &v
		if st.BestValue == nil || obj.better(v, *st.BestValue) {
			best := v
			st.Best, st.BestValue, st.SinceImprovement = t.Number, &best, 0
			st.Metrics = js.Metrics
		} else {
			st.SinceImprovement++
		}
	}
	if len(done) > 0 {
		m.persistStudy(&e.study)
	}
	return active
}

// launchTrials starts trials while there is room and no stop condition holds. It
// returns the number started, the stop reason, if any, and whether the manager is
// closing.
func (m *Manager) launchTrials(ctx context.Context, e *studyEntry, active int) (int, string, bool) {
	launched := 0
	for {
		m.mu.Lock()
		spec := &e.study.Spec
		st := &e.study.Status
		// The first reason to stop sticks: it says why no more trials started.
		stop := st.StopReason
		if stop == "" {
			if stop = studyStop(spec, st); stop != "" {
				st.StopReason = stop
				m.persistStudy(&e.study)
			}
		}
		if stop != "" || active+launched >= spec.Parallel {
			m.mu.Unlock()
			return launched, stop, false
		}
		n := len(st.Trials) + 1
		js := m.trialSpec(spec, n)
		params := newSampler(spec.Space, spec.Search, spec.Seed).trial(n)
		studyID := e.study.ID
		m.mu.Unlock()

		j, err := m.submit(js, studyID, n)
		if errors.Is(err, ErrClosed) {
			return launched, "", true
		}
		m.mu.Lock()
		t := Trial{Number: n, JobID: j.ID, Params: params, Phase: PhasePending}
		if err != nil {
			t.Phase, t.Message = PhaseFailed, err.Error()
			st.SinceImprovement++
		}
		st.Trials = append(st.Trials, t)
		m.persistStudy(&e.study)
		m.mu.Unlock()
		if err != nil {
			m.opts.Logf("training: study %s: cannot start trial %d: %v", studyID, n, err)
			continue
		}
		launched++
		m.watchTrial(ctx, e, m.jobDone(j.ID))
	}
}

// studyStop returns why no more trials should start, or "".
func studyStop(spec *StudySpec, st *StudyStatus) string {
	if t := spec.EarlyStop.Target; t != nil && st.BestValue != nil && spec.Objective.reached(*st.BestValue, *t) {
		return StopGoalReached
	}
	if p := spec.EarlyStop.Patience; p > 0 && st.SinceImprovement >= p {
		return StopNoImprovement
	}
	if len(st.Trials) >= spec.MaxTrials {
		return StopMaxTrials
	}
	return ""
}

// endStudy registers the best trial and records the study's end.
func (m *Manager) endStudy(ctx context.Context, e *studyEntry, spec *StudySpec, stop string) {
	m.mu.Lock()
	st := &e.study.Status
	best := st.Best
	var bestJob Job
	if best > 0 {
		if je, ok := m.jobs[st.Trials[best-1].JobID]; ok {
			bestJob = je.job.clone()
		}
	}
	studyID := e.study.ID
	var bestValue float64
	if st.BestValue != nil {
		bestValue = *st.BestValue
	}
	m.mu.Unlock()
	if best == 0 || bestJob.ID == "" {
		m.finishStudy(e, false, StopNoSuccess, "no trial succeeded with a "+spec.Objective.Metric+" metric")
		return
	}
	msg := fmt.Sprintf("best trial %d (%s): %s=%g", best, bestJob.ID, spec.Objective.Metric, bestValue)
	if spec.Job.Register != nil {
		tags := map[string]string{"lariat.study": studyID, "lariat.trial": strconv.Itoa(best)}
		ref, err := m.registerWithRetry(ctx, &bestJob, spec.Job.Register, bestJob.Status.Metrics, tags)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrCancelled) {
				return
			}
			m.finishStudy(e, false, ReasonRegistrationFailed, err.Error())
			return
		}
		m.mu.Lock()
		e.study.Status.Model = ref
		m.mu.Unlock()
		msg += fmt.Sprintf("; registered %s version %s", ref.Name, ref.Version)
	}
	m.finishStudy(e, true, stop, msg)
}

func (m *Manager) cancelStudyTrials(e *studyEntry) {
	m.mu.Lock()
	var ids []string
	for _, t := range e.study.Status.Trials {
		if t.Phase != PhaseSucceeded && t.Phase != PhaseFailed {
			ids = append(ids, t.JobID)
		}
	}
	m.mu.Unlock()
	for _, id := range ids {
		_, _ = m.Cancel(id)
	}
}

func (m *Manager) finishStudy(e *studyEntry, ok bool, reason, msg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &e.study.Status
	if st.Finished() {
		return
	}
	if reason == ReasonCancelled && st.StopReason == "" {
		st.StopReason = ReasonCancelled
	}
	st.finish(ok, reason, msg, time.Now().UTC())
	e.study.CancelRequested = false
	m.persistStudy(&e.study)
	close(e.done)
}

func (m *Manager) persistStudy(s *Study) {
	if err := m.store.save("studies", s.ID, s); err != nil {
		stateWriteErrors.Inc()
		m.opts.Logf("training: %v", err)
	}
}

// Study returns the study with the given id.
func (m *Manager) Study(id string) (Study, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.studies[id]
	if !ok {
		return Study{}, fmt.Errorf("study %q: %w", id, ErrNotFound)
	}
	return e.study.clone(), nil
}

// Studies returns every study, oldest first.
func (m *Manager) Studies() []Study {
	m.mu.Lock()
	out := make([]Study, 0, len(m.studies))
	for _, e := range m.studies {
		out = append(out, e.study.clone())
	}
	m.mu.Unlock()
	sortOldestFirst(out, func(s *Study) (time.Time, string) { return s.CreatedAt, s.ID })
	return out
}

// CancelStudy stops a study: its running trials are cancelled and it ends Failed
// with reason Cancelled.
func (m *Manager) CancelStudy(id string) (Study, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.studies[id]
	if !ok {
		return Study{}, fmt.Errorf("study %q: %w", id, ErrNotFound)
	}
	if e.study.Status.Finished() {
		return e.study.clone(), fmt.Errorf("study %q: %w", id, ErrFinished)
	}
	if !e.study.CancelRequested {
		e.study.CancelRequested = true
		m.persistStudy(&e.study)
	}
	if e.cancel != nil {
		e.cancel(ErrCancelled)
	}
	return e.study.clone(), nil
}

// WaitStudy blocks until the study ends or ctx ends, and returns the study.
func (m *Manager) WaitStudy(ctx context.Context, id string) (Study, error) {
	m.mu.Lock()
	e, ok := m.studies[id]
	m.mu.Unlock()
	if !ok {
		return Study{}, fmt.Errorf("study %q: %w", id, ErrNotFound)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
	}
	return m.Study(id)
}
