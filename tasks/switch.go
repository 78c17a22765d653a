package tasks

import (
	"fmt"
	"reflect"
	"regexp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/jsonutil"
)

func init() {
	Register(Kind{Name: "switch", Inputs: reflect.TypeFor[SwitchInputs](), New: newSwitchTask})
}

// SwitchInputs are the settings of a switch task, a gate: the tasks of the
// first case whose condition holds run; the tasks of the other cases and
// of the default are skipped. The result is {"branch": "<name>"}; the
// answer's X-Lariat-Branch header names the branch.
type SwitchInputs struct {
	// Cases are the cases, tried in order.
	Cases []SwitchCase `yaml:"cases" jsonschema:"required,minItems=1"`
	// Default lists the tasks run when no case matches (branch
	// "default").
	Default []config.String `yaml:"default" jsonschema:"items.pattern=^[A-Za-z_][A-Za-z0-9_]*$"`
}

// SwitchCase is one case of a switch.
type SwitchCase struct {
	// Name is the branch's name (case<i> when left out, i counting from
	// 0): letters, digits, '_', '-' and '.', not "default".
	Name config.String `yaml:"name" jsonschema:"pattern=^[A-Za-z0-9_.-]+$,not=default"`
	// When is the condition: comparisons <ref> <op> <JSON literal> (ops
	// ==, !=, <, <=, >, >=) or bare references (true when present and not
	// false, null, 0 or ""), joined with && and || (&& binds tighter),
	// with optional parentheses. References: .request.<path>,
	// .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status.
	// E.g. .request.country == "ID" && .tasks.fraud.body.score < 0.5
	When config.String `yaml:"when" jsonschema:"required,minLength=1"`
	// Run lists the tasks this branch runs.
	Run []config.String `yaml:"run" jsonschema:"items.pattern=^[A-Za-z_][A-Za-z0-9_]*$"`
}

// branchNameRe restricts branch names to what X-Lariat-Branch carries
// without quoting.
var branchNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

type switchTask struct {
	conds    []*Condition
	branches []Branch
	// bodies[i] is the result of branch i.
	bodies [][]byte
}

var (
	_ Gate      = (*switchTask)(nil)
	_ Describer = (*switchTask)(nil)
)

// Describe implements Describer: how many cases the switch has.
func (t *switchTask) Describe() Detail {
	return Detail{Target: fmt.Sprintf("%d cases + default", len(t.conds))}
}

func newSwitchTask(s *Spec) (Task, error) {
	var in SwitchInputs
	if err := s.Decode(&in); err != nil {
		return nil, err
	}
	if len(in.Cases) == 0 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.cases: give at least one case {when: <condition>, run: [tasks]}")
	}
	t := &switchTask{}
	seen := map[string]bool{"default": true}
	for i, c := range in.Cases {
		name := c.Name.Value
		if name == "" {
			name = fmt.Sprintf("case%d", i)
		} else if !branchNameRe.MatchString(name) {
			return nil, s.Errorf(c.Name.Pos, "inputs.cases[%d].name %q: use letters, digits, '_', '-' and '.'", i, name)
		}
		if seen[name] {
			return nil, s.Errorf(c.Name.Pos, "inputs.cases[%d]: branch name %q is taken", i, name)
		}
		seen[name] = true
		if c.When.Value == "" {
			return nil, s.Errorf(c.When.Pos, "inputs.cases[%d].when is required, e.g. '.request.country == \"ID\"'", i)
		}
		cond, err := CompileCondition(c.When.Value, s.Scope)
		if err != nil {
			return nil, s.Errorf(c.When.Pos, "inputs.cases[%d].when: %v", i, err)
		}
		t.conds = append(t.conds, cond)
		t.branches = append(t.branches, Branch{Name: name, Tasks: c.Run})
	}
	t.branches = append(t.branches, Branch{Name: "default", Tasks: in.Default})
	for _, b := range t.branches {
		t.bodies = append(t.bodies, branchBody(b.Name))
	}
	return t, nil
}

// branchBody is a gate's result for branch name: {"branch":"name"}.
func branchBody(name string) []byte {
	b := append([]byte(nil), `{"branch":`...)
	b = jsonutil.AppendString(b, name)
	return append(b, '}')
}

// Branches lists the cases' branches, then the default.
func (t *switchTask) Branches() []Branch { return t.branches }

// Run picks the first case whose condition holds, or the default.
func (t *switchTask) Run(x *Exchange, r *Result) error {
	i := len(t.conds)
	for k, c := range t.conds {
		if c.Eval(x) {
			i = k
			break
		}
	}
	r.Branch, r.BranchName = i, t.branches[i].Name
	r.Body = append(r.Body[:0], t.bodies[i]...)
	r.Status = 200
	r.Attempts = 1
	return nil
}
