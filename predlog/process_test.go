package predlog_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/predlogtest"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/predlog/sink"
)

func TestMain(m *testing.M) {
	predlogtest.Main()
	os.Exit(m.Run())
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func record(id string, t time.Time) *predlog.Record {
	ev := t.Add(-time.Minute)
	return &predlog.Record{
		RequestID: id, Time: t, Route: "allocate", RouteVersion: "a1b2c3d4e5f6", Status: 200, LatencyMs: 1.25,
		Error: "task \"x\" failed: \"quoted\"\n",
		Arms:  []predlog.Arm{{Gate: "experiment", Arm: "canary"}},
		Tasks: []predlog.Task{
			{Name: "rank", Kind: "http", Model: "driver-rank", Version: "7", Status: predlog.TaskOK, Code: 200, LatencyMs: 0.75, Retries: 1},
			{Name: "fraud", Kind: "http", Status: predlog.TaskError, Code: 503, Defaulted: true, Error: "upstream answered 503"},
		},
		Features: []predlog.Feature{
			{Task: "features", Entity: `{"driver_id":1001}`, View: "driver_stats", Name: "conv_rate", Value: "0.5", Status: "PRESENT", EventTime: &ev},
			{Task: "features", Entity: `{"driver_id":1001}`, View: "driver_stats", Name: "acc_rate", Value: "null", Status: "NOT_FOUND"},
		},
		Outputs: []predlog.Output{{Path: "response.body.label", Value: `"yes \"quoted\" é"`}},
		Request: `{"drivers":[1001],"note":"line\nbreak"}`,
	}
}

func submit(l *predlog.Log, recs ...*predlog.Record) {
	for _, r := range recs {
		rec := l.Acquire()
		*rec = *r
		l.Submit(rec)
	}
}

func readBack(t *testing.T, dir string) map[string]predlog.Record {
	t.Helper()
	got := map[string]predlog.Record{}
	if err := sink.Read(dir, func(r *predlog.Record) error {
		if _, dup := got[r.RequestID]; dup {
			return fmt.Errorf("record %s read twice", r.RequestID)
		}
		got[r.RequestID] = *r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestProcessSinkWritesEveryField sends records through the sink process
// into Parquet files and reads every field back.
func TestProcessSinkWritesEveryField(t *testing.T) {
	dir := t.TempDir()
	l, err := predlog.Open("file://"+dir, predlog.Options{Logger: quiet(), SinkCommand: predlogtest.Command()})
	if err != nil {
		t.Fatal(err)
	}
	if pid := predlog.SinkPID(l); pid == 0 || pid == os.Getpid() {
		t.Fatalf("sink process pid %d", pid)
	}
	at := time.Date(2026, 5, 1, 13, 4, 5, 123456000, time.UTC)
	want := map[string]*predlog.Record{}
	for i := 0; i < 1000; i++ {
		r := record(fmt.Sprintf("r-%04d", i), at.Add(time.Duration(i)*time.Second))
		want[r.RequestID] = r
		submit(l, r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l.Status(); st.Sink != "file://"+dir || !st.OK {
		t.Fatalf("status %+v", st)
	}
	got := readBack(t, dir)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for id, w := range want {
		g := got[id]
		ev := g.Features[0].EventTime.UTC()
		g.Time, g.Features[0].EventTime = g.Time.UTC(), &ev
		if !reflect.DeepEqual(&g, w) {
			t.Fatalf("record %s:\n got %+v\nwant %+v", id, g, *w)
		}
	}
}

// TestProcessSinkOpenErrors checks that Open reports what keeps the sink
// process from starting or the sink from opening.
func TestProcessSinkOpenErrors(t *testing.T) {
	f := func(url string, opts predlog.Options, want string) {
		t.Helper()
		opts.Logger = quiet()
		l, err := predlog.Open(url, opts)
		if err == nil {
			l.Close()
			t.Fatalf("Open(%q) succeeded", url)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Open(%q) = %v, want %q", url, err, want)
		}
	}
	cmd := predlogtest.Command()
	f("redis://x", predlog.Options{SinkCommand: cmd}, "want file:///DIR or kafka://")
	f("kafka://a/t", predlog.Options{SinkCommand: cmd}, `broker "a" is not HOST:PORT`)
	f("file://relative", predlog.Options{SinkCommand: cmd}, "want file:///ABSOLUTE/DIR")
	f("kafka://a:1/t?sasl=plain", predlog.Options{SinkCommand: cmd}, "needs a user and password")
	f("file:///tmp/x", predlog.Options{SinkCommand: []string{"/nonexistent/lariat-predlog"}}, "cannot start the prediction log sink")
	t.Setenv("PATH", t.TempDir())
	f("file:///tmp/x", predlog.Options{}, "needs lariat-predlog next to this program or on PATH")
}

// TestProcessSinkRestarts kills the sink process: records sent while it is
// down are dropped and counted, the log reports it, and a new process
// takes over after the backoff.
func TestProcessSinkRestarts(t *testing.T) {
	dir := t.TempDir()
	l, err := predlog.Open("file://"+dir, predlog.Options{Logger: quiet(), FlushInterval: 50 * time.Millisecond, SinkCommand: predlogtest.Command()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	submit(l, record("before-1", now), record("before-2", now))
	testwait.Until(t, "the first records in a file", func() bool { return len(readBack(t, dir)) == 2 })

	first := predlog.SinkPID(l)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	dropped := l.Status().Dropped
	submit(l, record("lost", now))
	testwait.Until(t, "the record dropped and the failure reported", func() bool { st := l.Status(); return !st.OK && st.Dropped > dropped })
	if st := l.Status(); !strings.Contains(st.Error, "sink process") || st.Dropped != dropped+1 {
		t.Fatalf("while down: %+v (dropped before %d)", st, dropped)
	}
	testwait.Until(t, "a new sink process", func() bool { pid := predlog.SinkPID(l); return pid != 0 && pid != first })
	submit(l, record("after", now))
	testwait.Until(t, "recovery", func() bool { return l.Status().OK })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readBack(t, dir)
	if len(got) != 3 || got["before-1"].RequestID == "" || got["before-2"].RequestID == "" || got["after"].RequestID == "" {
		t.Fatalf("records read back: %d %v", len(got), got)
	}
}

// TestProcessSinkRawNewlines sends raw JSON values that hold newlines (a
// pretty-printed request body and output): each record stays one line, and
// the values are stored compact.
func TestProcessSinkRawNewlines(t *testing.T) {
	dir := t.TempDir()
	l, err := predlog.Open("file://"+dir, predlog.Options{Logger: quiet(), SinkCommand: predlogtest.Command()})
	if err != nil {
		t.Fatal(err)
	}
	r := record("pretty", time.Now())
	r.Request = "{\n  \"drivers\": [\n    1001\n  ],\r\n  \"note\": \"a\\nb c\"\n}"
	r.Outputs = []predlog.Output{{Path: "response.body", Value: "{\n\t\"score\": 0.5\n}"}}
	submit(l, r, record("next", time.Now()))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readBack(t, dir)
	if len(got) != 2 || got["next"].RequestID == "" {
		t.Fatalf("records read back: %v", got)
	}
	if p := got["pretty"]; p.Request != `{"drivers":[1001],"note":"a\nb c"}` || p.Outputs[0].Value != `{"score":0.5}` {
		t.Fatalf("raw values: request %s, output %s", p.Request, p.Outputs[0].Value)
	}
}
