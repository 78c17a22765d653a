package bench_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench"
)

// twoRuns returns a gateway-like run and a direct run of the same load.
func twoRuns(t *testing.T) (lariat, direct *bench.Result) {
	t.Helper()
	var n atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/gw" && n.Add(1)%10 == 0 {
			ctx.SetStatusCode(fasthttp.StatusBadGateway)
		}
		ctx.SetBodyString(`{"y":1}`)
	})
	cfg := bench.Config{
		Mode: bench.ModeOpen, Rate: 400, Connections: 1, Duration: 300 * time.Millisecond,
		Body: `{"x":{{seq}}}`,
	}
	cfg.Name, cfg.URL = "lariat", url+"/gw"
	lariat = mustRun(t, cfg)
	cfg.Name, cfg.URL = "direct", url+"/direct"
	direct = mustRun(t, cfg)
	return lariat, direct
}

func TestReportJSONAndHTML(t *testing.T) {
	lariat, direct := twoRuns(t)
	if lariat.Errors.Status == 0 || direct.Errors.Total != 0 {
		t.Fatalf("lariat errors %+v, direct errors %+v", lariat.Errors, direct.Errors)
	}
	rep, err := bench.NewReport("gateway overhead", "direct", lariat, direct)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Ratios) != 1 || rep.Ratios[0].Run != "lariat" || rep.Ratios[0].Baseline != "direct" {
		t.Fatalf("ratios %+v", rep.Ratios)
	}
	if got, want := rep.Ratios[0].P99, lariat.Latency.P99Ms/direct.Latency.P99Ms; got != want {
		t.Fatalf("p99 ratio %v, want %v", got, want)
	}

	// JSON: parses back, and keeps its documented field names.
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := bench.ReadReport(bytes.NewReader(js.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 2 || back.Runs[0].Name != "lariat" || back.Runs[1].Requests != direct.Requests ||
		back.Runs[0].Latency.P99Ms != lariat.Latency.P99Ms || len(back.Runs[0].Timeline) != len(lariat.Timeline) {
		t.Fatalf("report did not survive a JSON round trip")
	}
	if h, err := back.Runs[1].Latency.Histogram(); err != nil || h.TotalCount() != direct.Latency.Count {
		t.Fatalf("embedded histogram: %v, %v", h, err)
	}
	var raw struct {
		Runs []map[string]json.RawMessage `json:"runs"`
	}
	if err := json.Unmarshal(js.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "url", "method", "mode", "rate", "connections", "duration_s", "timeout_ms",
		"started", "elapsed_s", "interrupted", "requests", "ok", "throughput_rps", "errors", "status_codes",
		"latency", "service_time", "generator", "percentile_curve", "timeline"} {
		if _, ok := raw.Runs[0][k]; !ok {
			t.Errorf("run json lacks %q", k)
		}
	}
	var lat map[string]any
	if err := json.Unmarshal(raw.Runs[0]["latency"], &lat); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"count", "min_ms", "mean_ms", "stddev_ms", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "hdr"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency json lacks %q", k)
		}
	}

	// HTML: well-formed, self-contained, and carries the data.
	var page bytes.Buffer
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	doc := page.String()
	svgs, data := parseHTML(t, doc)
	if svgs < 4 { // percentiles, latency, throughput and errors over time
		t.Fatalf("%d charts, want 4", svgs)
	}
	embedded, err := bench.ReadReport(strings.NewReader(data))
	if err != nil {
		t.Fatalf("embedded data: %s", err)
	}
	if len(embedded.Runs) != 2 || embedded.Runs[0].Requests != lariat.Requests || embedded.Baseline != "direct" {
		t.Fatalf("embedded report differs")
	}
	for _, u := range regexp.MustCompile(`https?://[^\s"'<>]*`).FindAllString(doc, -1) {
		if u != lariat.URL && u != direct.URL {
			t.Errorf("html refers to %q", u)
		}
	}
	if regexp.MustCompile(`(?i)\s(src|href)\s*=`).MatchString(doc) {
		t.Errorf("html loads or links something")
	}
	for _, want := range []string{"gateway overhead", "lariat / direct", "<polyline", "99.9%"} {
		if !strings.Contains(doc, want) {
			t.Errorf("html lacks %q", want)
		}
	}
}

// parseHTML checks that doc is well-formed and returns its number of svg
// elements and the embedded report data.
func parseHTML(t *testing.T, doc string) (svgs int, data string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	inData := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("html is not well-formed: %s", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "svg" {
				svgs++
			}
			if el.Name.Local == "script" && slices.Contains(el.Attr, xml.Attr{Name: xml.Name{Local: "id"}, Value: "lariat-bench-data"}) {
				inData = true
			}
		case xml.CharData:
			if inData {
				data += string(el)
			}
		case xml.EndElement:
			inData = false
		}
	}
	return svgs, data
}

func TestReportNotesAndDeadline(t *testing.T) {
	lariat, direct := twoRuns(t)
	lariat.Deadline = &bench.DeadlineCount{LimitMs: 110, Met: 9, MetOK: 8, Missed: 1}
	rep, err := bench.NewReport("faults", "direct", lariat, direct)
	if err != nil {
		t.Fatal(err)
	}
	rep.Notes = []string{"setup <one>", "target met"}
	var js, page bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := bench.ReadReport(&js)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Notes) != 2 || back.Runs[0].Deadline == nil || back.Runs[0].Deadline.MetOK != 8 || back.Runs[1].Deadline != nil {
		t.Fatalf("notes %q, deadlines %+v %+v", back.Notes, back.Runs[0].Deadline, back.Runs[1].Deadline)
	}
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<li>setup &lt;one&gt;</li>", "answered within deadline", "9 (90.00%)"} {
		if !strings.Contains(page.String(), want) {
			t.Fatalf("html lacks %q", want)
		}
	}
}

func TestReportSingleRunAndEmpty(t *testing.T) {
	// A run that sent nothing still renders.
	res := mustRun(t, bench.Config{Name: "down", URL: "http://" + closedPort(t), Requests: 3, Connections: 1})
	rep, err := bench.NewReport("", "", res)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Baseline != "" || len(rep.Ratios) != 0 {
		t.Fatalf("single-run report has ratios: %+v", rep)
	}
	var page bytes.Buffer
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if svgs, data := parseHTML(t, page.String()); svgs < 3 || data == "" {
		t.Fatalf("svgs %d, data %d bytes", svgs, len(data))
	}
	var text bytes.Buffer
	if err := res.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "connection 3") {
		t.Fatalf("summary:\n%s", text.String())
	}
}

func TestNewReportErrors(t *testing.T) {
	a, b := &bench.Result{Name: "a"}, &bench.Result{Name: "b"}
	f := func(baseline string, want string, runs ...*bench.Result) {
		t.Helper()
		_, err := bench.NewReport("t", baseline, runs...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want %q", err, want)
		}
	}
	f("", "at least one run")
	f("", `two runs are named "a"`, a, a)
	f("c", `baseline run "c" is not in the report`, a, b)
	f("", "nil", a, nil)

	rep, err := bench.NewReport("t", "", a, b)
	if err != nil || rep.Baseline != "a" || rep.Ratios[0].Run != "b" || rep.Ratios[0].P99 != 0 {
		t.Fatalf("default baseline: %+v, %v", rep, err)
	}
}

func TestReadReportErrors(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		_, err := bench.ReadReport(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want %q", err, want)
		}
	}
	f(`{"schema":"other/v9","runs":[]}`, `report schema is "other/v9"`)
	f(`{"schema":"lariat-bench/v1","runs":[],"extra":1}`, `unknown field "extra"`)
	f(`{"schema":"lariat-bench/v1","runs":[null]}`, "report run 0 is null")
	f(`not json`, "cannot parse report json")
}
