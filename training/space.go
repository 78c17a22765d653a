package training

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
)

// ParamSpace is the range of one hyperparameter.
type ParamSpace struct {
	// Type is int, float or choice.
	Type string `yaml:"type" json:"type"`
	// Min and Max bound int and float parameters (inclusive).
	Min *float64 `yaml:"min" json:"min,omitempty"`
	Max *float64 `yaml:"max" json:"max,omitempty"`
	// Log samples (and spaces grid points) on a log scale; Min must be positive.
	Log bool `yaml:"log" json:"log,omitempty"`
	// Values are the choices of a choice parameter; each reaches the job
	// with its type (values: [16, 32] are numbers, [adam, sgd] strings).
	Values []Hyperparameter `yaml:"values" json:"values,omitempty"`
	// Points is the number of grid values over [Min, Max]. Required for float
	// parameters in a grid search; int parameters default to every integer.
	Points int `yaml:"points" json:"points,omitempty"`
}

// Parameter types.
const (
	ParamInt    = "int"
	ParamFloat  = "float"
	ParamChoice = "choice"
)

// Search algorithms.
const (
	SearchRandom = "random"
	SearchGrid   = "grid"
)

// maxGridValues bounds the values of one grid parameter and maxGridSize the grid.
const (
	maxGridValues = 1000
	maxGridSize   = 10000
)

func (p *ParamSpace) validate(name string, grid bool, probs *problems) {
	field := "space." + name
	switch p.Type {
	case ParamInt, ParamFloat:
		if p.Min == nil || p.Max == nil {
			probs.add(field, "%s parameters need min and max", p.Type)
			return
		}
		lo, hi := *p.Min, *p.Max
		if lo > hi || (p.Type == ParamFloat && lo == hi) {
			probs.add(field, "min must be below max")
		}
		if p.Type == ParamInt && (lo != math.Trunc(lo) || hi != math.Trunc(hi)) {
			probs.add(field, "int parameters need integer bounds")
		}
		if p.Log && lo <= 0 {
			probs.add(field, "a log scale needs a positive min")
		}
		if len(p.Values) > 0 {
			probs.add(field+".values", "only choice parameters have values")
		}
		if p.Points < 0 || p.Points > maxGridValues {
			probs.add(field+".points", "must be between 1 and %d", maxGridValues)
		}
		if grid && p.Type == ParamFloat && p.Points == 0 {
			probs.add(field+".points", "a grid search needs the number of points of a float parameter")
		}
		if grid && p.Type == ParamInt && p.Points == 0 && hi-lo+1 > maxGridValues {
			probs.add(field+".points", "the range has more than %d integers: give points", maxGridValues)
		}
	case ParamChoice:
		if len(p.Values) == 0 {
			probs.add(field+".values", "a choice parameter needs values")
		}
		seen := map[string]bool{}
		for _, v := range p.Values {
			if seen[v.Text()] {
				probs.add(field+".values", "%q is listed twice", v.Text())
			}
			seen[v.Text()] = true
		}
		if p.Min != nil || p.Max != nil || p.Log || p.Points != 0 {
			probs.add(field, "choice parameters take only values")
		}
	case "":
		probs.add(field+".type", "is required: int, float or choice")
	default:
		probs.add(field+".type", "%q is not int, float or choice", p.Type)
	}
}

// gridValues returns the parameter's values in a grid search.
func (p *ParamSpace) gridValues() []string {
	if p.Type == ParamChoice {
		out := make([]string, len(p.Values))
		for i, v := range p.Values {
			out[i] = v.Text()
		}
		return out
	}
	lo, hi := *p.Min, *p.Max
	n := p.Points
	if p.Type == ParamInt && n == 0 {
		out := make([]string, 0, int(hi-lo)+1)
		for v := lo; v <= hi; v++ {
			out = append(out, strconv.FormatInt(int64(v), 10))
		}
		return out
	}
	var out []string
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		frac := 0.0
		if n > 1 {
			frac = float64(i) / float64(n-1)
		}
		var v float64
		if p.Log {
			v = math.Exp(math.Log(lo) + frac*(math.Log(hi)-math.Log(lo)))
		} else {
			v = lo + frac*(hi-lo)
		}
		s := p.format(v)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// sample draws a random value.
func (p *ParamSpace) sample(r *rand.Rand) string {
	if p.Type == ParamChoice {
		return p.Values[r.IntN(len(p.Values))].Text()
	}
	lo, hi := *p.Min, *p.Max
	if p.Type == ParamInt {
		if p.Log {
			v := math.Floor(math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi+1)-math.Log(lo))))
			return p.format(math.Min(math.Max(v, lo), hi))
		}
		return p.format(lo + float64(r.Int64N(int64(hi-lo)+1)))
	}
	if p.Log {
		return p.format(math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo))))
	}
	return p.format(lo + r.Float64()*(hi-lo))
}

// typed returns the hyperparameter of a sampled value: a number for int
// and float parameters, the listed value for a choice.
func (p *ParamSpace) typed(text string) Hyperparameter {
	if p.Type != ParamChoice {
		return Hyperparameter(text)
	}
	for _, v := range p.Values {
		if v.Text() == text {
			return v
		}
	}
	return StringHyperparameter(text)
}

func (p *ParamSpace) format(v float64) string {
	if p.Type == ParamInt {
		return strconv.FormatInt(int64(math.Round(v)), 10)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// sampler yields the parameters of trial n (numbered from 1). Trials do not
// depend on each other, so a resumed study continues the same sequence.
type sampler struct {
	names  []string
	params []*ParamSpace
	grid   [][]string // grid search: values per parameter
	seed   uint64
}

func newSampler(space map[string]ParamSpace, search string, seed int64) *sampler {
	s := &sampler{seed: uint64(seed)}
	s.names = sortedKeys(space)
	for _, name := range s.names {
		p := space[name]
		s.params = append(s.params, &p)
	}
	if search == SearchGrid {
		for _, p := range s.params {
			s.grid = append(s.grid, p.gridValues())
		}
	}
	return s
}

// size returns the number of grid points, or 0 for a random search.
func (s *sampler) size() int {
	if s.grid == nil {
		return 0
	}
	n := 1
	for _, vals := range s.grid {
		n *= len(vals)
		if n > maxGridSize {
			return maxGridSize + 1
		}
	}
	return n
}

// trial returns the parameters of trial n.
func (s *sampler) trial(n int) map[string]string {
	out := make(map[string]string, len(s.names))
	if s.grid != nil {
		idx := n - 1
		for i := len(s.names) - 1; i >= 0; i-- {
			vals := s.grid[i]
			out[s.names[i]] = vals[idx%len(vals)]
			idx /= len(vals)
		}
		return out
	}
	r := rand.New(rand.NewPCG(s.seed, uint64(n)))
	for i, name := range s.names {
		out[name] = s.params[i].sample(r)
	}
	return out
}

// describeParams formats parameters as "a=1, b=2" in name order.
func describeParams(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s=%s", k, params[k])
	}
	return s
}
