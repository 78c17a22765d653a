package tasks

import (
	"math/rand/v2"
	"reflect"
	"strconv"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/lazymetric"
	"github.com/lariat-gw/lariat/internal/stickyhash"
)

func init() {
	Register(Kind{Name: "split", Inputs: reflect.TypeFor[SplitInputs](), New: newSplitTask})
}

// SplitInputs are the settings of a split task, a gate for weighted
// traffic split (canary, A/B test): the tasks of one arm run, chosen by
// weight, the others' are skipped. The result is {"branch": "<arm>"}; the
// arm shows in X-Lariat-Branch and lariat_split_arm_total{route,task,arm}.
type SplitInputs struct {
	// Arms are the arms, at least two; their weights must add up to more
	// than 0.
	Arms []SplitArm `yaml:"arms" jsonschema:"required,minItems=2"`
	// Sticky is a template (plain text) whose value picks the arm by hash,
	// so the same key always gets the same arm, e.g.
	// '{{ .request.user.id }}'. Random when left out or when it renders
	// empty.
	Sticky config.String `yaml:"sticky"`
}

// SplitArm is one arm of a split.
type SplitArm struct {
	// Name is the arm's name: letters, digits, '_', '-' and '.'.
	Name config.String `yaml:"name" jsonschema:"required,pattern=^[A-Za-z0-9_.-]+$"`
	// Weight is the arm's share: weight / sum of weights (0 when left
	// out).
	Weight int `yaml:"weight" jsonschema:"minimum=0,maximum=1000000"`
	// Run lists the tasks this arm runs.
	Run []config.String `yaml:"run" jsonschema:"items.pattern=^[A-Za-z_][A-Za-z0-9_]*$"`
}

type splitTask struct {
	// cum[i] is the sum of the weights of arms 0..i.
	cum      []uint64
	total    uint64
	sticky   *Template
	branches []Branch
	bodies   [][]byte
	counters []*lazymetric.Counter
}

var (
	_ Gate      = (*splitTask)(nil)
	_ Describer = (*splitTask)(nil)
)

// Describe implements Describer: the arms with their weights.
func (t *splitTask) Describe() Detail {
	var b []byte
	prev := uint64(0)
	for i, br := range t.branches {
		if i > 0 {
			b = append(b, " / "...)
		}
		b = append(b, br.Name...)
		b = append(b, ' ')
		b = strconv.AppendUint(b, t.cum[i]-prev, 10)
		prev = t.cum[i]
	}
	return Detail{Target: string(b)}
}

func newSplitTask(s *Spec) (Task, error) {
	var in SplitInputs
	if err := s.Decode(&in); err != nil {
		return nil, err
	}
	if len(in.Arms) < 2 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.arms: give at least two arms {name, weight, run}")
	}
	t := &splitTask{}
	seen := map[string]bool{}
	for i, a := range in.Arms {
		switch {
		case a.Name.Value == "":
			return nil, s.Errorf(s.Task.NamePos, "inputs.arms[%d].name is required", i)
		case !branchNameRe.MatchString(a.Name.Value):
			return nil, s.Errorf(a.Name.Pos, "inputs.arms[%d].name %q: use letters, digits, '_', '-' and '.'", i, a.Name.Value)
		case seen[a.Name.Value]:
			return nil, s.Errorf(a.Name.Pos, "inputs.arms[%d]: duplicate arm %q", i, a.Name.Value)
		case a.Weight < 0 || a.Weight > 1_000_000:
			return nil, s.Errorf(a.Name.Pos, "inputs.arms[%d].weight must be between 0 and 1000000, got %d", i, a.Weight)
		}
		seen[a.Name.Value] = true
		t.total += uint64(a.Weight)
		t.cum = append(t.cum, t.total)
		t.branches = append(t.branches, Branch{Name: a.Name.Value, Tasks: a.Run})
		t.bodies = append(t.bodies, branchBody(a.Name.Value))
		t.counters = append(t.counters, lazymetric.NewCounter(s.Metrics, `lariat_split_arm_total{`+s.Labels+`,arm=`+strconv.Quote(a.Name.Value)+`}`))
	}
	if t.total == 0 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.arms: the weights add up to 0; give at least one arm a positive weight")
	}
	if in.Sticky.Value != "" {
		var err error
		if t.sticky, err = s.Template("sticky", in.Sticky, ModeText); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Branches lists the arms.
func (t *splitTask) Branches() []Branch { return t.branches }

// Run picks an arm: by the hash of the sticky key, or at random.
func (t *splitTask) Run(x *Exchange, r *Result) error {
	var v uint64
	if t.sticky != nil {
		r.scratch = t.sticky.Append(r.scratch[:0], x)
	}
	if t.sticky != nil && len(r.scratch) > 0 {
		v = stickyhash.Sum64(splitHashOffset, r.scratch) % t.total
	} else {
		v = rand.Uint64N(t.total)
	}
	i := 0
	for v >= t.cum[i] {
		i++
	}
	t.counters[i].Inc()
	r.Branch, r.BranchName = i, t.branches[i].Name
	r.Body = append(r.Body[:0], t.bodies[i]...)
	r.Status = 200
	r.Attempts = 1
	return nil
}

// splitHashOffset is the FNV offset of the split arms' sticky hash; the
// prediction log samples with another, so that the two decide
// independently for the same key.
const splitHashOffset = 14695981039346656037
