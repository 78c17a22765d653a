package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ReportSchema identifies the JSON layout written by Report.WriteJSON.
const ReportSchema = "lariat-bench/v1"

// Report puts one or more runs side by side, e.g. the same load through the
// gateway ("lariat") and straight to the upstream ("direct"), with each run's
// ratios to a baseline run.
type Report struct {
	Schema    string    `json:"schema"`
	Title     string    `json:"title"`
	Generated time.Time `json:"generated"`
	// Notes are free-form lines shown under the title, e.g. the setup of a
	// scenario and its targets.
	Notes []string `json:"notes,omitempty"`
	// Baseline names the run the ratios are relative to.
	Baseline string    `json:"baseline,omitempty"`
	Runs     []*Result `json:"runs"`
	// Ratios has one entry per run other than the baseline.
	Ratios []Ratio `json:"ratios,omitempty"`
}

// Ratio is a run's figures divided by the baseline's. A figure is 0 when
// the baseline's is 0.
type Ratio struct {
	Run        string  `json:"run"`
	Baseline   string  `json:"baseline"`
	Throughput float64 `json:"throughput"`
	Mean       float64 `json:"mean"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	P99        float64 `json:"p99"`
	P999       float64 `json:"p99_9"`
	Max        float64 `json:"max"`
}

// NewReport builds a report of runs, whose names must be distinct. Ratios are
// relative to the run named baseline, or to the first run when baseline is
// empty.
func NewReport(title, baseline string, runs ...*Result) (*Report, error) {
	if len(runs) == 0 {
		return nil, errors.New("a report needs at least one run")
	}
	seen := make(map[string]bool, len(runs))
	var base *Result
	for _, r := range runs {
		if r == nil {
			return nil, errors.New("a report run is nil")
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("two runs are named %q: run names must be distinct", r.Name)
		}
		seen[r.Name] = true
		if r.Name == baseline {
			base = r
		}
	}
	if baseline == "" {
		base = runs[0]
	}
	if base == nil {
		return nil, fmt.Errorf("baseline run %q is not in the report", baseline)
	}
	rep := &Report{
		Schema:    ReportSchema,
		Title:     title,
		Generated: time.Now().Round(0),
		Runs:      runs,
	}
	if len(runs) > 1 {
		rep.Baseline = base.Name
		for _, r := range runs {
			if r != base {
				rep.Ratios = append(rep.Ratios, newRatio(r, base))
			}
		}
	}
	return rep, nil
}

func newRatio(r, base *Result) Ratio {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return finite(a / b)
	}
	return Ratio{
		Run:        r.Name,
		Baseline:   base.Name,
		Throughput: div(r.ThroughputRPS, base.ThroughputRPS),
		Mean:       div(r.Latency.MeanMs, base.Latency.MeanMs),
		P50:        div(r.Latency.P50Ms, base.Latency.P50Ms),
		P90:        div(r.Latency.P90Ms, base.Latency.P90Ms),
		P99:        div(r.Latency.P99Ms, base.Latency.P99Ms),
		P999:       div(r.Latency.P999Ms, base.Latency.P999Ms),
		Max:        div(r.Latency.MaxMs, base.Latency.MaxMs),
	}
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("cannot write report json: %w", err)
	}
	return nil
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(r io.Reader) (*Report, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var rep Report
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("cannot parse report json: %w", err)
	}
	if rep.Schema != ReportSchema {
		return nil, fmt.Errorf("report schema is %q, want %q", rep.Schema, ReportSchema)
	}
	for i, run := range rep.Runs {
		if run == nil {
			return nil, fmt.Errorf("report run %d is null", i)
		}
	}
	return &rep, nil
}
