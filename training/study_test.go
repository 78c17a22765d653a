package training

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/registry"
)

func fptr(v float64) *float64 { return &v }

func TestSamplerGrid(t *testing.T) {
	f := func(p ParamSpace, want ...string) {
		t.Helper()
		if got := p.gridValues(); !reflect.DeepEqual(got, want) {
			t.Fatalf("gridValues(%+v) = %q, want %q", p, got, want)
		}
	}
	f(ParamSpace{Type: ParamInt, Min: fptr(2), Max: fptr(5)}, "2", "3", "4", "5")
	f(ParamSpace{Type: ParamInt, Min: fptr(0), Max: fptr(100), Points: 3}, "0", "50", "100")
	f(ParamSpace{Type: ParamInt, Min: fptr(1), Max: fptr(3), Points: 10}, "1", "2", "3")
	f(ParamSpace{Type: ParamFloat, Min: fptr(0), Max: fptr(1), Points: 5}, "0", "0.25", "0.5", "0.75", "1")
	f(ParamSpace{Type: ParamFloat, Min: fptr(0.001), Max: fptr(10), Points: 5, Log: true}, "0.001", "0.01", "0.1", "1", "10")
	f(ParamSpace{Type: ParamFloat, Min: fptr(3), Max: fptr(4), Points: 1}, "3")
	f(ParamSpace{Type: ParamChoice, Values: choices("adam", "sgd")}, "adam", "sgd")

	s := newSampler(map[string]ParamSpace{
		"opt": {Type: ParamChoice, Values: choices("adam", "sgd")},
		"lr":  {Type: ParamFloat, Min: fptr(0.1), Max: fptr(0.3), Points: 3},
	}, SearchGrid, 0)
	if s.size() != 6 {
		t.Fatalf("size = %d", s.size())
	}
	var got []string
	for n := 1; n <= 6; n++ {
		got = append(got, describeParams(s.trial(n)))
	}
	want := []string{"lr=0.1, opt=adam", "lr=0.1, opt=sgd", "lr=0.2, opt=adam", "lr=0.2, opt=sgd", "lr=0.3, opt=adam", "lr=0.3, opt=sgd"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("grid trials:\n%q\nwant\n%q", got, want)
	}
}

func TestSamplerRandom(t *testing.T) {
	space := map[string]ParamSpace{
		"lr":     {Type: ParamFloat, Min: fptr(1e-4), Max: fptr(1), Log: true},
		"depth":  {Type: ParamInt, Min: fptr(2), Max: fptr(9)},
		"trees":  {Type: ParamInt, Min: fptr(10), Max: fptr(1000), Log: true},
		"l2":     {Type: ParamFloat, Min: fptr(-1), Max: fptr(1)},
		"solver": {Type: ParamChoice, Values: choices("a", "b", "c")},
	}
	s := newSampler(space, SearchRandom, 42)
	seen := map[string]map[string]bool{}
	for n := 1; n <= 500; n++ {
		p := s.trial(n)
		for name, v := range p {
			if seen[name] == nil {
				seen[name] = map[string]bool{}
			}
			seen[name][v] = true
			ps := space[name]
			if ps.Type == ParamChoice {
				continue
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < *ps.Min || f > *ps.Max || (ps.Type == ParamInt && f != math.Trunc(f)) {
				t.Fatalf("trial %d: %s=%s outside %+v", n, name, v, ps)
			}
		}
	}
	if len(seen["depth"]) != 8 || len(seen["solver"]) != 3 {
		t.Fatalf("values drawn: depth %d, solver %d", len(seen["depth"]), len(seen["solver"]))
	}
	// The same seed gives the same trials, in any order; another seed others.
	again := newSampler(space, SearchRandom, 42)
	if !reflect.DeepEqual(again.trial(17), s.trial(17)) || reflect.DeepEqual(newSampler(space, SearchRandom, 43).trial(17), s.trial(17)) {
		t.Fatal("random trials are not determined by the seed")
	}
}

func TestStudySpecErrors(t *testing.T) {
	f := func(y string, wants ...string) {
		t.Helper()
		_, err := ParseStudySpec("study.yaml", []byte(y))
		if err == nil {
			t.Fatalf("no error for:\n%s", y)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not mention %q", err, w)
			}
		}
	}
	f(`name: s
job: {command: [true]}
space: {lr: {type: float, min: 1, max: 0}}
objective: {metric: loss, goal: min}
`, "study.yaml: space.lr: min must be below max", `study.yaml: objective.goal: must be minimize or maximize, got "min"`)
	f(`name: s
job: {command: [true], env: {LARIAT_X: "1"}}
search: grid
space:
  lr: {type: float, min: 0.1, max: 1}
  n: {type: int, min: 1, max: 5000}
  c: {type: choice}
  d: {type: float, min: 0, max: 1, log: true}
objective: {metric: loss, goal: minimize}
`, "job.env.LARIAT_X: names starting with LARIAT_", "space.lr.points: a grid search needs",
		"space.n.points: the range has more than 1000", "space.c.values: a choice parameter needs values", "space.d: a log scale needs a positive min")
	f(`name: s
job: {command: [true]}
space: {lr: {type: float, min: 0, max: 1}}
objective: {metric: loss, goal: maximize}
parallel: 100
early_stop: {patience: -1}
unknown: 1
`, `study.yaml:7:1: unknown key "unknown"`)
	f(`name: s
job: {command: [true]}
search: grid
space:
  a: {type: int, min: 1, max: 1000}
  b: {type: int, min: 1, max: 1000}
objective: {metric: loss, goal: maximize}
`, "space: the grid has more than 10000 points")

	s, err := ParseStudySpec("ok.yaml", []byte(`name: s
job: {command: [true]}
search: grid
space: {a: {type: choice, values: [x, y, z]}}
objective: {metric: loss, goal: maximize}
`))
	if err != nil || s.MaxTrials != 3 || s.Parallel != 1 {
		t.Fatalf("defaults: %+v, %v", s, err)
	}
}

// choices returns string choice values.
func choices(vals ...string) []Hyperparameter {
	out := make([]Hyperparameter, len(vals))
	for i, v := range vals {
		out[i] = StringHyperparameter(v)
	}
	return out
}

// lossStudy is a grid study over x (3, 1, 2, 5) and y (1, 2) whose trials report
// loss = x*y.
func lossStudy(name string) StudySpec {
	job := shellJob("", `printf '{"loss": %d, "x": %s}' "$((LARIAT_HP_X * LARIAT_HP_Y))" "$LARIAT_HP_X" > "$LARIAT_METRICS_FILE"`)
	return StudySpec{
		Name:      name,
		Job:       job,
		Search:    SearchGrid,
		Space:     map[string]ParamSpace{"x": {Type: ParamChoice, Values: []Hyperparameter{"3", "1", "2", "5"}}, "y": {Type: ParamInt, Min: fptr(1), Max: fptr(2)}},
		Parallel:  2,
		Objective: Objective{Metric: "loss", Goal: GoalMinimize},
	}
}

func waitStudy(t *testing.T, m *Manager, id string) Study {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := m.WaitStudy(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Status.Finished() {
		t.Fatalf("study %s did not finish: %+v", id, s.Status)
	}
	return s
}

func TestStudyGridRegistersBest(t *testing.T) {
	reg := startRegistry(t)
	m := newManager(t, t.TempDir(), newLocal(2), reg)
	spec := lossStudy("grid")
	spec.Job.Hyperparameters = map[string]Hyperparameter{"x": StringHyperparameter("overridden"), "epochs": "3"}
	spec.Job.Register = &Register{Model: "grid-model", Aliases: []string{"candidate"}}
	s, err := m.SubmitStudy(spec)
	if err != nil {
		t.Fatal(err)
	}
	s = waitStudy(t, m, s.ID)
	st := &s.Status
	if st.Phase != PhaseSucceeded || st.StopReason != StopMaxTrials || len(st.Trials) != 8 || st.Best != 3 || *st.BestValue != 1 {
		t.Fatalf("study: %+v", st)
	}
	if c := condition(t, Job{ID: s.ID, Status: st.JobStatus}, ConditionSucceeded); c.Reason != StopMaxTrials ||
		!strings.Contains(c.Message, "best trial 3") || !strings.Contains(c.Message, "loss=1") || !strings.Contains(c.Message, "registered grid-model version 1") {
		t.Fatalf("condition: %+v", c)
	}
	for i, tr := range st.Trials {
		if tr.Number != i+1 || tr.Phase != PhaseSucceeded || tr.Value == nil {
			t.Fatalf("trial %d: %+v", i+1, tr)
		}
	}
	best := st.Trials[2]
	if best.Params["x"] != "1" || best.Params["y"] != "1" {
		t.Fatalf("best trial: %+v", best)
	}
	jobs := m.Jobs(JobFilter{Study: s.ID})
	if len(jobs) != 8 || jobs[0].Spec.Register != nil || jobs[0].Spec.Hyperparameters["epochs"] != "3" {
		t.Fatalf("trial jobs: %d", len(jobs))
	}
	// Sampled integers and numeric choices reach the trial as numbers.
	if hp := jobs[0].Spec.Hyperparameters; hp["y"] != "1" || hp["x"] != "3" {
		t.Fatalf("trial hyperparameters %v", hp)
	}
	v, err := reg.VersionByAlias(context.Background(), "grid-model", "candidate")
	if err != nil {
		t.Fatal(err)
	}
	if v.TrainingJob != best.JobID || v.Params["x"] != "1" || v.Params["epochs"] != "3" || v.Metrics["loss"] != 1 {
		t.Fatalf("registered version: %+v", v)
	}
	if tags := v.Tags; len(tags) != 2 || tags[0] != (registry.Tag{Key: "lariat.study", Value: s.ID}) || tags[1].Value != "3" {
		t.Fatalf("tags: %+v", tags)
	}
	if s.Status.Model == nil || s.Status.Model.Version != "1" || s.Status.Metrics["loss"] != 1 {
		t.Fatalf("study model: %+v", s.Status)
	}
}

func TestStudyEarlyStop(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(2), nil)

	// The goal is reached by trial 3 (x=1, y=1); one trial at a time, so no more run.
	spec := lossStudy("goal")
	spec.Parallel = 1
	spec.EarlyStop.Target = fptr(1)
	s, err := m.SubmitStudy(spec)
	if err != nil {
		t.Fatal(err)
	}
	s = waitStudy(t, m, s.ID)
	if s.Status.Phase != PhaseSucceeded || s.Status.StopReason != StopGoalReached || len(s.Status.Trials) != 3 || s.Status.Best != 3 {
		t.Fatalf("goal study: %+v", s.Status)
	}

	// Random search over x in [0, 1] with loss = x: stops after 3 trials without improvement.
	spec = StudySpec{
		Name:      "patience",
		Job:       shellJob("", `printf '{"loss": %s}' "$LARIAT_HP_X" > "$LARIAT_METRICS_FILE"`),
		Space:     map[string]ParamSpace{"x": {Type: ParamFloat, Min: fptr(0), Max: fptr(1)}},
		Seed:      7,
		MaxTrials: 200,
		Objective: Objective{Metric: "loss", Goal: GoalMinimize},
		EarlyStop: EarlyStop{Patience: 3},
	}
	s, err = m.SubmitStudy(spec)
	if err != nil {
		t.Fatal(err)
	}
	s = waitStudy(t, m, s.ID)
	st := &s.Status
	n := len(st.Trials)
	if st.Phase != PhaseSucceeded || st.StopReason != StopNoImprovement || n >= 200 || st.Best != n-3 {
		t.Fatalf("patience study: %d trials, best %d, %+v", n, st.Best, st.StopReason)
	}
	sm := newSampler(spec.Space, SearchRandom, 7)
	for i, tr := range st.Trials {
		if tr.Params["x"] != sm.trial(i + 1)["x"] {
			t.Fatalf("trial %d params %v, sampler says %v", i+1, tr.Params, sm.trial(i+1))
		}
	}
}

func TestStudyFailures(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(2), nil)
	spec := lossStudy("broken")
	spec.Job = shellJob("", "exit 4")
	spec.MaxTrials = 3
	s, err := m.SubmitStudy(spec)
	if err != nil {
		t.Fatal(err)
	}
	s = waitStudy(t, m, s.ID)
	if s.Status.Phase != PhaseFailed || len(s.Status.Trials) != 3 || !strings.Contains(s.Status.Trials[0].Message, "exit code 4") {
		t.Fatalf("study: %+v", s.Status)
	}
	if c := condition(t, Job{ID: s.ID, Status: s.Status.JobStatus}, ConditionFailed); c.Reason != StopNoSuccess {
		t.Fatalf("condition: %+v", c)
	}

	// Trials without the objective metric count as failed.
	spec = lossStudy("nometric")
	spec.Objective.Metric = "auc"
	spec.MaxTrials = 2
	s, err = m.SubmitStudy(spec)
	if err != nil {
		t.Fatal(err)
	}
	s = waitStudy(t, m, s.ID)
	if s.Status.Phase != PhaseFailed || s.Status.Trials[0].Message != `its metrics have no "auc"` {
		t.Fatalf("study: %+v", s.Status)
	}

	// A study the backend cannot run is rejected at once.
	spec.Job.Command = nil
	spec.Job.Image = "x:1"
	if _, err := m.SubmitStudy(spec); err == nil || !strings.Contains(err.Error(), "job.command") {
		t.Fatalf("bad template: %v", err)
	}
}

func TestStudyCancel(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(4), nil)
	spec := lossStudy("cancel")
	spec.Job = shellJob("", gateScript)
	spec.Job.Env = map[string]string{"GATE": filepath.Join(t.TempDir(), "never")}
	s, err := m.SubmitStudy(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two running trials", func() bool { return len(m.Jobs(JobFilter{Study: s.ID, Phase: PhaseRunning})) == 2 })
	if _, err := m.CancelStudy(s.ID); err != nil {
		t.Fatal(err)
	}
	s = waitStudy(t, m, s.ID)
	if s.Status.Phase != PhaseFailed || s.Status.StopReason != ReasonCancelled {
		t.Fatalf("study: %+v", s.Status)
	}
	for _, j := range m.Jobs(JobFilter{Study: s.ID}) {
		if j = waitJob(t, m, j.ID); condition(t, j, ConditionFailed).Reason != ReasonCancelled {
			t.Fatalf("trial %s: %+v", j.ID, j.Status)
		}
	}
	if _, err := m.CancelStudy(s.ID); err == nil {
		t.Fatal("cancelling a finished study succeeded")
	}
}

func TestStudyResume(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(t.TempDir(), "gate")
	spec := lossStudy("resume")
	spec.Parallel = 1
	spec.MaxTrials = 3
	spec.Job = shellJob("", gateScript+`printf '{"loss": %s}' "$LARIAT_HP_Y" > "$LARIAT_METRICS_FILE"`)
	spec.Job.Env = map[string]string{"GATE": gate}

	m1, err := NewManager(Options{StateDir: dir, Backend: newLocal(1), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m1.SubmitStudy(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first trial to run", func() bool { return len(m1.Jobs(JobFilter{Study: s.ID, Phase: PhaseRunning})) == 1 })
	m1.Close()

	m2 := newManager(t, dir, newLocal(1), nil)
	touch(t, gate)
	s = waitStudy(t, m2, s.ID)
	if s.Status.Phase != PhaseSucceeded || len(s.Status.Trials) != 3 || s.Status.Best != 1 {
		t.Fatalf("resumed study: %+v", s.Status)
	}
	if n := len(m2.Jobs(JobFilter{Study: s.ID})); n != 3 {
		t.Fatalf("%d trial jobs", n)
	}
}

// TestTrialHyperparameterTypes checks that a trial's sampled values reach
// its job with their types: int and float as numbers, choices as listed.
func TestTrialHyperparameterTypes(t *testing.T) {
	spec, err := ParseStudySpec("study.yaml", []byte(`name: s
job: {command: [x], hyperparameters: {epochs: 200}}
space:
  batch: {type: choice, values: [16, 32]}
  opt: {type: choice, values: [adam, "7"]}
  lr: {type: float, min: 0.1, max: 0.2, points: 2}
  depth: {type: int, min: 3, max: 3}
search: grid
objective: {metric: loss, goal: minimize}
`))
	if err != nil {
		t.Fatal(err)
	}
	var m Manager
	js := m.trialSpec(spec, 4)
	j := &Job{ID: "s-t4-000000", Spec: js}
	var got string
	for _, kv := range JobEnv(j) {
		if kv[0] == EnvHyperparameters {
			got = kv[1]
		}
	}
	if want := `{"batch":16,"depth":3,"epochs":200,"lr":0.2,"opt":"7"}`; got != want {
		t.Fatalf("%s = %s, want %s", EnvHyperparameters, got, want)
	}

	_, err = ParseStudySpec("study.yaml", []byte("name: s\njob: {command: [x]}\nspace: {a: {type: choice, values: [1, \"1\"]}}\n"+
		"objective: {metric: loss, goal: minimize}\n"))
	if err == nil || !strings.Contains(err.Error(), `"1" is listed twice`) {
		t.Fatalf("duplicate choices: %v", err)
	}
}
