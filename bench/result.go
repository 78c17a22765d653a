package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/lariat-gw/lariat/internal/htmlreport"
)

// Result is one run's measurements. Its JSON field names are stable; they are
// documented in README.md. Durations are in milliseconds (fields ending in
// _ms) or seconds (_s); rates in requests per second.
type Result struct {
	// Name labels the run, e.g. "lariat" or "direct".
	Name   string `json:"name"`
	URL    string `json:"url"`
	Method string `json:"method"`
	Mode   Mode   `json:"mode"`
	// Rate is the open-loop target rate; 0 in closed mode.
	Rate        float64 `json:"rate,omitempty"`
	Connections int     `json:"connections"`
	// DurationS and RequestsLimit are the run's configured bounds (0: none).
	DurationS     float64   `json:"duration_s,omitempty"`
	RequestsLimit int64     `json:"requests_limit,omitempty"`
	TimeoutMs     float64   `json:"timeout_ms"`
	Started       time.Time `json:"started"`
	// ElapsedS runs from the start to the last completed request.
	ElapsedS float64 `json:"elapsed_s"`
	// Interrupted is set when the run was cancelled before its bounds.
	Interrupted bool `json:"interrupted"`

	// Requests counts the requests sent; each one completed with a response,
	// a timeout or an error.
	Requests int64 `json:"requests"`
	// OK counts responses with a status below 400.
	OK int64 `json:"ok"`
	// ThroughputRPS is Requests / ElapsedS.
	ThroughputRPS float64 `json:"throughput_rps"`
	Errors        Errors  `json:"errors"`
	// StatusCodes counts responses by status code, e.g. {"200": 1000}.
	StatusCodes map[string]int64 `json:"status_codes"`

	// Latency covers every request that got a response (any status) or
	// timed out; connection and other errors are counted, not timed. In open
	// mode it runs from the scheduled send time, so generator or server
	// queueing is included; in closed mode from the actual send time.
	Latency Latency `json:"latency"`
	// LatencyOK covers the answers with a status below 400, and
	// LatencyShed the 429 and 503 answers (load the server refused), when
	// the run had both: under overload they tell the admitted requests'
	// latency from how fast the refused ones were refused.
	LatencyOK   *Latency `json:"latency_ok,omitempty"`
	LatencyShed *Latency `json:"latency_shed,omitempty"`
	// ServiceTime (open mode only) is measured from the actual send time: it
	// is what a naive generator would report.
	ServiceTime *Latency `json:"service_time,omitempty"`
	// ServiceTimeShed (open mode, runs with refusals) is ServiceTime of the
	// 429 and 503 answers: how fast the server refused a request once it
	// was sent, without the generator's own lag.
	ServiceTimeShed *Latency `json:"service_time_shed,omitempty"`
	// Generator (open mode only) tells whether the generator kept its
	// schedule.
	Generator *Generator `json:"generator,omitempty"`
	// Deadline counts the answers within Config.Deadline (only when set).
	Deadline *DeadlineCount `json:"deadline,omitempty"`
	// Curve is Latency's percentile distribution, HDR style.
	Curve []CurvePoint `json:"percentile_curve"`
	// Timeline has one entry per second of the run, by completion time.
	Timeline []Second `json:"timeline"`
}

// Errors counts failed requests by kind.
type Errors struct {
	// Total = Status + Timeout + Connection + Other.
	Total int64 `json:"total"`
	// Status counts responses with status >= 400 (see StatusCodes).
	Status int64 `json:"status"`
	// Timeout counts requests without a response within the timeout.
	Timeout int64 `json:"timeout"`
	// Connection counts dial failures and refused, reset or closed
	// connections.
	Connection int64 `json:"connection"`
	// Other counts the rest, e.g. malformed responses.
	Other int64 `json:"other"`
	// Samples holds a few distinct error messages.
	Samples []string `json:"samples,omitempty"`
}

// Latency summarizes a latency histogram.
type Latency struct {
	Count    int64   `json:"count"`
	MinMs    float64 `json:"min_ms"`
	MeanMs   float64 `json:"mean_ms"`
	StdDevMs float64 `json:"stddev_ms"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p99_9_ms"`
	MaxMs    float64 `json:"max_ms"`
	// HDR is the full histogram in microseconds, in HdrHistogram's V2
	// compressed base64 encoding (readable by any HdrHistogram tool).
	HDR string `json:"hdr,omitempty"`
}

// Histogram decodes l.HDR. Values are microseconds.
func (l *Latency) Histogram() (*hdrhistogram.Histogram, error) {
	if l.HDR == "" {
		return nil, fmt.Errorf("latency summary has no histogram")
	}
	h, err := hdrhistogram.Decode([]byte(l.HDR))
	if err != nil {
		return nil, fmt.Errorf("cannot decode latency histogram: %w", err)
	}
	return h, nil
}

// Generator reports how well an open-loop run kept its schedule. Lag is the
// time from a request's scheduled send time to its actual send time; it grows
// when every connection is busy (the server is slow) or the generator is
// short of CPU, and it is part of Latency either way.
type Generator struct {
	// Planned counts the requests scheduled inside the run's window.
	Planned int64 `json:"planned"`
	// Unsent counts planned requests never sent because the run stopped
	// (interrupted, or the grace period after the window ran out).
	Unsent int64 `json:"unsent"`
	// SentRPS is the achieved send rate.
	SentRPS float64 `json:"sent_rps"`
	// Late counts requests sent more than 1ms after their scheduled time.
	Late     int64   `json:"late"`
	LagP50Ms float64 `json:"lag_p50_ms"`
	LagP99Ms float64 `json:"lag_p99_ms"`
	LagMaxMs float64 `json:"lag_max_ms"`
}

// DeadlineCount tells how many requests were answered within a deadline,
// measured like Result.Latency.
type DeadlineCount struct {
	LimitMs float64 `json:"limit_ms"`
	// Met counts responses of any status that arrived within the limit.
	Met int64 `json:"met"`
	// MetOK counts those with a status below 400.
	MetOK int64 `json:"met_ok"`
	// Missed is Requests - Met: late responses, timeouts and failed requests.
	Missed int64 `json:"missed"`
}

// Fraction returns Met / requests, or 0 when nothing was sent.
func (d *DeadlineCount) Fraction() float64 {
	if n := d.Met + d.Missed; n > 0 {
		return float64(d.Met) / float64(n)
	}
	return 0
}

// CurvePoint is one point of the percentile distribution.
type CurvePoint struct {
	Percentile float64 `json:"percentile"`
	LatencyMs  float64 `json:"latency_ms"`
}

// Second is one second of the run, by request completion time.
type Second struct {
	// T is the second's offset from the start of the run.
	T int `json:"t_s"`
	// Requests completed in this second: its throughput. The last entry may
	// cover only part of a second.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Per-second percentiles have 1% precision.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

func usToMs(us int64) float64 { return float64(us) / 1000 }

func summarize(h *hdrhistogram.Histogram, encode bool) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	p := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	l := Latency{
		Count:    h.TotalCount(),
		MinMs:    usToMs(h.Min()),
		MeanMs:   finite(h.Mean() / 1000),
		StdDevMs: finite(h.StdDev() / 1000),
		P50Ms:    usToMs(p[0]),
		P90Ms:    usToMs(p[1]),
		P99Ms:    usToMs(p[2]),
		P999Ms:   usToMs(p[3]),
		MaxMs:    usToMs(h.Max()),
	}
	if encode {
		if b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
			l.HDR = string(b)
		}
	}
	return l
}

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// curve returns the HDR-style percentile distribution of h: five points per
// halving of the remaining tail.
func curve(h *hdrhistogram.Histogram) []CurvePoint {
	if h.TotalCount() == 0 {
		return []CurvePoint{}
	}
	br := h.CumulativeDistributionWithTicks(5)
	pts := make([]CurvePoint, 0, len(br))
	for _, b := range br {
		p := CurvePoint{Percentile: finite(b.Quantile), LatencyMs: usToMs(b.ValueAt)}
		if n := len(pts); n > 0 && pts[n-1].Percentile == p.Percentile {
			pts[n-1] = p
			continue
		}
		pts = append(pts, p)
	}
	return pts
}

func (r *runner) result() *Result {
	cfg := &r.t.cfg
	res := &Result{
		Name:          cfg.Name,
		URL:           cfg.URL,
		Method:        r.t.method,
		Mode:          cfg.Mode,
		Rate:          cfg.Rate,
		Connections:   cfg.Connections,
		DurationS:     cfg.Duration.Seconds(),
		RequestsLimit: cfg.Requests,
		TimeoutMs:     float64(cfg.Timeout) / float64(time.Millisecond),
		Started:       r.start.Round(0),
		Interrupted:   r.intr.Load(),
		StatusCodes:   map[string]int64{},
	}

	lat, latOK, latShed := newHist(histDigits), newHist(histDigits), newHist(histDigits)
	var svc, svcShed, lag *hdrhistogram.Histogram
	if cfg.Mode == ModeOpen {
		svc, svcShed, lag = newHist(histDigits), newHist(histDigits), newHist(secondDigits)
	}
	var status [maxStatus]int64
	var last time.Duration
	var late, met, metOK int64
	for _, w := range r.workers {
		met += w.met
		metOK += w.metOK
		lat.Merge(w.lat)
		latOK.Merge(w.latOK)
		latShed.Merge(w.latShed)
		if svc != nil {
			svc.Merge(w.svc)
			svcShed.Merge(w.svcShed)
			lag.Merge(w.lag)
		}
		for code, n := range w.status {
			status[code] += n
		}
		res.Requests += w.sent
		late += w.late
		res.Errors.Timeout += w.timeouts
		res.Errors.Connection += w.connErrs
		res.Errors.Other += w.otherErrs
		for _, s := range w.samples {
			if len(res.Errors.Samples) < 5 && !slices.Contains(res.Errors.Samples, s) {
				res.Errors.Samples = append(res.Errors.Samples, s)
			}
		}
		last = max(last, w.last)
	}
	for code, n := range status {
		if n == 0 {
			continue
		}
		res.StatusCodes[strconv.Itoa(code)] = n
		if code >= 400 || code < 100 {
			res.Errors.Status += n
		} else {
			res.OK += n
		}
	}
	res.Errors.Total = res.Errors.Status + res.Errors.Timeout + res.Errors.Connection + res.Errors.Other

	if last <= 0 {
		last = time.Since(r.start)
	}
	res.ElapsedS = last.Seconds()
	if res.ElapsedS > 0 {
		res.ThroughputRPS = float64(res.Requests) / res.ElapsedS
	}
	res.Latency = summarize(lat, true)
	res.Curve = curve(lat)
	if latShed.TotalCount() > 0 && latOK.TotalCount() > 0 {
		ok, shed := summarize(latOK, true), summarize(latShed, true)
		res.LatencyOK, res.LatencyShed = &ok, &shed
	}
	if svc != nil {
		s := summarize(svc, true)
		res.ServiceTime = &s
		if svcShed.TotalCount() > 0 {
			s := summarize(svcShed, true)
			res.ServiceTimeShed = &s
		}
		l := summarize(lag, false)
		g := &Generator{
			Planned:  r.planned(),
			Late:     late,
			LagP50Ms: l.P50Ms,
			LagP99Ms: l.P99Ms,
			LagMaxMs: l.MaxMs,
		}
		g.Unsent = max(g.Planned-res.Requests, 0)
		if res.ElapsedS > 0 {
			g.SentRPS = float64(res.Requests) / res.ElapsedS
		}
		res.Generator = g
	}

	if cfg.Deadline > 0 {
		res.Deadline = &DeadlineCount{
			LimitMs: float64(cfg.Deadline) / float64(time.Millisecond),
			Met:     met,
			MetOK:   metOK,
			Missed:  max(res.Requests-met, 0),
		}
	}

	res.Timeline = make([]Second, 0, len(r.tl.secs))
	for i, s := range r.tl.secs {
		sec := Second{T: i, Requests: s.reqs, Errors: s.errs}
		if s.hist != nil && s.hist.TotalCount() > 0 {
			p := s.hist.ValueAtPercentilesSlice([]float64{50, 99})
			sec.P50Ms, sec.P99Ms, sec.MaxMs = usToMs(p[0]), usToMs(p[1]), usToMs(s.hist.Max())
		}
		res.Timeline = append(res.Timeline, sec)
	}
	return res
}

// planned is the number of open-loop slots inside the window.
func (r *runner) planned() int64 {
	n := int64(math.Ceil(float64(r.window) / r.t.interval))
	if r.limit > 0 {
		n = min(n, r.limit)
	}
	return n
}

// Warnings lists what makes the result less trustworthy, in plain words.
func (res *Result) Warnings() []string {
	var ws []string
	if res.Interrupted {
		ws = append(ws, "the run was interrupted before its bounds")
	}
	if g := res.Generator; g != nil {
		if res.Requests > 0 && g.Late*100 > res.Requests {
			ws = append(ws, fmt.Sprintf("%d of %d requests were sent more than 1ms after their scheduled time (lag p99 %s, max %s): "+
				"every connection was busy or the generator was short of CPU; the wait is part of the latency; "+
				"more connections separate the two", g.Late, res.Requests, fmtMs(g.LagP99Ms), fmtMs(g.LagMaxMs)))
		}
		if g.Unsent > 0 {
			ws = append(ws, fmt.Sprintf("%d of %d scheduled requests were never sent", g.Unsent, g.Planned))
		}
	}
	if res.Requests == 0 {
		ws = append(ws, "no request was sent")
	}
	return ws
}

// WriteText writes a human-readable summary of res.
func (res *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s, %s mode", res.Name, res.Method, res.URL, res.Mode)
	if res.Mode == ModeOpen {
		fmt.Fprintf(&b, " at %s rps", fmtNum(res.Rate))
	}
	fmt.Fprintf(&b, ", %d connections\n", res.Connections)
	fmt.Fprintf(&b, "  requests    %d (ok %d) in %.2fs, %s rps\n", res.Requests, res.OK, res.ElapsedS, fmtNum(res.ThroughputRPS))
	writeLatency := func(label string, l *Latency) {
		fmt.Fprintf(&b, "  %-11s mean %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", label,
			fmtMs(l.MeanMs), fmtMs(l.P50Ms), fmtMs(l.P90Ms), fmtMs(l.P99Ms), fmtMs(l.P999Ms), fmtMs(l.MaxMs))
	}
	writeLatency("latency", &res.Latency)
	if res.LatencyOK != nil {
		writeLatency("admitted", res.LatencyOK)
		writeLatency("refused", res.LatencyShed)
	}
	if res.ServiceTime != nil {
		writeLatency("service", res.ServiceTime)
	}
	if res.ServiceTimeShed != nil {
		writeLatency("refused svc", res.ServiceTimeShed)
	}
	e := &res.Errors
	fmt.Fprintf(&b, "  errors      %d (status %d, timeout %d, connection %d, other %d)\n",
		e.Total, e.Status, e.Timeout, e.Connection, e.Other)
	codes := make([]string, 0, len(res.StatusCodes))
	for c := range res.StatusCodes {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	if len(codes) > 0 {
		b.WriteString("  status     ")
		for _, c := range codes {
			fmt.Fprintf(&b, " %s: %d", c, res.StatusCodes[c])
		}
		b.WriteByte('\n')
	}
	for _, s := range e.Samples {
		fmt.Fprintf(&b, "  error       %s\n", s)
	}
	if d := res.Deadline; d != nil {
		fmt.Fprintf(&b, "  deadline    %d of %d (%.2f%%) answered within %s, %d of them ok\n",
			d.Met, d.Met+d.Missed, 100*d.Fraction(), fmtMs(d.LimitMs), d.MetOK)
	}
	if g := res.Generator; g != nil {
		fmt.Fprintf(&b, "  generator   sent %s rps, late %d, lag p99 %s max %s, unsent %d of %d\n",
			fmtNum(g.SentRPS), g.Late, fmtMs(g.LagP99Ms), fmtMs(g.LagMaxMs), g.Unsent, g.Planned)
	}
	for _, ws := range res.Warnings() {
		fmt.Fprintf(&b, "  warning: %s\n", ws)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtMs formats milliseconds with a unit that keeps 3 significant digits.
func fmtMs(ms float64) string { return htmlreport.FormatMs(ms) }

func fmtNum(f float64) string { return htmlreport.FormatNum(f) }

// Merge combines runs of the same load (same URL, method, mode, rate and
// connections), e.g. rounds alternating with another target, into one
// result named name. Counts and histograms are summed, the timelines put end
// to end; the merged generator's lag percentiles are the largest of the
// runs' (their histograms are not kept).
func Merge(name string, runs ...*Result) (*Result, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("nothing to merge")
	}
	first := runs[0]
	out := &Result{
		Name:        name,
		URL:         first.URL,
		Method:      first.Method,
		Mode:        first.Mode,
		Rate:        first.Rate,
		Connections: first.Connections,
		TimeoutMs:   first.TimeoutMs,
		Started:     first.Started,
		StatusCodes: map[string]int64{},
	}
	lat := newHist(histDigits)
	var svc *hdrhistogram.Histogram
	if first.ServiceTime != nil {
		svc = newHist(histDigits)
	}
	for i, r := range runs {
		if r == nil {
			return nil, fmt.Errorf("run %d to merge is nil", i)
		}
		if r.URL != first.URL || r.Method != first.Method || r.Mode != first.Mode || r.Rate != first.Rate ||
			r.Connections != first.Connections || (r.ServiceTime == nil) != (svc == nil) || (r.Deadline == nil) != (first.Deadline == nil) {
			return nil, fmt.Errorf("run %d (%s) is not the same load as run 0 (%s)", i, r.Name, first.Name)
		}
		if err := mergeLatency(lat, &r.Latency); err != nil {
			return nil, fmt.Errorf("run %d: %w", i, err)
		}
		if svc != nil {
			if err := mergeLatency(svc, r.ServiceTime); err != nil {
				return nil, fmt.Errorf("run %d: service time: %w", i, err)
			}
		}
		out.DurationS += r.DurationS
		out.RequestsLimit += r.RequestsLimit
		out.ElapsedS += r.ElapsedS
		out.Interrupted = out.Interrupted || r.Interrupted
		out.Requests += r.Requests
		out.OK += r.OK
		e := &out.Errors
		e.Total += r.Errors.Total
		e.Status += r.Errors.Status
		e.Timeout += r.Errors.Timeout
		e.Connection += r.Errors.Connection
		e.Other += r.Errors.Other
		for _, s := range r.Errors.Samples {
			if len(e.Samples) < 5 && !slices.Contains(e.Samples, s) {
				e.Samples = append(e.Samples, s)
			}
		}
		for code, n := range r.StatusCodes {
			out.StatusCodes[code] += n
		}
		if g := r.Generator; g != nil {
			if out.Generator == nil {
				out.Generator = &Generator{}
			}
			og := out.Generator
			og.Planned += g.Planned
			og.Unsent += g.Unsent
			og.Late += g.Late
			og.LagP50Ms = max(og.LagP50Ms, g.LagP50Ms)
			og.LagP99Ms = max(og.LagP99Ms, g.LagP99Ms)
			og.LagMaxMs = max(og.LagMaxMs, g.LagMaxMs)
		}
		if d := r.Deadline; d != nil {
			if out.Deadline == nil {
				out.Deadline = &DeadlineCount{LimitMs: d.LimitMs}
			}
			if d.LimitMs != out.Deadline.LimitMs {
				return nil, fmt.Errorf("run %d has a different deadline", i)
			}
			out.Deadline.Met += d.Met
			out.Deadline.MetOK += d.MetOK
			out.Deadline.Missed += d.Missed
		}
		off := len(out.Timeline)
		for _, s := range r.Timeline {
			s.T += off
			out.Timeline = append(out.Timeline, s)
		}
	}
	if out.ElapsedS > 0 {
		out.ThroughputRPS = float64(out.Requests) / out.ElapsedS
		if out.Generator != nil {
			out.Generator.SentRPS = out.ThroughputRPS
		}
	}
	out.Latency = summarize(lat, true)
	out.Curve = curve(lat)
	if svc != nil {
		s := summarize(svc, true)
		out.ServiceTime = &s
	}
	return out, nil
}

func mergeLatency(dst *hdrhistogram.Histogram, l *Latency) error {
	if l.Count == 0 {
		return nil
	}
	h, err := l.Histogram()
	if err != nil {
		return err
	}
	dst.Merge(h)
	return nil
}
