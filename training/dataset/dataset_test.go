package dataset

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/predlog/sink"
)

// writeLog writes records into a file:// prediction log under dir.
func writeLog(t *testing.T, dir string, recs []*predlog.Record) {
	t.Helper()
	l, err := sink.OpenLog("file://"+dir, predlog.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		c := l.Acquire()
		*c = *r
		l.Submit(c)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// served builds a record of request id whose feature task served
// conv_rate and vehicle for the drivers, answered by rank version v in
// arm.
func served(id, arm, v string, drivers ...int) *predlog.Record {
	r := &predlog.Record{RequestID: id, Time: time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC), Route: "allocate", RouteVersion: "abc", Status: 200,
		Arms:    []predlog.Arm{{Gate: "experiment", Arm: arm}},
		Tasks:   []predlog.Task{{Name: "features", Kind: "feature", Status: "ok"}, {Name: "rank", Kind: "http", Model: "driver-rank", Version: v, Status: "ok"}},
		Outputs: []predlog.Output{{Path: "response.body.top", Value: predlog.JSON(fmt.Sprint(drivers[0]))}},
	}
	for _, d := range drivers {
		ent := predlog.JSON(fmt.Sprintf(`{"driver_id":%d}`, d))
		r.Features = append(r.Features,
			predlog.Feature{Task: "features", Entity: ent, View: "driver_stats", Name: "conv_rate", Value: predlog.JSON(fmt.Sprintf("%d.5", d%10)), Status: "PRESENT"},
			predlog.Feature{Task: "features", Entity: ent, View: "driver_stats", Name: "is_active", Value: "true", Status: "PRESENT"},
			predlog.Feature{Task: "features", Entity: ent, View: "driver_stats", Name: "vehicle", Value: `"van"`, Status: "PRESENT"},
		)
	}
	r.Features[0].Value = "null" // a value that was missing
	return r
}

func readRows(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	rd := parquet.NewGenericReader[map[string]any](pf, pf.Schema())
	rows := make([]map[string]any, pf.NumRows())
	for i := range rows {
		rows[i] = map[string]any{}
	}
	if n, err := rd.Read(rows); n != len(rows) && err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	writeLog(t, logDir, []*predlog.Record{
		served("r1", "control", "3", 1001, 1002),
		served("r2", "canary", "4", 1003),
		served("r3", "control", "3", 1004),
	})
	labels := filepath.Join(dir, "labels.csv")
	if err := os.WriteFile(labels, []byte("request_id,driver_id,label,comment\nr1,1002,1,ok\nr2,1003,0,late\nr9,1,1,lost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "train.parquet")
	st, err := Build(Options{Predictions: logDir, Labels: labels, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if st.Labels != 3 || st.Matched != 2 || st.Rows != 2 || strings.Join(st.Unmatched, ",") != "r9" ||
		strings.Join(st.Features, ",") != "conv_rate,is_active,vehicle" || len(st.EntityKeys) != 0 {
		t.Fatalf("stats %+v", st)
	}
	rows := readRows(t, out)
	want := []string{
		"map[arm__experiment:control comment:ok conv_rate:2.5 driver_id:1002 is_active:1 label:1 model__rank:driver-rank=3 output__top:1001 request_id:r1 route:allocate route_version:abc time:2026-05-01T13:00:00.000000Z vehicle:van]",
		"map[arm__experiment:canary comment:late conv_rate:<nil> driver_id:1003 is_active:1 label:0 model__rank:driver-rank=4 output__top:1003 request_id:r2 route:allocate route_version:abc time:2026-05-01T13:00:00.000000Z vehicle:van]",
	}
	for i, r := range rows {
		if got := fmt.Sprint(r); got != want[i] {
			t.Errorf("row %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	d, err := Read(out, "label", nil)
	if err != nil || strings.Join(d.Features, ",") != "conv_rate,is_active" || strings.Join(d.Refs, ",") != "driver_stats:conv_rate,driver_stats:is_active" ||
		strings.Join(d.EntityKeys, ",") != "driver_id" || len(d.X) != 2 || d.X[0][0] != 2.5 || !math.IsNaN(d.X[1][0]) || d.X[1][1] != 1 || d.Y[0] != 1 || d.Y[1] != 0 {
		t.Fatalf("Read: %+v %v", d, err)
	}
	if _, err := Read(out, "label", []string{"vehicle"}); err == nil || !strings.Contains(err.Error(), `column "vehicle" is not numeric`) {
		t.Fatalf("Read of a string column: %v", err)
	}
	if _, err := Read(out, "comment", nil); err == nil || !strings.Contains(err.Error(), `label column "comment" is not numeric`) {
		t.Fatalf("Read with a string label: %v", err)
	}

	// Without an entity column, every entity of a request gets the label.
	if err := os.WriteFile(labels, []byte("request_id,label\nr1,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = Build(Options{Predictions: logDir, Labels: labels, Out: out})
	if err != nil || st.Rows != 2 || strings.Join(st.EntityKeys, ",") != "driver_id" {
		t.Fatalf("all entities: %+v %v", st, err)
	}
	if rows := readRows(t, out); rows[0]["driver_id"] != "1001" || rows[1]["driver_id"] != "1002" {
		t.Fatalf("rows %v", rows)
	}

	bad := func(csv, want string) {
		t.Helper()
		if err := os.WriteFile(labels, []byte(csv), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Build(Options{Predictions: logDir, Labels: labels, Out: out}); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%q: got %v, want %q", csv, err, want)
		}
	}
	bad("id,label\nr1,1\n", `no "request_id" column (columns: id, label)`)
	bad("request_id,route\nr1,x\n", `column "route" is a column the dataset writes itself`)
	bad("request_id,label\nr1,1,2\n", "wrong number of fields")
}
