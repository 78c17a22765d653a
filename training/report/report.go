// Package report measures model versions against their experiments from a
// prediction log: per route and per variant (the arms taken and the model
// versions that answered) it counts requests, error and default rates,
// latency percentiles and the distribution of a chosen output, and with
// outcome labels the accuracy, AUC and log-loss of a score output, with
// 95% confidence intervals and tests of the differences between variants.
// It writes JSON and a self-contained HTML page.
package report

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/predlog/sink"
	"github.com/lariat-gw/lariat/training/dataset"
)

// Options say what to report on.
type Options struct {
	// Predictions is a prediction log folder (file:// sink) or one file.
	Predictions string
	// Route keeps only this route (default: all).
	Route string
	// Output is the logged output whose distribution is shown (a log
	// outputs path such as response.body.score); by default the first
	// numeric output of each route.
	Output string
	// Labels is an optional CSV file of outcomes with the On column (the
	// request id) and the Label column (0 or 1).
	Labels, On, Label string
	// Score is the logged output read as the predicted probability of
	// label 1 (default: Output).
	Score string
	// Bins is the number of histogram bins of the distribution (default 20).
	Bins int
	// Alpha is the significance level of the tests (default 0.05).
	Alpha float64
}

// Report is the result, as written to JSON.
type Report struct {
	Generated   time.Time `json:"generated"`
	Predictions string    `json:"predictions"`
	Labels      string    `json:"labels,omitempty"`
	Alpha       float64   `json:"alpha"`
	Routes      []*Route  `json:"routes"`
}

// Route is the report of one route.
type Route struct {
	Route string `json:"route"`
	// Versions lists the route versions (file hashes) seen.
	Versions []string `json:"versions"`
	// Output and Score name the outputs used.
	Output string `json:"output,omitempty"`
	Score  string `json:"score,omitempty"`
	// Variants are ordered by requests, largest first; the first is the
	// baseline of the comparisons.
	Variants    []*Variant    `json:"variants"`
	Comparisons []*Comparison `json:"comparisons,omitempty"`
}

// Variant is one way a route answered: the arms its gates took and the
// model versions that answered.
type Variant struct {
	Name         string            `json:"name"`
	Arms         map[string]string `json:"arms,omitempty"`
	Models       map[string]string `json:"models,omitempty"`
	Requests     int               `json:"requests"`
	Errors       int               `json:"errors"`
	ErrorRate    Estimate          `json:"error_rate"`
	Defaulted    int               `json:"defaulted"`
	DefaultRate  Estimate          `json:"default_rate"`
	LatencyP50Ms float64           `json:"latency_p50_ms"`
	LatencyP99Ms float64           `json:"latency_p99_ms"`
	Output       *Distribution     `json:"output,omitempty"`
	Labelled     int               `json:"labelled,omitempty"`
	Accuracy     *Estimate         `json:"accuracy,omitempty"`
	AUC          *Estimate         `json:"auc,omitempty"`
	LogLoss      *Estimate         `json:"log_loss,omitempty"`

	latencies []float64
	outputs   []float64
	scored    []scored
}

type scored struct{ p, y float64 }

// Estimate is a value with its 95% confidence interval.
type Estimate struct {
	Value float64 `json:"value"`
	Low   float64 `json:"low"`
	High  float64 `json:"high"`
}

// Distribution summarizes the values of an output.
type Distribution struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	// Bins share their edges across the variants of a route.
	Bins []Bin `json:"bins"`
}

// Bin is one histogram bin, [Low, High).
type Bin struct {
	Low   float64 `json:"low"`
	High  float64 `json:"high"`
	Count int     `json:"count"`
}

// Comparison tests the difference of a metric between a variant and the
// route's baseline variant.
type Comparison struct {
	Metric   string  `json:"metric"`
	Baseline string  `json:"baseline"`
	Variant  string  `json:"variant"`
	Delta    float64 `json:"delta"`
	// Test names the test: two-proportion z, Welch z, or Hanley-McNeil z.
	Test        string  `json:"test"`
	PValue      float64 `json:"p_value"`
	Significant bool    `json:"significant"`
}

// Build reads the log (and labels) and computes the report.
func Build(o Options) (*Report, error) {
	if o.Bins <= 0 {
		o.Bins = 20
	}
	if o.Alpha <= 0 || o.Alpha >= 1 {
		o.Alpha = 0.05
	}
	if o.On == "" {
		o.On = "request_id"
	}
	if o.Label == "" {
		o.Label = "label"
	}
	if o.Score == "" {
		o.Score = o.Output
	}
	labels := map[string]float64{}
	if o.Labels != "" {
		header, rows, err := dataset.ReadLabels(o.Labels)
		if err != nil {
			return nil, err
		}
		on, li := slices.Index(header, o.On), slices.Index(header, o.Label)
		if on < 0 || li < 0 {
			return nil, fmt.Errorf("labels %s: want columns %q and %q (columns: %s)", o.Labels, o.On, o.Label, strings.Join(header, ", "))
		}
		for n, r := range rows {
			v, err := strconv.ParseFloat(r[li], 64)
			if err != nil || (v != 0 && v != 1) {
				return nil, fmt.Errorf("labels %s:%d: label %q is not 0 or 1", o.Labels, n+2, r[li])
			}
			labels[r[on]] = v
		}
	}
	rep := &Report{Generated: time.Now().UTC(), Predictions: o.Predictions, Labels: o.Labels, Alpha: o.Alpha}
	routes := map[string]*Route{}
	variants := map[string]map[string]*Variant{}
	err := sink.Read(o.Predictions, func(r *predlog.Record) error {
		if o.Route != "" && r.Route != o.Route {
			return nil
		}
		rt := routes[r.Route]
		if rt == nil {
			rt = &Route{Route: r.Route, Output: o.Output, Score: o.Score}
			routes[r.Route] = rt
			variants[r.Route] = map[string]*Variant{}
			rep.Routes = append(rep.Routes, rt)
		}
		if !slices.Contains(rt.Versions, r.RouteVersion) {
			rt.Versions = append(rt.Versions, r.RouteVersion)
		}
		if rt.Output == "" {
			for _, out := range r.Outputs {
				if gjson.Parse(string(out.Value)).Type == gjson.Number {
					rt.Output = out.Path
					if rt.Score == "" {
						rt.Score = out.Path
					}
					break
				}
			}
		}
		name, arms, models := variantOf(r)
		v := variants[r.Route][name]
		if v == nil {
			v = &Variant{Name: name, Arms: arms, Models: models}
			variants[r.Route][name] = v
			rt.Variants = append(rt.Variants, v)
		}
		v.Requests++
		if r.Status >= 500 {
			v.Errors++
		}
		for _, t := range r.Tasks {
			if t.Defaulted {
				v.Defaulted++
				break
			}
		}
		v.latencies = append(v.latencies, r.LatencyMs)
		if x, ok := outputNumber(r, rt.Output); ok {
			v.outputs = append(v.outputs, x)
		}
		if y, ok := labels[r.RequestID]; ok {
			if p, ok := outputNumber(r, rt.Score); ok {
				v.scored = append(v.scored, scored{p: p, y: y})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(rep.Routes, func(i, j int) bool { return rep.Routes[i].Route < rep.Routes[j].Route })
	for _, rt := range rep.Routes {
		rt.finish(o)
	}
	return rep, nil
}

// variantOf names the way r was answered: its arms, then the model
// versions its tasks called (whether they answered or failed), e.g.
// "experiment=canary rank=driver-rank/4".
func variantOf(r *predlog.Record) (string, map[string]string, map[string]string) {
	var parts []string
	var arms, models map[string]string
	for _, a := range r.Arms {
		if arms == nil {
			arms = map[string]string{}
		}
		arms[a.Gate] = a.Arm
		parts = append(parts, a.Gate+"="+a.Arm)
	}
	for _, t := range r.Tasks {
		if t.Model == "" || t.Status == predlog.TaskSkipped {
			continue
		}
		if models == nil {
			models = map[string]string{}
		}
		models[t.Name] = t.Model + "/" + t.Version
		parts = append(parts, t.Name+"="+t.Model+"/"+t.Version)
	}
	if len(parts) == 0 {
		return "all", nil, nil
	}
	return strings.Join(parts, " "), arms, models
}

func outputNumber(r *predlog.Record, path string) (float64, bool) {
	for _, o := range r.Outputs {
		if o.Path == path {
			v := gjson.Parse(string(o.Value))
			return v.Float(), v.Type == gjson.Number
		}
	}
	return 0, false
}

func (rt *Route) finish(o Options) {
	sort.SliceStable(rt.Variants, func(i, j int) bool { return rt.Variants[i].Requests > rt.Variants[j].Requests })
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range rt.Variants {
		for _, x := range v.outputs {
			lo, hi = min(lo, x), max(hi, x)
		}
	}
	for _, v := range rt.Variants {
		slices.Sort(v.latencies)
		v.LatencyP50Ms, v.LatencyP99Ms = quantile(v.latencies, 0.5), quantile(v.latencies, 0.99)
		v.ErrorRate = wilson(v.Errors, v.Requests)
		v.DefaultRate = wilson(v.Defaulted, v.Requests)
		if len(v.outputs) > 0 {
			v.Output = distribution(v.outputs, lo, hi, o.Bins)
		}
		if len(v.scored) > 0 {
			v.Labelled = len(v.scored)
			acc, auc, ll := evaluate(v.scored)
			v.Accuracy, v.AUC, v.LogLoss = &acc, auc, &ll
		}
	}
	if len(rt.Variants) < 2 {
		return
	}
	base := rt.Variants[0]
	for _, v := range rt.Variants[1:] {
		add := func(metric, test string, delta, z float64) {
			p := math.Erfc(math.Abs(z) / math.Sqrt2)
			if math.IsNaN(p) {
				p = 1
			}
			rt.Comparisons = append(rt.Comparisons, &Comparison{Metric: metric, Baseline: base.Name, Variant: v.Name,
				Delta: delta, Test: test, PValue: p, Significant: p < o.Alpha})
		}
		d, z := twoProportions(v.Errors, v.Requests, base.Errors, base.Requests)
		add("error_rate", "two-proportion z", d, z)
		if base.Accuracy != nil && v.Accuracy != nil {
			ca, cb := correct(v.scored), correct(base.scored)
			d, z := twoProportions(ca, len(v.scored), cb, len(base.scored))
			add("accuracy", "two-proportion z", d, z)
			if v.AUC != nil && base.AUC != nil {
				sa, sb := aucSE(v.AUC.Value, v.scored), aucSE(base.AUC.Value, base.scored)
				add("auc", "Hanley-McNeil z", v.AUC.Value-base.AUC.Value, (v.AUC.Value-base.AUC.Value)/math.Sqrt(sa*sa+sb*sb))
			}
			ma, va := lossMoments(v.scored)
			mb, vb := lossMoments(base.scored)
			add("log_loss", "Welch z", ma-mb, (ma-mb)/math.Sqrt(va/float64(len(v.scored))+vb/float64(len(base.scored))))
		}
	}
}

// quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// z95 is the two-sided 95% normal quantile.
const z95 = 1.959963984540054

// wilson is a proportion with its Wilson score interval.
func wilson(k, n int) Estimate {
	if n == 0 {
		return Estimate{}
	}
	p, nf := float64(k)/float64(n), float64(n)
	den := 1 + z95*z95/nf
	c := (p + z95*z95/(2*nf)) / den
	h := z95 * math.Sqrt(p*(1-p)/nf+z95*z95/(4*nf*nf)) / den
	return Estimate{Value: p, Low: max(0, c-h), High: min(1, c+h)}
}

// twoProportions returns a-b of the proportions and the z statistic of the
// pooled two-proportion test.
func twoProportions(ka, na, kb, nb int) (float64, float64) {
	if na == 0 || nb == 0 {
		return 0, 0
	}
	pa, pb := float64(ka)/float64(na), float64(kb)/float64(nb)
	pool := float64(ka+kb) / float64(na+nb)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(na) + 1/float64(nb)))
	if se == 0 {
		return pa - pb, 0
	}
	return pa - pb, (pa - pb) / se
}

func distribution(xs []float64, lo, hi float64, bins int) *Distribution {
	s := slices.Clone(xs)
	slices.Sort(s)
	d := &Distribution{Count: len(s), P50: quantile(s, 0.5), Min: s[0], Max: s[len(s)-1]}
	for _, x := range s {
		d.Mean += x
	}
	d.Mean /= float64(len(s))
	if hi <= lo {
		hi = lo + 1
	}
	w := (hi - lo) / float64(bins)
	d.Bins = make([]Bin, bins)
	for i := range d.Bins {
		d.Bins[i] = Bin{Low: lo + float64(i)*w, High: lo + float64(i+1)*w}
	}
	for _, x := range s {
		i := min(int((x-lo)/w), bins-1)
		d.Bins[i].Count++
	}
	return d
}

// clampP keeps probabilities away from 0 and 1 for the log-loss.
func clampP(p float64) float64 { return min(max(p, 1e-15), 1-1e-15) }

func correct(s []scored) int {
	k := 0
	for _, e := range s {
		if (e.p >= 0.5) == (e.y == 1) {
			k++
		}
	}
	return k
}

func lossMoments(s []scored) (mean, variance float64) {
	for _, e := range s {
		mean += loss(e)
	}
	mean /= float64(len(s))
	for _, e := range s {
		d := loss(e) - mean
		variance += d * d
	}
	if len(s) > 1 {
		variance /= float64(len(s) - 1)
	}
	return mean, variance
}

func loss(e scored) float64 {
	p := clampP(e.p)
	return -(e.y*math.Log(p) + (1-e.y)*math.Log(1-p))
}

// evaluate returns accuracy (threshold 0.5, Wilson interval), AUC
// (Hanley-McNeil interval; nil when one class is missing) and log-loss
// (normal interval of the mean).
func evaluate(s []scored) (acc Estimate, auc *Estimate, ll Estimate) {
	acc = wilson(correct(s), len(s))
	if a := aucOf(s); !math.IsNaN(a) {
		se := aucSE(a, s)
		auc = &Estimate{Value: a, Low: max(0, a-z95*se), High: min(1, a+z95*se)}
	}
	m, v := lossMoments(s)
	h := z95 * math.Sqrt(v/float64(len(s)))
	ll = Estimate{Value: m, Low: max(0, m-h), High: m + h}
	return acc, auc, ll
}

// aucOf is the probability that a positive scores above a negative (ties
// count half), by ranks.
func aucOf(s []scored) float64 {
	sorted := slices.Clone(s)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].p < sorted[j].p })
	var pos, neg, rankSum float64
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].p == sorted[i].p {
			j++
		}
		rank := float64(i+j+1) / 2 // average rank, 1-based
		for k := i; k < j; k++ {
			if sorted[k].y == 1 {
				pos++
				rankSum += rank
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

// aucSE is the Hanley-McNeil (1982) standard error of an AUC.
func aucSE(a float64, s []scored) float64 {
	var n1, n0 float64
	for _, e := range s {
		if e.y == 1 {
			n1++
		} else {
			n0++
		}
	}
	if n1 == 0 || n0 == 0 || math.IsNaN(a) {
		return math.NaN()
	}
	q1, q2 := a/(2-a), 2*a*a/(1+a)
	return math.Sqrt((a*(1-a) + (n1-1)*(q1-a*a) + (n0-1)*(q2-a*a)) / (n1 * n0))
}
